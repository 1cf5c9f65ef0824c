// Package index builds, stores and serves the per-layer index: the tar
// entries of a layer and the map from uncompressed bytes to compressed spans
// that lets any byte range be read lazily and verified.
//
// Formats, each built in its own build_<format>.go (see Build for how to add
// one):
//   - uncompressed tar: headers walked with batched range reads, file data
//     never fetched;
//   - tar+gzip: one streaming pass with deflate checkpoints every SpanSize of
//     output;
//   - eStargz and zstd:chunked: the footer and TOC only (range reads); file
//     contents are addressed in a virtual stream of the TOC's chunks
//     concatenated, one span per chunk (a gzip member or zstd frames). TOC
//     mtimes of eStargz have whole-second precision. The eStargz artefacts
//     (stargz.index.json and the prefetch landmarks) are hidden, also when an
//     eStargz blob is indexed as plain gzip;
//   - plain tar+zstd: one streaming pass that also writes the decompressed tar
//     to a local copy under the cache dir (LocalPath), from which reads are
//     served: a zstd frame cannot be entered midway, so such layers are not
//     lazy.
//
// Verification: gzip spans carry the sha256 of their compressed bytes,
// recorded while the blob digest was being checked; TOC chunks carry the
// TOC's chunk digest (sha256 of the decoded chunk), the TOC itself being
// checked against the manifest annotation; local spans carry the sha256 of
// their bytes, recorded while the blob digest was being checked. A read whose
// bytes do not match is retried once, then fails with ErrCorrupt.
// Uncompressed tar layers cannot be verified without a full download and are
// served as fetched, as are TOC layers whose manifest lacks the TOC digest
// annotation (only against the unpinned TOC) or whose TOC lacks chunk
// digests: Index.Verified reports false for them.
//
// Reads: Reader serves entry contents through a SpanCache, sharing fetches
// of one span between concurrent reads, and reads ahead (fetches and
// decodes the next spans in the background, on several cores) when a file
// is read sequentially.
//
// Limits: GNU sparse files are refused (ErrUnsupported) because their data
// is not a contiguous range of the stream; entries escaping the root,
// names over 4096 bytes, self-hardlinks and unknown types are dropped with a
// warning; a span (between two deflate block boundaries, or a TOC chunk) may
// not decode to more than 256 MiB.
package index

import (
	"context"
	"io"
	"log/slog"

	"github.com/imgfs/imgfs/manifest"
)

// Blob is how the index reads a layer: random access plus its size. The
// fetch package's *fetch.Blob satisfies it; tests use in-memory blobs.
// ReadAt follows io.ReaderAt (n < len(p) only with an error) and gives up
// when ctx ends: the context of the read that needs the bytes, so that an
// interrupted read does not leave a fetch running for nobody.
type Blob interface {
	ReadAt(ctx context.Context, p []byte, off int64) (int, error)
	Size() int64
}

// Streamer is implemented by blobs that can stream their whole content in one
// request, which one-pass builders (gzip, zstd) prefer over ReadAt.
type Streamer interface {
	Open(ctx context.Context) (io.ReadCloser, error)
}

// SpanCache holds decoded spans. Keys are opaque strings naming the
// verified content of a span (see Reader); implementations must be safe
// for concurrent use. *cache.Cache (package index/cache: a memory LRU with
// a disk tier) is the one the project uses.
type SpanCache interface {
	// Get returns a span's bytes, counting a hit or a miss.
	Get(key string) ([]byte, bool)
	// ReadAt copies bytes [off, off+len(p)) of a span into p, counting a
	// hit or a miss, without loading a disk-cached span whole. On a miss
	// p's content is unspecified.
	ReadAt(key string, p []byte, off int64) (int, bool)
	// Contains answers "is it there?" without reading, promoting or
	// counting anything: readahead and run planning ask it.
	Contains(key string) bool
	// Put stores a span; the cache keeps data as is (no copy).
	Put(key string, data []byte)
}

// SpanBatch keeps the decoded spans a build produces (a gzip build inflates
// every span anyway), so that reads right after a never-seen mount fetch
// nothing the build already fetched. The build commits it only once the
// blob digest has matched, and aborts it otherwise. *cache.Batch
// implements it.
type SpanBatch interface {
	Add(key string, data []byte) error
	Commit() error
	Abort()
}

// Options of Open.
type Options struct {
	CacheDir string         // index files live in <CacheDir>/index/sha256/<hex>, plain zstd copies in <CacheDir>/local; "" = never stored
	Layer    manifest.Layer // digest, media type, detected format, annotations
	// Scope names who served the blob, "registry/repository": indexes and
	// spans whose bytes cannot be verified against the layer digest are
	// only reused within it (see identity.go).
	Scope    string
	Blob     Blob
	SpanSize int64                   // gzip checkpoint spacing in uncompressed bytes; 0 = 4 MiB
	Progress func(done, total int64) // compressed bytes consumed while building; may be nil
	// Attempts bounds the starts of a build that fails on bad input (see
	// Build); 0 means 1. Blobs fetched over a network: NetworkAttempts.
	Attempts int
	// Keep starts a batch for the spans a build decodes (nil, or a nil
	// batch: keep nothing).
	Keep   func() SpanBatch
	Logger *slog.Logger // nil: slog.Default()
	// ReadOnlyDirs are cache dirs Open and LookupIn also search, after
	// CacheDir, and never write: a cache a site prepared on a shared
	// read-only file system.
	ReadOnlyDirs []string
	// Remote, when set, is asked for the index before one is built (an
	// index artifact in the registry; see Import). A nil index or an
	// error means "build it"; Remote reports its own failures.
	Remote func(ctx context.Context) (*Index, error)
}
