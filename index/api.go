// Package index builds, stores and serves the per-layer index: the tar
// entries of a layer and the map from uncompressed bytes to compressed spans
// that lets any byte range be read lazily and verified.
//
// Formats: uncompressed tar (headers walked with batched range reads, file
// data never fetched) and tar+gzip (one streaming pass with deflate
// checkpoints every SpanSize of output). Each format builder lives in its own
// build_<format>.go; see Build for how to add one.
//
// Verification: gzip spans carry the sha256 of their compressed bytes,
// recorded while the blob digest was being checked, and a read whose bytes
// do not match is retried once, then fails with ErrCorrupt. Uncompressed tar
// layers cannot be verified without a full download and are served as
// fetched (Index.Verified reports false).
//
// Limits: GNU sparse files are refused (ErrUnsupported) because their data
// is not a contiguous range of the stream; entries escaping the root,
// names over 4096 bytes, self-hardlinks and unknown types are dropped with a
// warning; a span (between two deflate block boundaries) may not decode to
// more than 256 MiB.
package index

import (
	"context"
	"io"
	"log/slog"

	"github.com/imgfs/imgfs/manifest"
)

// Blob is how the index reads a layer: random access plus its size. The
// fetch package's *fetch.Blob satisfies it; tests use bytes.Reader wrappers.
type Blob interface {
	io.ReaderAt
	Size() int64
}

// Streamer is implemented by blobs that can stream their whole content in one
// request, which one-pass builders (gzip, zstd) prefer over ReadAt.
type Streamer interface {
	Open(ctx context.Context) (io.ReadCloser, error)
}

// SpanCache holds decoded spans. Keys are opaque strings, unique per layer
// and span. Implementations must be safe for concurrent use. The mount brings
// an LRU with a disk tier; NewMemoryCache is a simple bounded one.
type SpanCache interface {
	Get(key string) ([]byte, bool)
	Put(key string, data []byte)
}

// Options of Open.
type Options struct {
	CacheDir string         // index files live in <CacheDir>/index/sha256/<hex>; "" = never stored
	Layer    manifest.Layer // digest, media type, detected format, annotations
	Blob     Blob
	SpanSize int64                   // gzip checkpoint spacing in uncompressed bytes; 0 = 4 MiB
	Progress func(done, total int64) // compressed bytes consumed while building; may be nil
	Logger   *slog.Logger            // nil: slog.Default()
}
