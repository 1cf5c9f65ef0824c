package index

import (
	"runtime"
	"sync"
)

// recentReads is how many read ends a Reader remembers to recognise
// sequential reads: enough for a few files read at once, each with a few
// reads in flight (the kernel issues FUSE reads of one file concurrently).
const recentReads = 32

// minReadaheadWorkers bounds background fetches from below on small machines.
const minReadaheadWorkers = 4

// readahead is a Reader's sequential-read detector and the bookkeeping of
// its background fetches.
type readahead struct {
	depth int           // spans read ahead of a sequential read; 0: off
	slots chan struct{} // one per running background fetch

	mu       sync.Mutex
	ends     [recentReads]int64 // stream offsets where recent reads ended (-1: none)
	next     int                // ring position in ends
	inflight map[int]struct{}   // spans being read ahead
	wg       sync.WaitGroup
}

// readaheadError marks a failure of a background fetch, so that a read
// that joined it fetches again rather than report someone else's error.
type readaheadError struct{ err error }

func (e *readaheadError) Error() string { return "readahead: " + e.err.Error() }
func (e *readaheadError) Unwrap() error { return e.err }

func (ra *readahead) init(opts ReaderOptions) {
	ra.depth = opts.Readahead
	switch {
	case ra.depth == 0:
		ra.depth = DefaultReadahead
	case ra.depth < 0:
		ra.depth = 0
	}
	workers := opts.ReadaheadWorkers
	if workers <= 0 {
		// At least a few: fetches of raw spans wait on the network, not
		// on a core, and a decode that waits for a core costs nothing.
		workers = max(runtime.NumCPU(), minReadaheadWorkers)
	}
	ra.slots = make(chan struct{}, workers)
	ra.inflight = make(map[int]struct{})
	for i := range ra.ends {
		ra.ends[i] = -1
	}
}

// sequential records a read of stream range [u, end) and reports whether
// it continues an earlier read: it starts where one ended.
func (ra *readahead) sequential(u, end int64) bool {
	if ra.depth == 0 {
		return false
	}
	ra.mu.Lock()
	defer ra.mu.Unlock()
	for i, e := range ra.ends {
		if e == u {
			ra.ends[i] = end // the stream moved on: replace rather than add
			return true
		}
	}
	ra.ends[ra.next] = end
	ra.next = (ra.next + 1) % recentReads
	return false
}

func (ra *readahead) inFlight(i int) bool {
	ra.mu.Lock()
	defer ra.mu.Unlock()
	_, ok := ra.inflight[i]
	return ok
}

// claim marks span i as being read ahead and takes a worker slot; false
// when it is already in flight or no worker is free.
func (ra *readahead) claim(i int) (ok, busy bool) {
	ra.mu.Lock()
	defer ra.mu.Unlock()
	if _, ok := ra.inflight[i]; ok {
		return false, false
	}
	select {
	case ra.slots <- struct{}{}:
	default:
		return false, true
	}
	ra.inflight[i] = struct{}{}
	ra.wg.Add(1)
	return true, false
}

func (ra *readahead) release(i int) {
	ra.mu.Lock()
	delete(ra.inflight, i)
	ra.mu.Unlock()
	<-ra.slots
	ra.wg.Done()
}

// wait blocks until no background fetch runs (tests).
func (ra *readahead) wait() { ra.wg.Wait() }

// readAhead starts background fetches of the spans after stream offset
// from, up to the reader's depth, without passing limit (the end of the
// file being read: what follows belongs to other files). Spans already
// cached or in flight are skipped, and so are raw spans too large to cache
// (older indexes), which are read directly.
// Each span is fetched on its own, so several decode in parallel, and
// through the Reader's singleflight group, so a read needing one of them
// waits for it instead of fetching it again.
func (r *Reader) readAhead(from, limit int64) {
	spans := r.ix.Spans
	if r.ra.depth == 0 || from >= limit {
		return
	}
	first := spanAt(spans, from)
	if first < 0 {
		return
	}
	if spans[first].UOff < from { // the read ended inside this span: it has it
		first++
	}
	for i := first; i < len(spans) && i < first+r.ra.depth && spans[i].UOff < limit; i++ {
		if spans[i].Kind == SpanRaw && spans[i].ULen > directRawSpan {
			return // read directly, never cached
		}
		key := r.key(i)
		if r.ra.inFlight(i) {
			continue
		}
		if _, ok := r.cache.Get(key); ok {
			continue
		}
		ok, busy := r.ra.claim(i)
		if busy {
			r.raSkipped.Add(1)
			return // the next ones would not find a worker either
		}
		if !ok {
			continue
		}
		r.raStarted.Add(1)
		go func() {
			defer r.ra.release(i)
			_, err, _ := r.group.Do(key, func() (any, error) {
				if data, ok := r.cache.Get(key); ok && int64(len(data)) == spans[i].ULen {
					return [][]byte{data}, nil
				}
				v, err := r.fetchRun(i, i)
				if err != nil {
					return nil, &readaheadError{err}
				}
				return v, nil
			})
			if err != nil {
				r.raErrors.Add(1)
				r.log.Debug("readahead failed; reads will fetch the span themselves", "layer", r.ix.Layer, "span", i, "err", err)
			}
		}()
	}
}
