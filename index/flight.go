package index

import (
	"context"
	"errors"
	"sync"
)

// flights lets the reads that need one span share one fetch of it. A fetch
// runs in a context of its own: it ends when every read waiting for it has
// given up (a reader killed in the middle of a FUSE read), not when the
// first of them does, which would fail the others with its error; and it
// ends when the Reader closes.
//
// A fetch's result keeps its share of the DecodeLimit until every read
// that waited for it has used it (copied what it needs): the decoded bytes
// alive at any time are then bounded by the limit (plus the cache), not by
// the number of reads.
type flights struct {
	base context.Context // the Reader's lifetime

	mu sync.Mutex
	m  map[int]*flight // by every span of the run being fetched
}

// fetchFunc is the body of a fetch. keep hands it the release of the
// DecodeLimit share its result holds: the flight calls it once the result
// is used.
type fetchFunc func(ctx context.Context, keep func(release func())) ([][]byte, error)

type flight struct {
	first, last int // the run of spans it fetches
	done        chan struct{}
	val         [][]byte
	err         error
	waiters     int // reads waiting for or using the result; guarded by flights.mu
	cancel      context.CancelFunc
	release     func() // the DecodeLimit share of the result; guarded by flights.mu
	// background: started by readahead for nobody in particular. It is not
	// cancelled when reads that joined it give up, and a read that joined
	// it and saw it fail fetches again itself instead of reporting
	// someone else's error.
	background bool
}

func newFlights(base context.Context) *flights {
	return &flights{base: base, m: make(map[int]*flight)}
}

// errNotCovered: the fetch a caller joined ended with fewer spans than it
// set out to fetch (it found the first in the cache), not the caller's.
var errNotCovered = errors.New("span not covered by the fetch joined")

// has reports whether a fetch of span i is in flight.
func (g *flights) has(i int) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.m[i] != nil
}

// do joins the fetch of span i in flight, or starts one of the run i..j
// that plan gives (cut short before a span another fetch has), waits for
// its result or for ctx to end, and calls use with the result from span i
// on before letting it go. shared reports that the result came from a
// fetch this call did not start; fromBackground that it came from a
// background one.
func (g *flights) do(ctx context.Context, i int, plan func() int, fn func(i, j int) fetchFunc, use func([][]byte)) (err error, shared, fromBackground bool) {
	g.mu.Lock()
	f := g.m[i]
	g.mu.Unlock()
	j := i
	if f == nil {
		j = plan() // outside the lock: it looks at the cache and at g
	}
	g.mu.Lock()
	started := false
	if f = g.m[i]; f == nil {
		for k := i + 1; k <= j; k++ {
			if g.m[k] != nil {
				j = k - 1
				break
			}
		}
		f = g.start(ctx, i, j, false, fn(i, j))
		started = true
	}
	f.waiters++
	g.mu.Unlock()

	select {
	case <-f.done:
	case <-ctx.Done():
		select {
		case <-f.done: // finished meanwhile: the result is as good as the error
		default:
			g.leave(f)
			return ctx.Err(), !started, false
		}
	}
	err = f.err
	if k := i - f.first; err == nil && k >= len(f.val) {
		err = errNotCovered
	}
	if err == nil {
		use(f.val[i-f.first:])
	}
	g.leave(f)
	return err, !started, f.background
}

// startBackground starts fn as the fetch of the run i..j unless a fetch of
// one of its spans is in flight, for nobody waiting (readahead): it runs
// until done or until the Reader closes. done is called with its error
// when it ends. It reports whether it started.
func (g *flights) startBackground(i, j int, fn fetchFunc, done func(error)) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for k := i; k <= j; k++ {
		if g.m[k] != nil {
			return false
		}
	}
	g.start(g.base, i, j, true, func(ctx context.Context, keep func(func())) ([][]byte, error) {
		v, err := fn(ctx, keep)
		done(err)
		return v, err
	})
	return true
}

// start launches fn for the run i..j, registered under each of its spans;
// g.mu is held.
func (g *flights) start(ctx context.Context, i, j int, background bool, fn fetchFunc) *flight {
	// The caller's values (loggers, counters) but not its cancellation.
	fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(g.base, cancel)
	f := &flight{first: i, last: j, done: make(chan struct{}), cancel: cancel, background: background}
	for k := i; k <= j; k++ {
		g.m[k] = f
	}
	keep := func(release func()) {
		g.mu.Lock()
		f.release = release
		g.mu.Unlock()
	}
	go func() {
		f.val, f.err = fn(fctx, keep)
		stop()
		cancel()
		g.mu.Lock()
		g.forget(f)
		if f.waiters == 0 {
			f.releaseResult()
		}
		g.mu.Unlock()
		close(f.done)
	}()
	return f
}

// leave drops a waiter, done with the result or giving up. The last one
// lets the result's DecodeLimit share go; if the fetch is still running
// for nobody (and is not a readahead), it is cancelled and forgotten at
// once, so that a new read starts a fresh one rather than joining one
// being cancelled.
func (g *flights) leave(f *flight) {
	g.mu.Lock()
	defer g.mu.Unlock()
	f.waiters--
	if f.waiters > 0 {
		return
	}
	select {
	case <-f.done:
		f.releaseResult()
		return
	default:
	}
	if f.background {
		return
	}
	f.cancel()
	g.forget(f)
}

// forget unregisters f; g.mu is held.
func (g *flights) forget(f *flight) {
	for k := f.first; k <= f.last; k++ {
		if g.m[k] == f {
			delete(g.m, k)
		}
	}
}

// releaseResult lets the result's share go; flights.mu is held.
func (f *flight) releaseResult() {
	if f.release != nil {
		f.release()
		f.release = nil
	}
}
