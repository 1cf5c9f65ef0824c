package index

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync/atomic"

	digest "github.com/opencontainers/go-digest"

	"github.com/imgfs/imgfs/manifest"
)

// Reader serves byte ranges of an index's entries from the layer blob,
// through a SpanCache. It is safe for concurrent use.
type Reader struct {
	ix      *Index
	blob    Blob
	cache   SpanCache
	prefix  string // cache key prefix: layer, format and TOC
	dec     spanDecoders
	ra      readahead
	flights *flights
	region  region
	decode  *DecodeLimit
	stop    context.CancelFunc // ends background fetches (Close)
	log     *slog.Logger

	stats readerCounters
}

// readerCounters back ReaderStats.
type readerCounters struct {
	lookups, hits, shared, decoded, blobReads, blobBytes, localReads, retries atomic.Int64
	raStarted, raSkipped, raErrors                                            atomic.Int64
}

// ReaderStats counts what a Reader did. Every span a read (or a readahead
// or prefetch that decodes) needs is one lookup, with one outcome: a hit
// (Hits: from the cache, or Shared: from a fetch another read started) or
// a miss (SpansDecoded: fetched, verified and decoded). So
// Hits + SpansDecoded == Lookups, and Shared <= Hits.
type ReaderStats struct {
	Lookups      int64
	Hits         int64
	Shared       int64
	SpansDecoded int64
	BlobReads    int64 // ReadAt calls on the blob
	BlobBytes    int64 // bytes asked of the blob
	LocalReads   int64 // reads of the local copy of a plain zstd layer
	Retries      int64 // fetches repeated after a digest mismatch
	// Readahead: spans whose background fetch and decode started, spans
	// not read ahead because every worker was busy, and background
	// failures (never reported to a read; the read fetches again).
	ReadaheadStarted, ReadaheadSkipped, ReadaheadErrors int64
}

// ReaderOptions tune a Reader; the zero value gives the defaults.
type ReaderOptions struct {
	// Readahead is how many spans past a sequential read (one starting
	// where an earlier read ended) are fetched and decoded in the
	// background, within the same file: 0 means DefaultReadahead, a
	// negative value turns readahead off.
	Readahead int
	// ReadaheadWorkers bounds the background decodes of this Reader at
	// once; a span that would exceed it is simply not read ahead.
	// 0 means runtime.NumCPU(), but at least 4.
	ReadaheadWorkers int
	// Decode bounds the bytes being fetched and decoded at once; share one
	// between Readers sharing a cache. nil: a limit of DefaultDecodeBytes
	// for this Reader alone.
	Decode *DecodeLimit
	Logger *slog.Logger // readahead failures, at debug level; nil: slog.Default()
}

// DefaultReadahead is how many spans a sequential read keeps in flight
// ahead of itself: enough to keep a few cores inflating gzip spans.
const DefaultReadahead = 4

// NewReader returns a Reader of ix's layer from blob. Decoded spans are
// kept in cache, which may be shared by several Readers and images: keys
// name the layer's verified content, not the Reader.
func (ix *Index) NewReader(blob Blob, cache SpanCache, opts ReaderOptions) *Reader {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	base, stop := context.WithCancel(context.Background())
	decode := opts.Decode
	if decode == nil {
		decode = NewDecodeLimit(0)
	}
	r := &Reader{ix: ix, blob: blob, cache: cache, prefix: ix.cacheKeyPrefix(), log: log,
		flights: newFlights(base), decode: decode, stop: stop}
	r.region.lastEnd, r.region.lastStart, r.region.extraLast = -1, -1, -1
	r.ra.init(opts)
	return r
}

// Close ends the background fetches (readahead, prefetch) of the Reader
// and waits for them. Reads in progress end with their own contexts.
func (r *Reader) Close() {
	r.stop()
	r.ra.close()
}

// Stats returns the Reader's counters.
func (r *Reader) Stats() ReaderStats {
	c := &r.stats
	return ReaderStats{
		Lookups:          c.lookups.Load(),
		Hits:             c.hits.Load(),
		Shared:           c.shared.Load(),
		SpansDecoded:     c.decoded.Load(),
		BlobReads:        c.blobReads.Load(),
		BlobBytes:        c.blobBytes.Load(),
		LocalReads:       c.localReads.Load(),
		Retries:          c.retries.Load(),
		ReadaheadStarted: c.raStarted.Load(),
		ReadaheadSkipped: c.raSkipped.Load(),
		ReadaheadErrors:  c.raErrors.Load(),
	}
}

