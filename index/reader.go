package index

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"strconv"
	"sync/atomic"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/singleflight"
)

// Limits of one fetch: a read needing more spans than this loops.
const (
	maxRunSpans = 16
	maxRunBytes = 64 << 20 // compressed bytes of one ReadAt
	maxRunGap   = 64 << 10 // bytes between spans fetched rather than split into two reads
)

// defaultCacheBytes sizes the private cache of a Reader given no SpanCache.
const defaultCacheBytes = 64 << 20

// Reader serves byte ranges of an index's entries from the layer blob.
// It is safe for concurrent use.
type Reader struct {
	ix     *Index
	blob   Blob
	cache  SpanCache
	group  singleflight.Group
	prefix string // cache key prefix: layer and format
	dec    spanDecoders
	ra     readahead
	log    *slog.Logger

	spansDecoded, cacheHits, blobReads, blobBytes, localReads, retries atomic.Int64
	raStarted, raSkipped, raErrors                                     atomic.Int64
}

// ReaderStats counts what a Reader did, for tests and diagnostics.
type ReaderStats struct {
	SpansDecoded int64 // spans fetched, verified and decoded
	CacheHits    int64 // spans served from the SpanCache
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
	Logger           *slog.Logger // readahead failures, at debug level; nil: slog.Default()
}

// DefaultReadahead is how many spans a sequential read keeps in flight
// ahead of itself: enough to keep a few cores inflating gzip spans.
const DefaultReadahead = 4

// NewReader returns a Reader of ix's layer from blob with the default
// ReaderOptions. Decoded spans are kept in cache, which may be shared by
// several Readers (keys name the layer); nil gives the Reader a private
// 64 MiB memory cache.
func (ix *Index) NewReader(blob Blob, cache SpanCache) *Reader {
	return ix.NewReaderWithOptions(blob, cache, ReaderOptions{})
}

