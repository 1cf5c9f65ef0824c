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

	mu     sync.Mutex
	ends   [recentReads]int64 // stream offsets where recent reads ended (-1: none)
	next   int                // ring position in ends
	wg     sync.WaitGroup     // background fetches running
	closed bool               // guarded by mu: no new background fetch (Reader.Close)
}

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

// claim takes a worker slot for one background fetch; false when every
// worker is busy.
func (ra *readahead) claim() bool {
	ra.mu.Lock()
	defer ra.mu.Unlock()
	if ra.closed {
		return false
	}
	select {
	case ra.slots <- struct{}{}:
		ra.wg.Add(1)
		return true
	default:
		return false
	}
}

// close refuses new background fetches and waits for the running ones.
func (ra *readahead) close() {
	ra.mu.Lock()
	ra.closed = true
	ra.mu.Unlock()
	ra.wg.Wait()
}

func (ra *readahead) release() {
	<-ra.slots
	ra.wg.Done()
}

// readAhead starts background fetches of the spans after stream offset
// from, up to the reader's depth, without passing limit (the end of the
// file being read: what follows belongs to other files). Spans already
// cached or being fetched are skipped. Each span is fetched on its own, so
// several decode in parallel, and through load, so a read needing one of
// them waits for it instead of fetching it again.
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
		if r.flights.has(i) || r.cache.Contains(r.key(i)) {
			continue
		}
		if !r.ra.claim() {
			r.stats.raSkipped.Add(1)
			return // the next ones would not find a worker either
		}
		var lateHit bool
		started := r.flights.startBackground(i, i, r.fetchFunc(i, i, &lateHit), func(err error) {
			if err != nil && r.flights.base.Err() == nil {
				r.stats.raErrors.Add(1)
				r.log.Debug("readahead failed; reads will fetch the span themselves", "layer", r.ix.Layer, "span", i, "err", err)
			}
			r.ra.release()
		})
		if !started {
			r.ra.release()
			continue
		}
		r.stats.raStarted.Add(1)
	}
}
