package index

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imgfs/imgfs/manifest"
)

// hookBlob is a Blob whose ReadAt can be delayed or failed per call, and
// which records what it was asked and how many calls overlapped.
type hookBlob struct {
	data []byte
	hook func(off int64) error // may block; an error fails the call

	mu      sync.Mutex
	offsets []int64
	active  atomic.Int64
	peak    atomic.Int64
}

func (b *hookBlob) Size() int64 { return int64(len(b.data)) }

func (b *hookBlob) ReadAt(_ context.Context, p []byte, off int64) (int, error) {
	n := b.active.Add(1)
	defer b.active.Add(-1)
	for {
		old := b.peak.Load()
		if n <= old || b.peak.CompareAndSwap(old, n) {
			break
		}
	}
	b.mu.Lock()
	b.offsets = append(b.offsets, off)
	b.mu.Unlock()
	if b.hook != nil {
		if err := b.hook(off); err != nil {
			return 0, err
		}
	}
	return copy(p, b.data[off:]), nil
}

func (b *hookBlob) callsAt(off int64) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, o := range b.offsets {
		if o == off {
			n++
		}
	}
	return n
}

// bigGzipFile returns a gzip layer with small spans and a file covering at
// least minSpans of them.
func bigGzipFile(t *testing.T, minSpans int) (*memBlob, *Index, *Entry, []byte) {
	t.Helper()
	rng := rand.New(rand.NewSource(30))
	files := []tarFile{
		{hdr: tarHeader("small", 100), content: randomContent(rng, 100)},
		{hdr: tarHeader("big", 1<<20), content: randomContent(rng, 1<<20)},
		{hdr: tarHeader("after", 300<<10), content: randomContent(rng, 300<<10)},
	}
	tarData := writeTar(t, files)
	opts := buildOpts(gzipBytes(tarData, 6), manifest.FormatGzip, 32<<10)
	ix, err := Build(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	blob, want := opts.Blob.(*memBlob), extract(t, tarData)
	for _, e := range regularEntries(ix) {
		if e.Size > 0 && spanAt(ix.Spans, e.Offset+e.Size-1)-spanAt(ix.Spans, e.Offset)+1 >= minSpans {
			return blob, ix, e, want[e.Name]
		}
	}
	t.Fatalf("no file covering %d spans", minSpans)
	return nil, nil, nil, nil
}

// readSequentially reads e in pieces of n bytes, in order.
func readSequentially(t *testing.T, r *Reader, e *Entry, n int) []byte {
	t.Helper()
	var out []byte
	for off := int64(0); off < e.Size; off += int64(n) {
		p := make([]byte, min(int64(n), e.Size-off))
		if _, err := r.ReadAt(context.Background(), e, p, off); err != nil {
			t.Fatalf("read %q at %d: %v", e.Name, off, err)
		}
		out = append(out, p...)
	}
	return out
}

// TestSequentialReadahead: a sequential read of a multi-span file reads
// ahead, returns the same bytes, and decodes every span exactly once.
func TestSequentialReadahead(t *testing.T) {
	blob, ix, e, want := bigGzipFile(t, 8)
	first, last := spanAt(ix.Spans, e.Offset), spanAt(ix.Spans, e.Offset+e.Size-1)
	r := ix.NewReader(blob, newCache(64<<20), ReaderOptions{Readahead: 3, ReadaheadWorkers: 2})
	got := readSequentially(t, r, e, 4<<10)
	r.ra.wg.Wait()
	if !bytes.Equal(got, want) {
		t.Fatal("sequential read with readahead returned wrong bytes")
	}
	st := r.Stats()
	if st.ReadaheadStarted == 0 || st.ReadaheadErrors != 0 {
		t.Fatalf("no readahead: %+v", st)
	}
	if spans := int64(last - first + 1); st.SpansDecoded != spans {
		t.Fatalf("%d spans decoded for a file of %d spans: %+v", st.SpansDecoded, spans, st)
	}

	off := ix.NewReader(blob, newCache(defaultTestCache), ReaderOptions{Readahead: -1})
	readSequentially(t, off, e, 4<<10)
	if st := off.Stats(); st.ReadaheadStarted != 0 {
		t.Fatalf("readahead off: %+v", st)
	}
	// Random reads do not read ahead.
	rr := ix.NewReader(blob, newCache(defaultTestCache), ReaderOptions{})
	for _, o := range []int64{e.Size / 2, 0, e.Size / 3, e.Size - 1} {
		rr.ReadAt(context.Background(), e, make([]byte, 1), o)
	}
	if st := rr.Stats(); st.ReadaheadStarted != 0 {
		t.Fatalf("random reads read ahead: %+v", st)
	}
}

// TestReadaheadBounds: background fetches never exceed the worker bound
// nor leave the file being read.
func TestReadaheadBounds(t *testing.T) {
	mb, ix, e, want := bigGzipFile(t, 10)
	first, last := spanAt(ix.Spans, e.Offset), spanAt(ix.Spans, e.Offset+e.Size-1)
	blob := &hookBlob{data: mb.data, hook: func(int64) error { time.Sleep(5 * time.Millisecond); return nil }}
	const workers = 2
	r := ix.NewReader(blob, newCache(defaultTestCache), ReaderOptions{Readahead: 8, ReadaheadWorkers: workers})
	if got := readSequentially(t, r, e, 2<<10); !bytes.Equal(got, want) {
		t.Fatal("wrong bytes")
	}
	r.ra.wg.Wait()
	if p := blob.peak.Load(); p > 1+workers {
		t.Fatalf("%d blob reads at once; one read plus %d workers allowed", p, workers)
	}
	for _, off := range blob.offsets {
		if off < ix.Spans[first].COff || off > ix.Spans[last].COff {
			t.Fatalf("fetch at blob offset %d, outside the file's spans (%d-%d)", off, ix.Spans[first].COff, ix.Spans[last].COff)
		}
	}
	if st := r.Stats(); st.ReadaheadStarted == 0 || st.ReadaheadStarted > int64(last-first) {
		t.Fatalf("readahead stats %+v for %d spans", st, last-first+1)
	}
}

// TestReadaheadErrorsStayInBackground: a failed or corrupt background
// fetch is not reported to any read, is not cached, and the read that
// needs the span fetches it itself.
func TestReadaheadErrorsStayInBackground(t *testing.T) {
	mb, ix, e, want := bigGzipFile(t, 6)
	first := spanAt(ix.Spans, e.Offset)
	target := &ix.Spans[first+1] // read ahead after the first two reads of span `first`
	for _, mode := range []string{"error", "corrupt"} {
		t.Run(mode, func(t *testing.T) {
			var calls atomic.Int64
			blob := &hookBlob{data: bytes.Clone(mb.data)}
			blob.hook = func(off int64) error {
				if off == target.COff && calls.Add(1) <= 1 && mode == "error" { // a fetch error is not retried
					return errors.New("injected network error")
				}
				return nil
			}
			cblob := &memBlob{data: mb.data, corrupt: func(_ int64, p []byte, off int64) {
				if off == target.COff && calls.Add(1) <= 2 { // a mismatch is refetched once
					p[len(p)/2] ^= 0x08
				}
			}}
			var b Blob = blob
			if mode == "corrupt" {
				b = cblob
			}
			r := ix.NewReader(b, newCache(64<<20), ReaderOptions{Readahead: 2, ReadaheadWorkers: 2})
			piece := int64(1 << 10)
			for off := int64(0); off < 2*piece; off += piece {
				if _, err := r.ReadAt(context.Background(), e, make([]byte, piece), off); err != nil {
					t.Fatal(err)
				}
			}
			r.ra.wg.Wait()
			if st := r.Stats(); st.ReadaheadErrors == 0 {
				t.Fatalf("injected failure not hit by readahead: %+v", st)
			}
			if _, ok := r.cache.Get(r.key(first + 1)); ok {
				t.Fatal("failed readahead left the span in the cache")
			}
			if got := readSequentially(t, r, e, int(piece)); !bytes.Equal(got, want) {
				t.Fatal("wrong bytes after a failed readahead")
			}
		})
	}
}

// TestReadJoinsReadaheadInFlight: a read needing a span being read ahead
// waits for it rather than fetching it again, and when that background
// fetch fails, the read fetches the span itself instead of failing.
func TestReadJoinsReadaheadInFlight(t *testing.T) {
	mb, ix, e, want := bigGzipFile(t, 6)
	first := spanAt(ix.Spans, e.Offset)
	target := &ix.Spans[first+1]
	for _, fail := range []bool{false, true} {
		t.Run(fmt.Sprint("fail=", fail), func(t *testing.T) {
			started, release := make(chan struct{}), make(chan struct{})
			var once sync.Once
			blob := &hookBlob{data: mb.data}
			blob.hook = func(off int64) error {
				if off != target.COff {
					return nil
				}
				first := false
				once.Do(func() { first = true })
				if !first {
					return nil
				}
				close(started)
				<-release
				if fail {
					return errors.New("injected failure")
				}
				return nil
			}
			r := ix.NewReader(blob, newCache(defaultTestCache), ReaderOptions{Readahead: 1, ReadaheadWorkers: 1})
			piece := int64(512)
			for off := int64(0); off < 2*piece; off += piece {
				if _, err := r.ReadAt(context.Background(), e, make([]byte, piece), off); err != nil {
					t.Fatal(err)
				}
			}
			<-started // the readahead of target is blocked in the blob
			rel := target.UOff - e.Offset
			done := make(chan error, 1)
			p := make([]byte, 100)
			go func() { _, err := r.ReadAt(context.Background(), e, p, rel); done <- err }()
			time.Sleep(50 * time.Millisecond) // let the read join the flight
			close(release)
			if err := <-done; err != nil {
				t.Fatalf("read of a span being read ahead: %v", err)
			}
			r.ra.wg.Wait()
			if !bytes.Equal(p, want[rel:rel+100]) {
				t.Fatal("wrong bytes")
			}
			wantCalls := 1
			if fail {
				wantCalls = 2
			}
			if n := blob.callsAt(target.COff); n != wantCalls {
				t.Fatalf("span fetched %d times, want %d", n, wantCalls)
			}
		})
	}
}