// NewReaderWithOptions is NewReader with tuning.
func (ix *Index) NewReaderWithOptions(blob Blob, cache SpanCache, opts ReaderOptions) *Reader {
	if cache == nil {
		cache = NewMemoryCache(defaultCacheBytes)
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	r := &Reader{ix: ix, blob: blob, cache: cache, prefix: ix.cacheKeyPrefix(), log: log}
	r.ra.init(opts)
	return r
}

// Stats returns the Reader's counters.
func (r *Reader) Stats() ReaderStats {
	return ReaderStats{
		SpansDecoded:     r.spansDecoded.Load(),
		CacheHits:        r.cacheHits.Load(),
		BlobReads:        r.blobReads.Load(),
		BlobBytes:        r.blobBytes.Load(),
		LocalReads:       r.localReads.Load(),
		Retries:          r.retries.Load(),
		ReadaheadStarted: r.raStarted.Load(),
		ReadaheadSkipped: r.raSkipped.Load(),
		ReadaheadErrors:  r.raErrors.Load(),
	}
}

// ReadAt reads len(p) bytes of e's content starting at off, with
// io.ReaderAt semantics: n < len(p) only with an error, io.EOF at the end of
// the content. Every byte comes from data whose digest matched the index
// (unless the index is not Verified: uncompressed tar).
func (r *Reader) ReadAt(e *Entry, p []byte, off int64) (int, error) {
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
	n, err := r.readStream(want, u)
	if err != nil {
		return n, fmt.Errorf("layer %s: read %q at %d: %w", r.ix.Layer, e.Name, off, err)
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// readStream fills p from the addressable stream at offset u.
func (r *Reader) readStream(p []byte, u int64) (int, error) {
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
		if spans[i].Kind == SpanRaw && spans[i].ULen > directRawSpan {
			s := &spans[i]
			n := int(min(int64(len(p)-done), s.end()-u))
			if err := r.fetch(p[done:done+n], s.COff+(u-s.UOff)); err != nil {
				return done, err
			}
			done += n
			u += int64(n)
			continue
		}
		last := spanAt(spans, u+int64(len(p)-done)-1)
		decoded, err := r.decoded(i, last)
		if err != nil {
			return done, err
		}
		for k, data := range decoded {
			s := &spans[i+k]
			if done == len(p) {
				break
			}
			n := copy(p[done:], data[u-s.UOff:])
			done += n
			u += int64(n)
		}
	}
	return done, nil
}

// cacheKeyPrefix names the addressable stream whose spans a Reader caches.
// For TOC formats the stream is defined by the TOC, not by the layer digest
// alone: that digest is never checked (it would need the whole blob), so
// two manifests may name one digest with different TOCs, and a span decoded
// through one must not be served through the other from a shared cache.
func (ix *Index) cacheKeyPrefix() string {
	prefix := ix.Layer.String() + "/" + string(ix.Format) + "/"
	if toc := ix.Meta[metaTOCDigest]; toc != "" {
		prefix += toc + "/"
	}
	return prefix
}

func (r *Reader) key(i int) string {
	s := &r.ix.Spans[i]
	return r.prefix + strconv.FormatInt(s.UOff, 10) + "+" + strconv.FormatInt(s.ULen, 10)
}

// decoded returns the decoded bytes of span i and possibly of the spans
// after it, up to last. Concurrent callers needing span i share one fetch
// and decode, including a readahead of it already in flight; when that
// readahead fails, its error is not this read's: the read fetches itself.
func (r *Reader) decoded(i, last int) ([][]byte, error) {
	key := r.key(i)
	if data, ok := r.cached(i, key); ok {
		return [][]byte{data}, nil
	}
	for attempt := 0; ; attempt++ {
		v, err, _ := r.group.Do(key, func() (any, error) {
			if data, ok := r.cached(i, key); ok { // a leader may have just finished
				return [][]byte{data}, nil
			}
			return r.fetchRun(i, r.runEnd(i, last, maxRunSpans))
		})
		var bg *readaheadError
		if errors.As(err, &bg) {
			if attempt < 2 {
				continue
			}
			err = bg.err
		}
		if err != nil {
			return nil, err
		}
		return v.([][]byte), nil
	}
}

// cached looks span i up in the cache. An entry of the wrong length (a
// damaged disk tier) counts as a miss rather than a crash.
func (r *Reader) cached(i int, key string) ([]byte, bool) {
	data, ok := r.cache.Get(key)
	if !ok || int64(len(data)) != r.ix.Spans[i].ULen {
		return nil, false
	}
	r.cacheHits.Add(1)
	return data, true
}

// runEnd extends a fetch from span i towards last, over at most maxSpans
// spans, while the spans are of one kind, in order and close together in
// their source, not cached and not being read ahead (a read joins those
// instead). The run's source stays within maxRunBytes.
func (r *Reader) runEnd(i, last, maxSpans int) int {
	spans := r.ix.Spans
	j := i
	base, _ := spans[i].source()
	for j < last && j+1-i < maxSpans {
		next := &spans[j+1]
		prevOff, prevLen := spans[j].source()
		off, n := next.source()
		if next.Kind != spans[i].Kind || off < prevOff || off > prevOff+prevLen+maxRunGap || off+n-base > maxRunBytes {
			break
		}
		if _, ok := r.cache.Get(r.key(j + 1)); ok || r.ra.inFlight(j+1) {
			break
		}
		j++
	}
	return j
}

// fetchRun reads the source bytes of spans i..j with one ReadAt, verifies
// and decodes them (in parallel) and caches the results. A digest mismatch
// refetches once; a second one is an error, never data.
func (r *Reader) fetchRun(i, j int) ([][]byte, error) {
	spans := r.ix.Spans[i : j+1]
	base, end := spans[0].source()
	end += base
	for k := range spans {
		off, n := spans[k].source()
		end = max(end, off+n)
	}
	buf := make([]byte, end-base+inflatePad)
	var out [][]byte
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		if attempt > 0 {
			r.retries.Add(1)
			clear(buf)
		}
		if spans[0].Kind == SpanLocal {
			err = r.readLocal(buf[:end-base], base)
		} else {
			err = r.fetch(buf[:end-base], base)
		}
		if err != nil {
			return nil, err
		}
		out, err = r.decodeRun(spans, buf, base)
		if !errors.Is(err, ErrCorrupt) {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	for k := range spans {
		r.cache.Put(r.key(i+k), out[k])
	}
	return out, nil
}

func (r *Reader) decodeRun(spans []Span, buf []byte, base int64) ([][]byte, error) {
	out := make([][]byte, len(spans))
	one := func(k int) error {
		s := &spans[k]
		off, n := s.source()
		comp := buf[off-base:]
		if s.Check == CheckCompressed && sha256.Sum256(comp[:n]) != s.Digest {
			return fmt.Errorf("span at stream offset %d (blob bytes %d+%d): digest mismatch: %w", s.UOff, off, n, ErrCorrupt)
		}
		data, err := r.ix.decodeSpan(s, comp[:min(int64(len(comp)), n+inflatePad)], &r.dec)
		if err != nil {
			if s.Check == CheckDecoded { // unverified input: treat like a mismatch
				err = fmt.Errorf("%w: %w", ErrCorrupt, err)
			}
			return fmt.Errorf("span at stream offset %d: %w", s.UOff, err)
		}
		if s.Check == CheckDecoded && sha256.Sum256(data) != s.Digest {
			if s.Kind == SpanLocal {
				return fmt.Errorf("span at stream offset %d: the local copy of the layer is damaged (prune the cache to rebuild it): %w", s.UOff, ErrCorrupt)
			}
			return fmt.Errorf("span at stream offset %d: decoded digest mismatch: %w", s.UOff, ErrCorrupt)
		}
		r.spansDecoded.Add(1)
		out[k] = data
		return nil
	}
	if len(spans) == 1 {
		return out, one(0)
	}
	var g errgroup.Group
	g.SetLimit(runtime.GOMAXPROCS(0))
	for k := range spans {
		g.Go(func() error { return one(k) })
	}
	return out, g.Wait()
}

// readLocal fills p from the local copy of a plain zstd layer.
func (r *Reader) readLocal(p []byte, off int64) error {
	if r.ix.local == nil {
		return fmt.Errorf("local copy of the layer is not open: %w", ErrCorrupt)
	}
	r.localReads.Add(1)
	n, err := r.ix.local.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("read local copy bytes %d+%d: got %d: %w", off, len(p), n, err)
}

// fetch fills p from the blob at off; a short read is an error.
func (r *Reader) fetch(p []byte, off int64) error {
	r.blobReads.Add(1)
	r.blobBytes.Add(int64(len(p)))
	n, err := r.blob.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("read blob bytes %d+%d: got %d: %w", off, len(p), n, err)
}
