package index

import (
	"context"

	"golang.org/x/sync/semaphore"
)

// DefaultDecodeBytes is the default DecodeLimit: the compressed and decoded
// bytes the reads of one image (or one serve process) hold at once while
// they fetch and decode, beyond what the span cache keeps. With
// maxSpanBytes it bounds the read path's memory under any concurrency and
// any input.
const DefaultDecodeBytes = 32 << 20

// DecodeLimit bounds the bytes that the Readers sharing it fetch and
// decode at once; a fetch waits for room (or its context). Share one
// between the Readers of all layers that share a cache.
type DecodeLimit struct {
	sem *semaphore.Weighted
	max int64
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
