package index

import (
	"context"
	"sync"
)

// flights lets the reads that need one span share one fetch of it. A fetch
// runs in a context of its own: it ends when every read waiting for it has
// given up (a reader killed in the middle of a FUSE read is interrupted),
// not when the first of them does, which would fail the others with its
// error; and it ends when the Reader closes.
type flights struct {
	base context.Context // the Reader's lifetime

	mu sync.Mutex
	m  map[int]*flight // by the first span of the run being fetched
}

type flight struct {
	done    chan struct{}
	val     [][]byte
	err     error
	waiters int
	cancel  context.CancelFunc
	// background: started by readahead or prefetch, for nobody in
	// particular. A read that joined such a fetch and saw it fail fetches
	// again itself instead of reporting someone else's error.
	background bool
}

func newFlights(base context.Context) *flights {
	return &flights{base: base, m: make(map[int]*flight)}
}

// has reports whether a fetch starting at span i is in flight.
func (g *flights) has(i int) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.m[i] != nil
}

// do joins the fetch of span i in flight, or starts fn as that fetch, and
// waits for its result or for ctx to end. shared reports that the result
// came from a fetch this call did not start; fromBackground that it came
// from a background one.
func (g *flights) do(ctx context.Context, i int, background bool, fn func(context.Context) ([][]byte, error)) (val [][]byte, err error, shared, fromBackground bool) {
	g.mu.Lock()
	f := g.m[i]
	started := f == nil
	if started {
		f = g.start(ctx, i, background, fn)
	}
	f.waiters++
	g.mu.Unlock()

	select {
	case <-f.done:
	case <-ctx.Done():
		select {
		case <-f.done: // finished meanwhile: the result is as good as the error
		default:
			g.leave(i, f)
			return nil, ctx.Err(), !started, false
		}
	}
	return f.val, f.err, !started, f.background
}

// startBackground starts fn as the fetch of span i unless one is in
// flight, for nobody waiting (readahead): it runs until done or until the
// Reader closes. done is called when it ends. It reports whether it started.
func (g *flights) startBackground(i int, fn func(context.Context) ([][]byte, error), done func([][]byte, error)) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.m[i] != nil {
		return false
	}
	f := g.start(g.base, i, true, func(ctx context.Context) ([][]byte, error) {
		v, err := fn(ctx)
		done(v, err)
		return v, err
	})
	f.waiters++ // the background holder, who never leaves
	return true
}

// start launches fn for span i; g.mu is held.
func (g *flights) start(ctx context.Context, i int, background bool, fn func(context.Context) ([][]byte, error)) *flight {
	// The caller's values (loggers, counters) but not its cancellation.
	fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(g.base, cancel)
	f := &flight{done: make(chan struct{}), cancel: cancel, background: background}
	g.m[i] = f
	go func() {
		f.val, f.err = fn(fctx)
		stop()
		cancel()
		g.mu.Lock()
		if g.m[i] == f {
			delete(g.m, i)
		}
		g.mu.Unlock()
		close(f.done)
	}()
	return f
}

// leave drops a waiter that gave up; the last one cancels the fetch, and
// the fetch is forgotten at once so that a new read starts a fresh one
// rather than joining one being cancelled.
func (g *flights) leave(i int, f *flight) {
	g.mu.Lock()
	defer g.mu.Unlock()
	f.waiters--
	if f.waiters > 0 {
		return
	}
	f.cancel()
	if g.m[i] == f {
		delete(g.m, i)
	}
}
