package index

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"runtime"

	"golang.org/x/sync/errgroup"
)

// Limits of one fetch: a read needing more spans than this loops. The span
// count is high for the small chunks of TOC layers (see region.go): the
// byte bounds are what matter.
const (
	maxRunSpans = 1024
	maxRunBytes = 32 << 20 // compressed bytes of one ReadAt
	maxRunGap   = 64 << 10 // bytes between spans fetched rather than split into two reads
)

// load is the one way reads, readahead and prefetch get decoded spans the
// cache does not have (they look there first): a fetch in flight for span
// i, else a new fetch of spans
// i..j (j <= last, at most maxSpans, see runEnd) that is verified, decoded
// and cached; with region, a TOC layer's fetch may go past last to the
// chunks that follow (see region.go). It calls use with the decoded bytes
// of span i and of the
// spans after it that came with it (at least one), while they are held
// against the DecodeLimit; use must not keep them.
//
// A caller that joined a background fetch (readahead) which then failed
// fetches again itself, up to twice: readahead errors are never a read's.
func (r *Reader) load(ctx context.Context, i, last, maxSpans int, region bool, use func([][]byte)) error {
	key := r.key(i)
	plan := func() int {
		if s := &r.ix.Spans[i]; region && isTOCSpan(s) {
			return r.regionRun(i, last, maxSpans, s.COff+s.CLen)
		}
		return r.runEnd(i, last, maxSpans)
	}
	for attempt := 0; ; attempt++ {
		var lateHit bool
		fetch := func(i, j int) fetchFunc { return r.fetchFunc(i, j, &lateHit) }
		err, shared, fromBackground := r.flights.do(ctx, i, plan, fetch, use)
		if errors.Is(err, errNotCovered) || err != nil && shared && fromBackground && attempt < 2 {
			if data, ok := r.cached(key, i); ok {
				r.countHit(false)
				use([][]byte{data})
				return nil
			}
			continue
		}
		if err != nil {
			return err
		}
		// Decodes were counted by fetchRun; what else this lookup found
		// is a hit.
		if shared || lateHit {
			r.countHit(shared)
		}
		return nil
	}
}

// fetchFunc is the body of a fetch of the run i..j: a last look at the
// cache for span i (a fetch that just finished may have filled it after
// the caller looked: that is a hit, not a second decode; it sets
// *lateHit, and the fetch ends with span i alone), then fetchRun.
func (r *Reader) fetchFunc(i, j int, lateHit *bool) fetchFunc {
	return func(ctx context.Context, keep func(func())) ([][]byte, error) {
		key := r.key(i)
		if r.cache.Contains(key) {
			if data, ok := r.cached(key, i); ok {
				*lateHit = true
				return [][]byte{data}, nil
			}
		}
		return r.fetchRun(ctx, i, j, keep)
	}
}

func (r *Reader) countHit(shared bool) {
	r.stats.lookups.Add(1)
	r.stats.hits.Add(1)
	if shared {
		r.stats.shared.Add(1)
	}
}

// cached looks span i up in the cache. An entry of the wrong length (a
// damaged disk tier) counts as absent rather than a crash.
func (r *Reader) cached(key string, i int) ([]byte, bool) {
	data, ok := r.cache.Get(key)
	if !ok || int64(len(data)) != r.ix.Spans[i].ULen {
		return nil, false
	}
	return data, true
}

// runEnd extends a fetch from span i towards last, over at most maxSpans
// spans, while the spans are of one kind, in order and close together in
// their source, not cached and not being fetched already (a read joins
// those instead). The run's source, and what it decodes to, each stay
// within maxRunBytes.
func (r *Reader) runEnd(i, last, maxSpans int) int {
	spans := r.ix.Spans
	j := i
	base, _ := spans[i].source()
	decoded := spans[i].ULen
	for j < last && j+1-i < maxSpans {
		next := &spans[j+1]
		prevOff, prevLen := spans[j].source()
		off, n := next.source()
		if next.Kind != spans[i].Kind || off < prevOff || off > prevOff+prevLen+maxRunGap ||
			off+n-base > maxRunBytes || decoded+next.ULen > maxRunBytes {
			break
		}
		if r.cache.Contains(r.key(j+1)) || r.flights.has(j+1) {
			break
		}
		decoded += next.ULen
		j++
	}
	return j
}

// fetchRun reads the source bytes of spans i..j with one ReadAt, verifies
// and decodes them (in parallel) and caches the results. A digest mismatch
// refetches once; a second one is an error, never data. The run's share of
// the DecodeLimit is handed to keep with the result.
func (r *Reader) fetchRun(ctx context.Context, i, j int, keep func(release func())) ([][]byte, error) {
	spans := r.ix.Spans[i : j+1]
	base, end := spans[0].source()
	end += base
	decoded := int64(0)
	for k := range spans {
		off, n := spans[k].source()
		end = max(end, off+n)
		decoded += spans[k].ULen
	}
	release, err := r.decode.acquire(ctx, end-base+inflatePad+decoded)
	if err != nil {
		return nil, err
	}
	out, err := r.fetchDecode(ctx, spans, base, end)
	if err != nil {
		release()
		return nil, err
	}
	keep(release)
	for k := range spans {
		r.cache.Put(r.key(i+k), out[k])
	}
	r.stats.lookups.Add(int64(len(spans)))
	r.stats.decoded.Add(int64(len(spans)))
	return out, nil
}

// fetchDecode fetches blob bytes [base, end) of a run and decodes its spans.
func (r *Reader) fetchDecode(ctx context.Context, spans []Span, base, end int64) ([][]byte, error) {
	var buf []byte
	if k := spans[0].Kind; k == SpanRaw || k == SpanLocal {
		buf = make([]byte, end-base+inflatePad) // the spans are slices of it
	} else {
		buf = r.decode.fetchBuffer(end - base + inflatePad)
		defer r.decode.releaseFetchBuffer(buf)
	}
	var out [][]byte
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		if attempt > 0 {
			r.stats.retries.Add(1)
			clear(buf)
		}
		if spans[0].Kind == SpanLocal {
			err = r.readLocal(buf[:end-base], base)
		} else {
			err = r.fetch(ctx, buf[:end-base], base)
		}
		if err != nil {
			return nil, err
		}
		out, err = r.decodeRun(spans, buf, base)
		if !errors.Is(err, ErrCorrupt) {
			break
		}
	}
	return out, err
}

// decodeRun verifies and decodes the spans of a run from buf, which holds
// the blob bytes from offset base.
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
	r.stats.localReads.Add(1)
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
func (r *Reader) fetch(ctx context.Context, p []byte, off int64) error {
	r.stats.blobReads.Add(1)
	r.stats.blobBytes.Add(int64(len(p)))
	n, err := r.blob.ReadAt(ctx, p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("read blob bytes %d+%d: got %d: %w", off, len(p), n, err)
}
