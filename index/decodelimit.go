package index

import (
	"context"
	"sync"

	"golang.org/x/sync/semaphore"
)

// DefaultDecodeBytes is the default DecodeLimit: the compressed and decoded
// bytes the reads of one image (or one serve process) hold at once while
// they fetch and decode, beyond what the span cache keeps. With
// maxSpanBytes it bounds the read path's memory under any concurrency and
// any input. 24 MiB is four 4 MiB gzip spans with their compressed bytes
// (a sequential reader's readahead, decoding on every core), or a region
// being read and the next one fetched ahead of it.
const DefaultDecodeBytes = 24 << 20

// DecodeLimit bounds the bytes that the Readers sharing it fetch and
// decode at once; a fetch waits for room (or its context). Share one
// between the Readers of all layers that share a cache.
type DecodeLimit struct {
	sem *semaphore.Weighted
	max int64
	// fetchBufs holds the buffers compressed runs are fetched into (a
	// *[]byte each), for every Reader sharing the limit. Decoded output
	// never aliases them, so they are reused: they were 40% of what a
	// cold sequential gzip read allocated, and fewer allocations mean
	// fewer collections under a mount's memory limit.
	fetchBufs sync.Pool
}

// maxPooledFetchBuffer bounds the buffers kept for reuse: larger runs
// (huge chunks) are rare and allocate their own.
const maxPooledFetchBuffer = 4<<20 + 256<<10

// fetchBuffer returns a buffer of n bytes for a compressed run, the last
// inflatePad of them zero: the fetch fills the others, or fails.
func (l *DecodeLimit) fetchBuffer(n int64) []byte {
	if p, _ := l.fetchBufs.Get().(*[]byte); p != nil {
		if int64(cap(*p)) >= n {
			b := (*p)[:n]
			clear(b[max(0, n-inflatePad):])
			return b
		}
		l.fetchBufs.Put(p) // fits a smaller run
	}
	c := n
	if n <= maxPooledFetchBuffer {
		c = min(maxPooledFetchBuffer, (n+(256<<10)-1)&^(256<<10-1)) // whole 256 KiB: reusable by runs of similar size
	}
	return make([]byte, n, c)
}

// releaseFetchBuffer hands b back once nothing refers to it.
func (l *DecodeLimit) releaseFetchBuffer(b []byte) {
	if cap(b) <= maxPooledFetchBuffer {
		l.fetchBufs.Put(&b)
	}
}

// NewDecodeLimit returns a limit of n bytes (<= 0: DefaultDecodeBytes).
func NewDecodeLimit(n int64) *DecodeLimit {
	if n <= 0 {
		n = DefaultDecodeBytes
	}
	return &DecodeLimit{sem: semaphore.NewWeighted(n), max: n}
}

// acquire takes room for n bytes (all of it when n is larger: such a fetch
// then runs alone) and returns the release.
func (l *DecodeLimit) acquire(ctx context.Context, n int64) (func(), error) {
	n = min(n, l.max)
	if err := l.sem.Acquire(ctx, n); err != nil {
		return nil, err
	}
	return func() { l.sem.Release(n) }, nil
}
