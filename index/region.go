package index

import "sync"

// Cross-file fetch planning for TOC layers (eStargz, zstd:chunked). Their
// spans are the chunks of every file in blob order, most of them small, so
// a read of one file fetching only its own chunk makes one request per
// file: a program reading a package, or `tar` reading the whole tree, pays
// a round trip per file. A fetch that misses therefore also takes the
// chunks that follow in the blob, up to a region that grows while misses
// keep landing where the last region ended (sequential access through the
// blob: 256 KiB, doubling up to 4 MiB) and collapses to nothing on a miss
// elsewhere (random access: only what is read is fetched). What it brings
// is verified and cached like anything read.
const (
	minRegion = 256 << 10
	maxRegion = 4 << 20
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
	// lastStart is where the last planned fetch started.
	lastStart int64
	// The chunks the last region brought beyond what its read needed
	// (spans extraFirst..extraLast, extraBytes in the blob) and how many of
	// their bytes reads have used since: a region mostly unused (a program
	// reading one file in two, like the sources but not the bytecode of a
	// package) stops growing, or shrinks.
	extraFirst, extraLast int
	extraBytes, usedBytes int64
	used                  map[int]bool
}

// next returns the region size for a miss whose first chunk starts at blob
// offset off, and remembers where it will end.
func (g *region) next(off int64) int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	sequential := g.lastEnd >= 0 && off >= g.lastEnd-regionSlack && off <= g.lastEnd+regionSlack
	switch {
	case !sequential:
		g.window = 0
	case g.window == 0 || g.extraBytes == 0:
		// The last fetch took only what its read needed: start a region if
		// that was at least half of the blob from there to this miss.
		if 2*(g.lastEnd-g.lastStart) >= off-g.lastStart {
			g.window = minRegion
		} else {
			g.window = 0
		}
	case 2*g.usedBytes >= g.extraBytes:
		g.window = min(2*g.window, maxRegion)
	case 3*g.usedBytes < g.extraBytes:
		if g.window /= 2; g.window < minRegion {
			g.window = 0
		}
	}
	g.lastStart, g.lastEnd = off, off+g.window
	return g.window
}

// planned records the chunks a region added beyond the read's own.
func (g *region) planned(first, last int, bytes int64) {
	g.mu.Lock()
	g.extraFirst, g.extraLast, g.extraBytes, g.usedBytes = first, last, bytes, 0
	clear(g.used)
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

// fetched records where a fetch of a TOC layer really ended (a run is cut
// short before cached chunks and at its byte bounds).
func (g *region) fetched(end int64) {
	g.mu.Lock()
	g.lastEnd = max(g.lastEnd, end)
	g.mu.Unlock()
}

// isTOCSpan says whether span s is a chunk of a TOC layer, the spans that
// region planning is for (gzip and raw spans are large, and readahead
// covers sequential reads).
func isTOCSpan(s *Span) bool { return s.Kind == SpanGzipMember || s.Kind == SpanZstdFrame }

// regionEnd extends a read of spans i..last of a TOC layer to the chunks
// that follow within the planned region; other layers are left as they
// are.
func (r *Reader) regionEnd(i, last int) int {
	spans := r.ix.Spans
	if !isTOCSpan(&spans[i]) {
		return last
	}
	window := r.region.next(spans[i].COff)
	limit := spans[i].COff + window
	need := last
	for last+1 < len(spans) && spans[last+1].COff+spans[last+1].CLen <= limit {
		last++
	}
	if last > need {
		r.region.planned(need+1, last, spans[last].COff+spans[last].CLen-spans[need+1].COff)
	}
	return last
}

// usedSpan tells the planning that a read used span i.
func (r *Reader) usedSpan(i int) {
	if s := &r.ix.Spans[i]; isTOCSpan(s) {
		r.region.use(i, s.CLen)
	}
}
