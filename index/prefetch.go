package index

import (
	"context"
	"fmt"
	"strconv"
)

// prefetchEnd returns the stream offset before which an eStargz layer
// holds its prioritized files, or 0 when there is nothing to prefetch.
func (ix *Index) prefetchEnd() (int64, error) {
	v, ok := ix.Meta[metaPrefetchEnd]
	if !ok {
		return 0, nil
	}
	end, err := strconv.ParseInt(v, 10, 64)
	if err != nil || end < 0 {
		return 0, fmt.Errorf("index meta %s=%q: %w", metaPrefetchEnd, v, ErrCorrupt)
	}
	return min(end, ix.usize), nil
}

// Prefetch fetches, verifies and caches the prioritized files of an eStargz
// layer: the chunks before its .prefetch.landmark, which the layer's
// builder put first because a workload reads them at start (as
// stargz-snapshotter does at mount). Contiguous chunks not yet cached are
// fetched together, each ReadAt bounded by maxRunBytes, so that a
// prioritized region costs a few range requests rather than one per file.
// It does nothing for other formats, and for layers without a landmark or
// with a .no.prefetch.landmark.
//
// Chunks are checked against the TOC's digests as on every read; a chunk
// that does not match (after one retry) ends Prefetch with ErrCorrupt and
// nothing of its run is cached. Runs already cached stay: they matched.
func (r *Reader) Prefetch(ctx context.Context) error {
	end, err := r.ix.prefetchEnd()
	if err != nil || end == 0 {
		return err
	}
	spans := r.ix.Spans
	last := spanAt(spans, end-1)
	for i := 0; i <= last; {
		if err := ctx.Err(); err != nil {
			return err
		}
		if r.cache.Contains(r.key(i)) {
			i++
			continue
		}
		// Unlike a read's run, a prefetch run has no span count limit:
		// nothing waits for it. maxRunBytes still bounds each request.
		got := 0
		if err := r.load(ctx, i, last, len(spans), false, func(v [][]byte) { got = len(v) }); err != nil {
			return fmt.Errorf("layer %s: prefetch prioritized files (stream offset %d): %w", r.ix.Layer, spans[i].UOff, err)
		}
		// A joined fetch may have covered fewer spans than this one would.
		i += got
	}
	return nil
}
