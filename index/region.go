package index

import (
	"sort"
	"sync"
)

// Cross-file fetch planning for TOC layers (eStargz, zstd:chunked). Their
// spans are the chunks of every file in blob order, most of them small, so
// a read of one file fetching only its own chunk makes one request per
// file: a program reading a package, or `tar` reading the whole tree, pays
// a round trip per file. A fetch that misses therefore also takes the
// chunks that follow in the blob, up to a region that grows while misses
// keep landing where the last region ended (sequential access through the
// blob: 256 KiB, doubling up to 2 MiB) and collapses to nothing on a miss
// elsewhere (random access: only what is read is fetched). The largest
// region is 2 MiB: 4 MiB saved few round trips (98 instead of 145 to read
// a whole image) and raised the peak of memory by 15 MiB. Once a reader
// is halfway through the last region, the next one is fetched in the
// background (Reader.regionAhead). What a region brings is verified and
// cached like anything read.
const (
	minRegion = 256 << 10
	maxRegion = 2 << 20
	// regionSlack is how far from the end of the last region a miss may
	// land and still count as sequential: files read in directory order
	// skip a few small chunks of the blob order now and then.
	regionSlack = 64 << 10
)

// region is a Reader's state of the planning.
type region struct {
	mu      sync.Mutex
	window  int64 // current region size; 0: fetch what is needed only
	lastEnd int64 // blob offset where the last planned region ended; -1: none
	// lastStart is where the last planned fetch started; -1: none.
	lastStart int64
	// The chunks the last region brought beyond what its read needed
	// (spans extraFirst..extraLast, extraBytes in the blob) and how many of
	// their bytes reads have used since: a region mostly unused (a program
	// reading one file in two, like the sources but not the bytecode of a
	// package) stops growing, or shrinks.
	extraFirst, extraLast int
	extraStart, extraEnd  int64 // their blob range
	usedBytes             int64
	used                  map[int]bool
	// aheadPending: a region is being fetched ahead of a reader (see
	// Reader.regionAhead); one at a time.
	aheadPending bool
}

// next returns the region size for a fetch whose first chunk starts at
// blob offset off; the caller then calls planned with where the fetch
// really ends. The last region's use is judged over its chunks before blob
// offset upTo: all of them for a miss, those a reader has gone past for a
// fetch ahead of it.
func (g *region) next(off, upTo int64) int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	sequential := g.lastEnd >= 0 && off >= g.lastEnd-regionSlack && off <= g.lastEnd+regionSlack
	judged := min(upTo, g.extraEnd) - g.extraStart
	switch {
	case !sequential:
		g.window = 0
	case g.window == 0 || judged <= 0:
		// The last fetch took only what its read needed: start a region if
		// that was at least half of the blob from there to this miss.
		if 2*(g.lastEnd-g.lastStart) >= off-g.lastStart {
			g.window = max(g.window, minRegion)
		} else {
			g.window = 0
		}
	case 2*g.usedBytes >= judged:
		g.window = min(2*g.window, maxRegion)
	case 3*g.usedBytes < judged:
		if g.window /= 2; g.window < minRegion {
			g.window = 0
		}
	}
	g.lastStart, g.lastEnd = off, off+g.window
	return g.window
}

// planned records where the front fetch really ends (a run stops before
// chunks cached or being fetched, and at its bounds), and the chunks
// first..last it brings beyond what its read needs, from blob offset start.
func (g *region) planned(first, last int, start, end int64) {
	g.mu.Lock()
	g.lastEnd = end
	g.extraFirst, g.extraLast, g.extraStart, g.extraEnd, g.usedBytes = first, last, start, end, 0
	clear(g.used)
	g.mu.Unlock()
}

// ahead returns where a region fetched ahead of a reader now at blob
// offset off should start: where the last region ends, once the reader is
// in its second half. false: no region is being planned, or one is already
// being fetched ahead, or the reader is elsewhere.
func (g *region) ahead(off int64) (int64, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.window < minRegion || g.aheadPending || off < g.lastEnd-g.window/2 || off >= g.lastEnd {
		return 0, false
	}
	g.aheadPending = true
	return g.lastEnd, true
}

func (g *region) aheadDone() {
	g.mu.Lock()
	g.aheadPending = false
	g.mu.Unlock()
}

// use records that a read used span i, of clen blob bytes.
func (g *region) use(i int, clen int64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if i < g.extraFirst || i > g.extraLast || g.used[i] {
		return
	}
	if g.used == nil {
		g.used = map[int]bool{}
	}
	g.used[i] = true
	g.usedBytes += clen
}

// isTOCSpan says whether span s is a chunk of a TOC layer, the spans that
// region planning is for (gzip and raw spans are large, and readahead
// covers sequential reads).
func isTOCSpan(s *Span) bool { return s.Kind == SpanGzipMember || s.Kind == SpanZstdFrame }

// regionRun plans the fetch of a TOC layer's spans i..last: extended over
// the chunks that follow within the next region, then cut like any run
// (runEnd), judging the last region's use up to blob offset upTo.
func (r *Reader) regionRun(i, last, maxSpans int, upTo int64) int {
	spans := r.ix.Spans
	window := r.region.next(spans[i].COff, upTo)
	need := last
	for limit := spans[i].COff + window; last+1 < len(spans) && isTOCSpan(&spans[last+1]) && spans[last+1].COff+spans[last+1].CLen <= limit; {
		last++
	}
	j := r.runEnd(i, last, maxSpans)
	first := min(need+1, j+1)
	end := spans[j].COff + spans[j].CLen
	start := end
	if first <= j {
		start = spans[first].COff
	}
	r.region.planned(first, j, start, end)
	return j
}

// regionAhead fetches, in the background, the region after the last one
// once a read (of span i) is in the second half of it: a reader going
// through the blob in order (tar, a program loading a package) then finds
// the next files decoded instead of waiting for each region in turn.
func (r *Reader) regionAhead(i int) {
	spans := r.ix.Spans
	if r.ra.depth == 0 || !isTOCSpan(&spans[i]) {
		return
	}
	start, ok := r.region.ahead(spans[i].COff)
	if !ok {
		return
	}
	j := sort.Search(len(spans), func(k int) bool { return spans[k].COff >= start })
	if j == len(spans) || !isTOCSpan(&spans[j]) || r.flights.has(j) || r.cache.Contains(r.key(j)) || !r.ra.claim() {
		r.region.aheadDone()
		return
	}
	last := r.regionRun(j, j, maxRunSpans, spans[i].COff+spans[i].CLen)
	var lateHit bool
	started := r.flights.startBackground(j, last, r.fetchFunc(j, last, &lateHit), func(err error) {
		if err != nil && r.flights.base.Err() == nil {
			r.stats.raErrors.Add(1)
			r.log.Debug("region read ahead failed; reads will fetch it themselves", "layer", r.ix.Layer, "span", j, "err", err)
		}
		r.ra.release()
		r.region.aheadDone()
	})
	if !started {
		r.ra.release()
		r.region.aheadDone()
		return
	}
	r.stats.raStarted.Add(1)
}

// usedSpan tells the planning that a read used span i.
func (r *Reader) usedSpan(i int) {
	if s := &r.ix.Spans[i]; isTOCSpan(s) {
		r.region.use(i, s.CLen)
	}
}
