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
}

// next returns the region size for a miss whose first chunk starts at blob
// offset off, and remembers where it will end.
func (g *region) next(off int64) int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.lastEnd >= 0 && off >= g.lastEnd-regionSlack && off <= g.lastEnd+regionSlack {
		g.window = min(max(2*g.window, minRegion), maxRegion)
	} else {
		g.window = 0
	}
	g.lastEnd = off + g.window
	return g.window
}

// fetched records where a fetch of a TOC layer really ended (a run is cut
// short before cached chunks and at its byte bounds).
func (g *region) fetched(end int64) {
	g.mu.Lock()
	g.lastEnd = max(g.lastEnd, end)
	g.mu.Unlock()
}

// regionEnd extends a read of spans i..last of a TOC layer to the chunks
// that follow within the planned region; other layers are left as they
// are (gzip and raw spans are large, and readahead covers sequential reads).
func (r *Reader) regionEnd(i, last int) int {
	spans := r.ix.Spans
	if k := spans[i].Kind; k != SpanGzipMember && k != SpanZstdFrame {
		return last
	}
	window := r.region.next(spans[i].COff)
	limit := spans[i].COff + window
	for last+1 < len(spans) && spans[last+1].COff+spans[last+1].CLen <= limit {
		last++
	}
	return last
}
