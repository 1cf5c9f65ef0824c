package index

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"
)

// stallBlob blocks every ReadAt until release is closed or the read's
// context ends, and reports the context's end on ended.
type stallBlob struct {
	*memBlob
	started chan struct{} // one value per ReadAt that began
	release chan struct{}
	ended   chan error // the ctx error of each ReadAt that gave up
}

func newStallBlob(data []byte) *stallBlob {
	return &stallBlob{memBlob: newMemBlob(data), started: make(chan struct{}, 16), release: make(chan struct{}), ended: make(chan error, 16)}
}

func (b *stallBlob) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	b.started <- struct{}{}
	select {
	case <-b.release:
		return b.memBlob.ReadAt(ctx, p, off)
	case <-ctx.Done():
		b.ended <- ctx.Err()
		return 0, ctx.Err()
	}
}

func waitFor[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		var zero T
		return zero
	}
}

// An interrupted read cancels the fetch nobody else waits for: the blob
// read sees its context end.
func TestInterruptedReadCancelsItsFetch(t *testing.T) {
	blob, ix, _ := gzipLayer(t, 18, 1, 64<<10)
	e, _ := smallFileInOneSpan(t, ix)
	sb := newStallBlob(blob.data)
	r := ix.NewReader(sb, newCache(defaultTestCache), ReaderOptions{Readahead: -1})
	defer r.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := r.ReadAt(ctx, e, make([]byte, e.Size), 0)
		done <- err
	}()
	waitFor(t, sb.started, "the fetch")
	cancel()
	if err := waitFor(t, done, "the read"); !errors.Is(err, context.Canceled) {
		t.Fatalf("read: %v, want context.Canceled", err)
	}
	if err := waitFor(t, sb.ended, "the fetch to be cancelled"); !errors.Is(err, context.Canceled) {
		t.Fatalf("fetch ended with %v", err)
	}
	if st := r.Stats(); st.SpansDecoded != 0 || st.Lookups != 0 {
		t.Fatalf("stats %+v after an interrupted read", st)
	}
}

// A read that gives up does not fail another read waiting on the same
// fetch: the fetch goes on and the other read gets its bytes.
func TestInterruptedReadKeepsASharedFetch(t *testing.T) {
	blob, ix, want := gzipLayer(t, 18, 1, 64<<10)
	e, _ := smallFileInOneSpan(t, ix)
	sb := newStallBlob(blob.data)
	r := ix.NewReader(sb, newCache(defaultTestCache), ReaderOptions{Readahead: -1})
	defer r.Close()
	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() {
		_, err := r.ReadAt(ctx, e, make([]byte, e.Size), 0)
		first <- err
	}()
	waitFor(t, sb.started, "the fetch")
	second := make(chan []byte, 1)
	go func() {
		p := make([]byte, e.Size)
		if _, err := r.ReadAt(context.Background(), e, p, 0); err != nil {
			t.Error(err)
		}
		second <- p
	}()
	// The second read has joined once the flight has two waiters.
	deadline := time.Now().Add(10 * time.Second)
	for {
		r.flights.mu.Lock()
		n := 0
		for _, f := range r.flights.m {
			n = f.waiters
		}
		r.flights.mu.Unlock()
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("second read never joined the fetch")
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := waitFor(t, first, "the first read"); !errors.Is(err, context.Canceled) {
		t.Fatalf("first read: %v", err)
	}
	select {
	case err := <-sb.ended:
		t.Fatalf("the shared fetch was cancelled (%v)", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(sb.release)
	if got := waitFor(t, second, "the second read"); !bytes.Equal(got, want[e.Name]) {
		t.Fatal("second read: wrong bytes")
	}
	if st := r.Stats(); st.SpansDecoded != 1 || st.Shared != 1 || st.Hits+st.SpansDecoded != st.Lookups {
		t.Fatalf("stats %+v", st)
	}
}

// stallAfter stalls reads at or past a blob offset until their context
// ends; reads before it are served at once.
type stallAfter struct {
	*memBlob
	from    int64
	started chan struct{}
	ended   chan error
}

func (b *stallAfter) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	if off < b.from {
		return b.memBlob.ReadAt(ctx, p, off)
	}
	b.started <- struct{}{}
	<-ctx.Done()
	b.ended <- ctx.Err()
	return 0, ctx.Err()
}

// Closing the Reader ends its background fetches.
func TestCloseEndsReadahead(t *testing.T) {
	blob, ix, e, _ := bigGzipFile(t, 4)
	first := spanAt(ix.Spans, e.Offset)
	sb := &stallAfter{memBlob: blob, from: ix.Spans[first+1].COff, started: make(chan struct{}, 64), ended: make(chan error, 64)}
	r := ix.NewReader(sb, newCache(defaultTestCache), ReaderOptions{Readahead: 2})
	// Two sequential reads inside the first span: the second starts
	// readahead of the next spans, which stalls.
	p := make([]byte, 10)
	for _, off := range []int64{0, 10} {
		if _, err := r.ReadAt(context.Background(), e, p, off); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, sb.started, "a readahead fetch")
	closed := make(chan struct{})
	go func() { r.Close(); close(closed) }()
	if err := waitFor(t, sb.ended, "the readahead to be cancelled"); !errors.Is(err, context.Canceled) {
		t.Fatalf("readahead ended with %v", err)
	}
	waitFor(t, closed, "Close")
}

// A fetch's result keeps its DecodeLimit share until the read using it is
// done: with room for one span, a second read of another span waits until
// the first has copied what it needs.
func TestDecodeLimitHoldsUntilUsed(t *testing.T) {
	blob, ix, _ := gzipLayer(t, 18, 1, 64<<10)
	big := int64(0)
	for i := range ix.Spans {
		big = max(big, ix.Spans[i].ULen+ix.Spans[i].CLen+inflatePad)
	}
	r := ix.NewReader(blob, newCache(defaultTestCache), ReaderOptions{Readahead: -1, Decode: NewDecodeLimit(big)})
	defer r.Close()
	using := make(chan struct{})
	finish := make(chan struct{})
	go r.load(context.Background(), 1, 1, 1, false, func([][]byte) {
		close(using)
		<-finish
	})
	waitFor(t, using, "the first read to hold its span")
	second := make(chan error, 1)
	go func() { second <- r.load(context.Background(), 3, 3, 1, false, func([][]byte) {}) }()
	select {
	case err := <-second:
		t.Fatalf("a second span was decoded while the first was still held (%v)", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(finish)
	if err := waitFor(t, second, "the second read"); err != nil {
		t.Fatal(err)
	}
}
