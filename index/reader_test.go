package index

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand"
	"sync"
	"testing"
	"time"

	"github.com/imgfs/imgfs/manifest"
)

// gzipLayer builds a random gzip layer and its index with small spans.
func gzipLayer(t *testing.T, seed int64, level int, spanSize int64) (blob *memBlob, ix *Index, want map[string][]byte) {
	t.Helper()
	rng := rand.New(rand.NewSource(seed))
	tarData, _ := randomLayer(rng, 80, 300<<10)
	data := gzipBytes(tarData, level)
	opts := buildOpts(data, manifest.FormatGzip, spanSize)
	ix, err := Build(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return opts.Blob.(*memBlob), ix, extract(t, tarData)
}

// smallFileInOneSpan finds a small regular file that does not cross a span
// boundary, and its span.
func smallFileInOneSpan(t *testing.T, ix *Index) (*Entry, *Span) {
	t.Helper()
	for _, e := range regularEntries(ix) {
		if e.Size == 0 || e.Size > 4096 {
			continue
		}
		i := spanAt(ix.Spans, e.Offset)
		if i > 0 && e.Offset+e.Size <= ix.Spans[i].end() {
			return e, &ix.Spans[i]
		}
	}
	t.Fatal("no small file inside a single span (not the first)")
	return nil, nil
}

// TestReadFetchesOneSpan: reading a small file of an indexed gzip layer
// costs one ReadAt of exactly its span's compressed bytes.
func TestReadFetchesOneSpan(t *testing.T) {
	blob, ix, want := gzipLayer(t, 11, 6, 64<<10)
	e, s := smallFileInOneSpan(t, ix)
	blob.resetCounts()
	r := ix.NewReader(blob, newCache(64<<20), ReaderOptions{})
	p := make([]byte, e.Size)
	if _, err := r.ReadAt(context.Background(), e, p, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(p, want[e.Name]) {
		t.Fatal("wrong content")
	}
	if got := blob.reads.Load(); got != 1 {
		t.Fatalf("%d blob reads, want 1", got)
	}
	if got := blob.bytes.Load(); got != s.CLen {
		t.Fatalf("fetched %d bytes, the span has %d compressed bytes", got, s.CLen)
	}
	// A second read of the same file is served from the cache.
	if _, err := r.ReadAt(context.Background(), e, p, 0); err != nil {
		t.Fatal(err)
	}
	st := r.Stats()
	if blob.reads.Load() != 1 || st.Hits != 1 || st.SpansDecoded != 1 || st.BlobReads != 1 || st.BlobBytes != s.CLen {
		t.Fatalf("after a cached read: blob reads %d, stats %+v", blob.reads.Load(), st)
	}
}

// TestReadManySpansOneFetch: a read needing several spans fetches them
// with one ReadAt and decodes each once.
func TestReadManySpansOneFetch(t *testing.T) {
	blob, ix, want := gzipLayer(t, 12, 1, 32<<10)
	var big *Entry
	for _, e := range regularEntries(ix) {
		if spanAt(ix.Spans, e.Offset+e.Size-1)-spanAt(ix.Spans, e.Offset) >= 3 {
			big = e
			break
		}
	}
	if big == nil {
		t.Fatal("no file covering 4 spans")
	}
	first, last := spanAt(ix.Spans, big.Offset), spanAt(ix.Spans, big.Offset+big.Size-1)
	blob.resetCounts()
	r := ix.NewReader(blob, newCache(defaultTestCache), ReaderOptions{})
	p := make([]byte, big.Size)
	if _, err := r.ReadAt(context.Background(), big, p, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(p, want[big.Name]) {
		t.Fatal("wrong content")
	}
	spans := int64(last - first + 1)
	wantReads := (spans + maxRunSpans - 1) / maxRunSpans
	if st := r.Stats(); st.SpansDecoded != spans || st.BlobReads != wantReads {
		t.Fatalf("read over %d spans: %+v, want %d decoded in %d fetches", spans, st, spans, wantReads)
	}
}

// TestConcurrentReadersDecodeOnce: readers waiting for the same span share
// one fetch and one decode.
func TestConcurrentReadersDecodeOnce(t *testing.T) {
	blob, ix, want := gzipLayer(t, 13, 6, 64<<10)
	e, _ := smallFileInOneSpan(t, ix)
	slow := &memBlob{data: blob.data, corrupt: func(int64, []byte, int64) { time.Sleep(100 * time.Millisecond) }}
	r := ix.NewReader(slow, newCache(64<<20), ReaderOptions{})
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Go(func() {
			p := make([]byte, e.Size)
			if _, err := r.ReadAt(context.Background(), e, p, 0); err != nil {
				errs <- err
			} else if !bytes.Equal(p, want[e.Name]) {
				errs <- errors.New("wrong content")
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if st := r.Stats(); st.SpansDecoded != 1 || slow.reads.Load() != 1 {
		t.Fatalf("16 concurrent readers: %+v, %d blob reads; want 1 decode, 1 read", st, slow.reads.Load())
	}
}

// TestCorruptSpanIsAnError: a flipped byte in the fetched span is an error
// after one retry, never data.
func TestCorruptSpanIsAnError(t *testing.T) {
	blob, ix, _ := gzipLayer(t, 14, 6, 64<<10)
	e, s := smallFileInOneSpan(t, ix)
	bad := &memBlob{data: blob.data, corrupt: func(_ int64, p []byte, off int64) {
		if i := s.COff + s.CLen/2 - off; i >= 0 && i < int64(len(p)) {
			p[i] ^= 0x40
		}
	}}
	r := ix.NewReader(bad, newCache(defaultTestCache), ReaderOptions{})
	n, err := r.ReadAt(context.Background(), e, make([]byte, e.Size), 0)
	if !errors.Is(err, ErrCorrupt) || n != 0 {
		t.Fatalf("ReadAt of a corrupted span = %d, %v; want 0, ErrCorrupt", n, err)
	}
	if st := r.Stats(); st.Retries != 1 || bad.reads.Load() != 2 || st.SpansDecoded != 0 {
		t.Fatalf("corrupt span: %+v, %d blob reads; want 1 retry, 2 reads", st, bad.reads.Load())
	}
}

// TestCorruptOnceIsRetried: one bad fetch followed by a good one serves
// the right bytes.
func TestCorruptOnceIsRetried(t *testing.T) {
	blob, ix, want := gzipLayer(t, 15, 6, 64<<10)
	e, _ := smallFileInOneSpan(t, ix)
	flaky := &memBlob{data: blob.data, corrupt: func(call int64, p []byte, _ int64) {
		if call == 1 {
			p[len(p)/3] ^= 1
		}
	}}
	r := ix.NewReader(flaky, newCache(defaultTestCache), ReaderOptions{})
	p := make([]byte, e.Size)
	if _, err := r.ReadAt(context.Background(), e, p, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(p, want[e.Name]) || r.Stats().Retries != 1 {
		t.Fatalf("content ok %v, stats %+v", bytes.Equal(p, want[e.Name]), r.Stats())
	}
}

// TestTruncatedBlobAtReadTime: a blob shorter than the index says is an
// error, for gzip and tar.
func TestTruncatedBlobAtReadTime(t *testing.T) {
	blob, ix, _ := gzipLayer(t, 16, 6, 64<<10)
	short := newMemBlob(blob.data[:len(blob.data)/2])
	r := ix.NewReader(short, newCache(defaultTestCache), ReaderOptions{})
	var failed bool
	for _, e := range regularEntries(ix) {
		if e.Offset > ix.UncompressedSize()*3/4 && e.Size > 0 {
			_, err := r.ReadAt(context.Background(), e, make([]byte, e.Size), 0)
			if err == nil || errors.Is(err, io.EOF) {
				t.Fatalf("read from a truncated blob: %v", err)
			}
			failed = true
			break
		}
	}
	if !failed {
		t.Fatal("no file in the last quarter")
	}

	rng := rand.New(rand.NewSource(16))
	tarData, _ := randomLayer(rng, 30, 100<<10)
	tix, err := Build(context.Background(), buildOpts(tarData, manifest.FormatTar, 0))
	if err != nil {
		t.Fatal(err)
	}
	tr := tix.NewReader(newMemBlob(tarData[:len(tarData)/2]), newCache(defaultTestCache), ReaderOptions{})
	regs := regularEntries(tix)
	e := regs[len(regs)-1]
	for _, c := range regs {
		if c.Size > 0 && c.Offset > int64(len(tarData)/2) {
			e = c
		}
	}
	if _, err := tr.ReadAt(context.Background(), e, make([]byte, e.Size), 0); err == nil || errors.Is(err, io.EOF) {
		t.Fatalf("read past a truncated tar blob: %v", err)
	}
}

// TestTarReadsGoStraightToTheBlob: uncompressed layers read exactly the
// requested bytes, and the index says they are not verified.
// Uncompressed layers are read in raw spans of at most rawSpanSize, cached
// like decoded spans: one request per span however many reads it serves.
func TestTarReadsFetchOneRawSpan(t *testing.T) {
	rng := rand.New(rand.NewSource(17))
	tarData, _ := randomLayer(rng, 60, 200<<10)
	want := extract(t, tarData)
	opts := buildOpts(tarData, manifest.FormatTar, 0)
	ix, err := Build(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if ix.Verified() {
		t.Fatal("uncompressed tar index claims to be verified")
	}
	for _, s := range ix.Spans {
		if s.Kind != SpanRaw || s.ULen > rawSpanSize {
			t.Fatalf("span %+v: want raw spans of at most %d bytes", s, rawSpanSize)
		}
	}
	blob := newMemBlob(tarData)
	r := ix.NewReader(blob, newCache(64<<20), ReaderOptions{Readahead: -1})
	for _, e := range regularEntries(ix) {
		if e.Size < 100 {
			continue
		}
		blob.resetCounts()
		p := make([]byte, 50)
		if _, err := r.ReadAt(context.Background(), e, p, 10); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(p, want[e.Name][10:60]) {
			t.Fatalf("%q: wrong content", e.Name)
		}
		if n := blob.reads.Load(); n > 1 || blob.bytes.Load() > 2*rawSpanSize {
			t.Fatalf("%q: %d reads of %d bytes, want at most one span", e.Name, n, blob.bytes.Load())
		}
		blob.resetCounts()
		if _, err := r.ReadAt(context.Background(), e, p, 10); err != nil || blob.reads.Load() != 0 {
			t.Fatalf("%q: second read of a cached span went to the blob (%d reads, err %v)", e.Name, blob.reads.Load(), err)
		}
	}
}

// A raw span larger than a span may be (an index file of an old version
// described a whole layer as one) is refused, not read whole.
func TestOversizedRawSpanIsRefused(t *testing.T) {
	rng := rand.New(rand.NewSource(18))
	tarData, _ := randomLayer(rng, 20, 64<<10)
	ix, err := Build(context.Background(), buildOpts(tarData, manifest.FormatTar, 0))
	if err != nil {
		t.Fatal(err)
	}
	ix.blobSize = maxSpanBytes + 1
	ix.usize = ix.blobSize
	ix.Spans = []Span{{UOff: 0, ULen: ix.usize, COff: 0, CLen: ix.usize, Kind: SpanRaw, Window: -1}}
	if err := ix.validate(); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("validate: %v, want ErrUnsupported", err)
	}
}

func TestReadAtArguments(t *testing.T) {
	_, ix, _ := gzipLayer(t, 18, 1, 64<<10)
	r := ix.NewReader(newMemBlob(nil), newCache(defaultTestCache), ReaderOptions{})
	e, _ := smallFileInOneSpan(t, ix)
	if _, err := r.ReadAt(context.Background(), e, make([]byte, 1), -1); err == nil {
		t.Fatal("negative offset accepted")
	}
	if n, err := r.ReadAt(context.Background(), e, make([]byte, 1), e.Size); n != 0 || err != io.EOF {
		t.Fatalf("read at the end = %d, %v; want 0, EOF", n, err)
	}
	for i := range ix.Entries {
		if ix.Entries[i].Type == TypeDir {
			if _, err := r.ReadAt(context.Background(), &ix.Entries[i], make([]byte, 1), 0); err == nil {
				t.Fatal("read of a directory accepted")
			}
			break
		}
	}
}

func TestMemoryCacheEvictsLeastRecentlyUsed(t *testing.T) {
	c := newCache(10)
	c.Put("a", make([]byte, 4))
	c.Put("b", make([]byte, 4))
	c.Get("a")
	c.Put("c", make([]byte, 4)) // evicts b
	c.Put("huge", make([]byte, 11))
	for key, want := range map[string]bool{"a": true, "b": false, "c": true, "huge": false} {
		if _, ok := c.Get(key); ok != want {
			t.Errorf("Get(%q) present %v, want %v", key, ok, want)
		}
	}
	c.Put("a", make([]byte, 8)) // grows a, evicts c
	if _, ok := c.Get("c"); ok {
		t.Error("c survived a resize past the limit")
	}
}
