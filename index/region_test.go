package index

import (
	"bytes"
	"context"
	"fmt"
	"math/rand"
	"sync"
	"testing"
)

// smallFilesLayer is an eStargz layer of n small files (each its own chunk)
// and their contents, in blob order.
func smallFilesLayer(t *testing.T, n, size int) (*Index, tocLayer, []*Entry, map[string][]byte) {
	t.Helper()
	rng := rand.New(rand.NewSource(50))
	var files []tarFile
	contents := map[string][]byte{}
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("pkg/m%04d.py", i)
		c := randomContent(rng, size/2+rng.Intn(size))
		files = append(files, tarFile{hdr: tarHeader(name, len(c)), content: c})
		contents[name] = c
	}
	l := estargzBuild(t, writeTar(t, files), 64<<10, nil, false)
	ix, err := Build(context.Background(), l.opts())
	if err != nil {
		t.Fatal(err)
	}
	var regs []*Entry
	for _, e := range regularEntries(ix) {
		if e.Size > 0 {
			regs = append(regs, e)
		}
	}
	return ix, l, regs, contents
}

// Reading small files in blob order fetches regions that grow: far fewer
// requests than files, and the bytes fetched stay close to what is read.
func TestRegionsGrowOnSequentialReads(t *testing.T) {
	ix, l, regs, contents := smallFilesLayer(t, 400, 6000)
	blob := newMemBlob(l.blob)
	r := ix.NewReader(blob, newCache(defaultTestCache), ReaderOptions{Readahead: -1})
	defer r.Close()
	var need int64
	for _, e := range regs {
		checkRead(t, r, e, contents[e.Name], make([]byte, e.Size), 0)
		for _, s := range chunkSpans(ix, e) {
			need += s.CLen
		}
	}
	reads, fetched := blob.reads.Load(), blob.bytes.Load()
	t.Logf("%d files: %d blob reads, %d bytes fetched for %d needed", len(regs), reads, fetched, need)
	if reads > int64(len(regs))/10 {
		t.Errorf("%d blob reads for %d files read in blob order", reads, len(regs))
	}
	if float64(fetched) > 1.1*float64(need)+maxRegion {
		t.Errorf("fetched %d bytes for %d needed", fetched, need)
	}
	if st := r.Stats(); st.Hits+st.SpansDecoded != st.Lookups {
		t.Errorf("stats %+v", st)
	}
}

// Reading files in random order fetches about what is read: a miss away
// from the last region fetches no neighbours (the layer is large enough
// that random misses seldom land next to the last one, as in real layers).
func TestRegionsCollapseOnRandomReads(t *testing.T) {
	ix, l, regs, contents := smallFilesLayer(t, 400, 40000)
	rng := rand.New(rand.NewSource(51))
	rng.Shuffle(len(regs), func(i, j int) { regs[i], regs[j] = regs[j], regs[i] })
	regs = regs[:60]
	blob := newMemBlob(l.blob)
	r := ix.NewReader(blob, newCache(defaultTestCache), ReaderOptions{Readahead: -1})
	defer r.Close()
	var need int64
	for _, e := range regs {
		checkRead(t, r, e, contents[e.Name], make([]byte, e.Size), 0)
		for _, s := range chunkSpans(ix, e) {
			need += s.CLen
		}
	}
	if fetched := blob.bytes.Load(); float64(fetched) > 1.5*float64(need) {
		t.Errorf("random reads fetched %d bytes for %d needed", fetched, need)
	}
}