// ReadAt reads len(p) bytes of e's content starting at off, with
// io.ReaderAt semantics: n < len(p) only with an error, io.EOF at the end of
// the content. Every byte comes from data whose digest matched the index
// (unless the index is not Verified: uncompressed tar). ctx is the read's:
// when it ends, the read returns, and a fetch that no other read waits for
// is cancelled.
func (r *Reader) ReadAt(ctx context.Context, e *Entry, p []byte, off int64) (int, error) {
	if e.Type != TypeReg {
		return 0, fmt.Errorf("read %q: not a regular file", e.Name)
	}
	if off < 0 {
		return 0, fmt.Errorf("read %q at %d: negative offset", e.Name, off)
	}
	if off >= e.Size {
		return 0, io.EOF
	}
	want := p
	if rest := e.Size - off; int64(len(p)) > rest {
		want = p[:rest]
	}
	u := e.Offset + off
	if r.ra.sequential(u, u+int64(len(want))) {
		r.readAhead(u+int64(len(want)), e.Offset+e.Size)
	}
	n, err := r.readStream(ctx, want, u)
	if err != nil {
		return n, fmt.Errorf("layer %s: read %q at %d: %w", r.ix.Layer, e.Name, off, err)
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// readStream fills p from the addressable stream at offset u.
func (r *Reader) readStream(ctx context.Context, p []byte, u int64) (int, error) {
	spans := r.ix.Spans
	if u < 0 || u > r.ix.usize-int64(len(p)) {
		return 0, fmt.Errorf("stream range %d+%d outside the %d-byte stream: %w", u, len(p), r.ix.usize, ErrCorrupt)
	}
	done := 0
	for done < len(p) {
		i := spanAt(spans, u)
		if i < 0 {
			return done, fmt.Errorf("no span holds stream offset %d: %w", u, ErrCorrupt)
		}
		// A span in the cache, in memory or on disk, is copied straight
		// into p: a disk-cached span is read in the blocks needed, not
		// loaded whole and promoted (rereads after a remount).
		s := &spans[i]
		r.usedSpan(i)
		r.regionAhead(i)
		want := min(int64(len(p)-done), s.end()-u)
		if n, ok := r.cache.ReadAt(r.key(i), p[done:done+int(want)], u-s.UOff); ok && int64(n) == want {
			r.countHit(false)
			done += n
			u += int64(n)
			continue
		}
		last := spanAt(spans, u+int64(len(p)-done)-1)
		err := r.load(ctx, i, last, maxRunSpans, true, func(decoded [][]byte) {
			for k, data := range decoded {
				if done == len(p) {
					break
				}
				s := &spans[i+k]
				if k > 0 {
					r.usedSpan(i + k)
				}
				n := copy(p[done:], data[u-s.UOff:])
				done += n
				u += int64(n)
			}
		})
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

// cacheKeyPrefix names the addressable stream whose spans a Reader caches,
// by what its bytes were verified against (see identity.go): the layer
// digest and format; the TOC for TOC formats (that digest is never checked
// against the whole blob, so two manifests may name one digest with
// different TOCs); and for an unverified index the scope that served it.
func (ix *Index) cacheKeyPrefix() string {
	prefix := keyPrefix(ix.Layer, ix.Format, ix.Meta[metaTOCDigest], ix.verified, ix.Meta[metaScope])
	if o := ix.Meta[metaOrigin]; o != "" { // how its spans decode came from there (an index artifact)
		prefix += "origin:" + o + "/"
	}
	return prefix
}

func keyPrefix(layer digest.Digest, format manifest.Format, toc string, verified bool, scope string) string {
	prefix := layer.String() + "/" + string(format) + "/"
	if toc != "" {
		prefix += toc + "/"
	}
	if !verified {
		prefix += "scope:" + scope + "/"
	}
	return prefix
}

func (r *Reader) key(i int) string { return spanKey(r.prefix, &r.ix.Spans[i]) }

// ContentKey names the content of e for caches beyond the span cache (a
// whole copy of the file): the cache key prefix (what the layer's bytes
// were verified against), the entry's place in the stream, and the keys of
// every span it covers, with their digests. The place alone would not do
// for TOC formats, whose stream imgfs lays out itself: another version
// could put another file of the same size there; the chunk digests tell.
// It costs a hash over the file's span keys: callers keep it.
func (r *Reader) ContentKey(e *Entry) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%d+%d", r.prefix, e.Offset, e.Size)
	if e.Size > 0 {
		spans := r.ix.Spans
		first, last := spanAt(spans, e.Offset), spanAt(spans, e.Offset+e.Size-1)
		for i := first; i >= 0 && i <= last; i++ {
			fmt.Fprintf(h, "\x00%s", spanKey("", &spans[i]))
		}
	}
	return r.prefix + "file/" + hex.EncodeToString(h.Sum(nil))
}

// spanKey names span s of the stream named by prefix in the cache: its
// place in the stream and, when it has one, the digest its bytes are
// checked against, so a cache entry is bound to the content it must have.
func spanKey(prefix string, s *Span) string {
	k := prefix + strconv.FormatInt(s.UOff, 10) + "+" + strconv.FormatInt(s.ULen, 10)
	if s.Check != CheckNone {
		k += "#" + hex.EncodeToString(s.Digest[:8])
	}
	return k
}