// Concurrent misses in one region share its fetch: a read of a chunk that
// a region being fetched covers waits for it instead of fetching again.
func TestConcurrentMissesShareARegion(t *testing.T) {
	ix, l, regs, contents := smallFilesLayer(t, 200, 6000)
	sb := newStallBlob(l.blob)
	r := ix.NewReader(sb, newCache(defaultTestCache), ReaderOptions{Readahead: -1})
	defer r.Close()
	// Two sequential misses make the region grow; the third fetch then
	// covers the next 256 KiB of chunks.
	close(sb.release)
	for _, e := range regs[:2] {
		checkRead(t, r, e, contents[e.Name], make([]byte, e.Size), 0)
	}
	sb.release = make(chan struct{})
	reads := sb.reads.Load()
	var wg sync.WaitGroup
	for _, e := range regs[2:8] {
		wg.Go(func() {
			p := make([]byte, e.Size)
			if _, err := r.ReadAt(context.Background(), e, p, 0); err != nil || !bytes.Equal(p, contents[e.Name]) {
				t.Errorf("%s: %v", e.Name, err)
			}
		})
	}
	waitFor(t, sb.started, "the region fetch")
	close(sb.release)
	wg.Wait()
	if got := sb.reads.Load() - reads; got > 2 {
		t.Errorf("%d fetches for 6 concurrent misses in one region", got)
	}
}

// Reading some of the files in blob order (the sources of a package but
// not its bytecode) keeps regions from growing over what nobody reads: a
// region half used stops growing, one used less than a third shrinks.
func TestRegionsFollowTheirUse(t *testing.T) {
	ix, l, regs, contents := smallFilesLayer(t, 1200, 6000)
	for _, tc := range []struct {
		every       int     // read one file in every
		maxFetched  float64 // fetched / needed
		maxReadsPer int     // files read per blob read, at least
	}{{2, 2.5, 4}, {8, 4, 1}} {
		blob := newMemBlob(l.blob)
		r := ix.NewReader(blob, newCache(defaultTestCache), ReaderOptions{Readahead: -1})
		var need, all int64
		files := 0
		for k, e := range regs {
			for _, s := range chunkSpans(ix, e) {
				all += s.CLen
				if k%tc.every == 0 {
					need += s.CLen
				}
			}
			if k%tc.every == 0 {
				checkRead(t, r, e, contents[e.Name], make([]byte, e.Size), 0)
				files++
			}
		}
		r.Close()
		reads, fetched := blob.reads.Load(), blob.bytes.Load()
		t.Logf("1 file in %d: %d blob reads, %d bytes fetched for %d needed (%d in all)", tc.every, reads, fetched, need, all)
		if float64(fetched) > tc.maxFetched*float64(need) {
			t.Errorf("1 file in %d: fetched %d bytes for %d needed: regions grew over files nobody reads", tc.every, fetched, need)
		}
		if reads*int64(tc.maxReadsPer) > int64(files) {
			t.Errorf("1 file in %d: %d blob reads for %d files read in blob order", tc.every, reads, files)
		}
	}
}

// With readahead on, a reader going through the files in blob order gets
// the next region fetched in the background while it reads the second half
// of the current one: it still fetches each chunk once, in few requests.
func TestRegionsAreFetchedAhead(t *testing.T) {
	ix, l, regs, contents := smallFilesLayer(t, 800, 6000)
	blob := newMemBlob(l.blob)
	r := ix.NewReader(blob, newCache(defaultTestCache), ReaderOptions{})
	defer r.Close()
	var need int64
	for _, e := range regs {
		checkRead(t, r, e, contents[e.Name], make([]byte, e.Size), 0)
		for _, s := range chunkSpans(ix, e) {
			need += s.CLen
		}
	}
	r.Close() // waits for fetches still running ahead
	st := r.Stats()
	reads, fetched := blob.reads.Load(), blob.bytes.Load()
	t.Logf("%d files: %d blob reads (%d started ahead), %d bytes fetched for %d needed", len(regs), reads, st.ReadaheadStarted, fetched, need)
	if st.ReadaheadStarted == 0 {
		t.Error("no region was fetched ahead of the reader")
	}
	if st.Shared == 0 {
		t.Error("no read found its chunk in a fetch started ahead of it")
	}
	if reads > int64(len(regs))/10 {
		t.Errorf("%d blob reads for %d files read in blob order", reads, len(regs))
	}
	if float64(fetched) > float64(need)+2*maxRegion {
		t.Errorf("fetched %d bytes for %d needed", fetched, need)
	}
}
