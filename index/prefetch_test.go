package index

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"math/rand"
	"strconv"
	"testing"

	"github.com/imgfs/imgfs/manifest"
)

// prefetchTar writes a tar of directories and files of a few chunks each;
// names starting with "p" are the ones a test prioritizes.
func prefetchTar(t *testing.T) (tarData []byte, contents map[string][]byte) {
	t.Helper()
	rng := rand.New(rand.NewSource(21))
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	contents = map[string][]byte{}
	for _, d := range []string{"bin/", "etc/", "lib/"} {
		if err := tw.WriteHeader(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: 0o755}); err != nil {
			t.Fatal(err)
		}
	}
	for i, name := range []string{"bin/a", "bin/p1", "etc/b", "etc/p2", "lib/c", "lib/p3", "lib/d", "bin/e"} {
		data := randomContent(rng, 20<<10+i*37<<10) // 20 KiB to ~280 KiB: one to five 64 KiB chunks
		contents[name] = data
		if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(data))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), contents
}

var prioritizedFiles = []string{"lib/p3", "bin/p1", "etc/p2"}

func entryNamed(t *testing.T, ix *Index, name string) *Entry {
	t.Helper()
	for _, e := range regularEntries(ix) {
		if e.Name == name {
			return e
		}
	}
	t.Fatalf("no entry %q", name)
	return nil
}

// prefetchSpans returns the spans holding the prioritized files.
func prefetchSpans(t *testing.T, ix *Index) []Span {
	t.Helper()
	var out []Span
	for _, name := range prioritizedFiles {
		out = append(out, chunkSpans(ix, entryNamed(t, ix, name))...)
	}
	return out
}

// TestPrefetchLandmark: the landmark is recorded at build time (and kept
// by the index store), Prefetch fetches exactly the prioritized chunks in
// one request, and prioritized files are then read without the blob.
func TestPrefetchLandmark(t *testing.T) {
	tarData, contents := prefetchTar(t)
	l := estargzBuild(t, tarData, 64<<10, prioritizedFiles, false)
	opts := l.opts()
	opts.CacheDir = t.TempDir()
	if _, err := Open(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	ix, err := Open(context.Background(), opts) // from the stored index
	if err != nil {
		t.Fatal(err)
	}
	for i := range ix.Entries {
		if n := ix.Entries[i].Name; n == estargzPrefetchLandmark || n == estargzNoPrefetchLandmark {
			t.Fatalf("landmark %q is visible", n)
		}
	}

	spans := prefetchSpans(t, ix)
	var wantEnd, wantBytes int64
	for _, name := range prioritizedFiles {
		wantEnd += int64(len(contents[name]))
	}
	for i, s := range spans {
		if s != ix.Spans[i] {
			t.Fatalf("prioritized chunk %d is span %+v, want span %d %+v: not first in the stream", i, s, i, ix.Spans[i])
		}
		wantBytes += s.CLen
	}
	if got := ix.Meta[metaPrefetchEnd]; got != strconv.FormatInt(wantEnd, 10) {
		t.Fatalf("meta %s = %q, want %d (the prioritized files' bytes)", metaPrefetchEnd, got, wantEnd)
	}

	blob := newMemBlob(l.blob)
	r := ix.NewReader(blob, newCache(defaultTestCache), ReaderOptions{Readahead: -1})
	if err := r.Prefetch(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := r.Stats(); blob.reads.Load() != 1 || blob.bytes.Load() != wantBytes || st.SpansDecoded != int64(len(spans)) {
		t.Fatalf("Prefetch: %d reads of %d bytes, %d spans decoded; want 1 read of the %d bytes of %d prioritized chunks",
			blob.reads.Load(), blob.bytes.Load(), st.SpansDecoded, wantBytes, len(spans))
	}
	blob.resetCounts()
	for _, name := range prioritizedFiles {
		e := entryNamed(t, ix, name)
		checkRead(t, r, e, contents[name], make([]byte, e.Size), 0)
	}
	if blob.reads.Load() != 0 {
		t.Fatalf("reading prioritized files after Prefetch: %d blob reads", blob.reads.Load())
	}
	e := entryNamed(t, ix, "lib/d")
	checkRead(t, r, e, contents["lib/d"], make([]byte, e.Size), 0)
	if blob.reads.Load() == 0 {
		t.Fatal("a file that is not prioritized was prefetched")
	}

	// A second Prefetch finds everything cached.
	blob.resetCounts()
	if err := r.Prefetch(context.Background()); err != nil || blob.reads.Load() != 0 {
		t.Fatalf("second Prefetch: %v, %d reads", err, blob.reads.Load())
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r2 := ix.NewReader(newMemBlob(l.blob), newCache(defaultTestCache), ReaderOptions{})
	if err := r2.Prefetch(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Prefetch with a cancelled context: %v", err)
	}
}

// TestPrefetchJoinsCachedGaps: spans already cached split a run, and
// are not fetched again.
func TestPrefetchJoinsCachedGaps(t *testing.T) {
	tarData, contents := prefetchTar(t)
	l := estargzBuild(t, tarData, 64<<10, prioritizedFiles, false)
	ix, err := Build(context.Background(), l.opts())
	if err != nil {
		t.Fatal(err)
	}
	// Read the middle prioritized file first: Prefetch then fetches the
	// runs before and after it, and nothing twice.
	blob := newMemBlob(l.blob)
	r := ix.NewReader(blob, newCache(defaultTestCache), ReaderOptions{Readahead: -1})
	mid := entryNamed(t, ix, prioritizedFiles[1])
	checkRead(t, r, mid, contents[mid.Name], make([]byte, mid.Size), 0)
	blob.resetCounts()
	if err := r.Prefetch(context.Background()); err != nil {
		t.Fatal(err)
	}
	var want int64
	for _, name := range []string{prioritizedFiles[0], prioritizedFiles[2]} {
		for _, s := range chunkSpans(ix, entryNamed(t, ix, name)) {
			want += s.CLen
		}
	}
	if blob.reads.Load() != 2 || blob.bytes.Load() != want {
		t.Fatalf("Prefetch around a cached file: %d reads of %d bytes, want 2 of %d", blob.reads.Load(), blob.bytes.Load(), want)
	}
}

// TestPrefetchWithoutLandmark: nothing is recorded nor fetched for layers
// without a landmark, with a .no.prefetch.landmark, or of other formats.
func TestPrefetchWithoutLandmark(t *testing.T) {
	tarData, _ := prefetchTar(t)
	layers := map[string]tocLayer{
		"estargz writer (no landmark)":     estargzWrite(t, tarData, 64<<10, 0, false),
		"estargz.Build (no.prefetch)":      estargzBuild(t, tarData, 64<<10, nil, false),
		"zstd:chunked with prioritization": estargzBuild(t, tarData, 64<<10, prioritizedFiles, true),
	}
	for name, l := range layers {
		ix, err := Build(context.Background(), l.opts())
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if v, ok := ix.Meta[metaPrefetchEnd]; ok {
			t.Fatalf("%s: meta %s = %q", name, metaPrefetchEnd, v)
		}
		blob := newMemBlob(l.blob)
		r := ix.NewReader(blob, newCache(defaultTestCache), ReaderOptions{})
		if err := r.Prefetch(context.Background()); err != nil || blob.reads.Load() != 0 {
			t.Fatalf("%s: Prefetch: %v, %d blob reads", name, err, blob.reads.Load())
		}
	}
	// The same eStargz blob indexed as plain gzip (its annotation lost).
	prioritized := estargzBuild(t, tarData, 64<<10, prioritizedFiles, false).blob
	ix, err := Build(context.Background(), buildOpts(prioritized, manifest.FormatGzip, 0))
	if err != nil {
		t.Fatal(err)
	}
	blob := newMemBlob(prioritized)
	if err := ix.NewReader(blob, newCache(defaultTestCache), ReaderOptions{}).Prefetch(context.Background()); err != nil || blob.reads.Load() != 0 || ix.Meta[metaPrefetchEnd] != "" {
		t.Fatalf("gzip view: Prefetch: %v, %d blob reads, meta %v", err, blob.reads.Load(), ix.Meta)
	}
}

// TestPrefetchCorruptChunk: a damaged prioritized chunk makes Prefetch fail
// with ErrCorrupt, and no damaged data reaches the cache: a reader sharing
// it later serves every prioritized file intact.
func TestPrefetchCorruptChunk(t *testing.T) {
	tarData, contents := prefetchTar(t)
	l := estargzBuild(t, tarData, 64<<10, prioritizedFiles, false)
	ix, err := Build(context.Background(), l.opts())
	if err != nil {
		t.Fatal(err)
	}
	s := chunkSpans(ix, entryNamed(t, ix, prioritizedFiles[1]))[0]
	bad := &memBlob{data: l.blob, corrupt: func(_ int64, p []byte, off int64) {
		if i := s.COff + s.CLen/2 - off; i >= 0 && i < int64(len(p)) {
			p[i] ^= 0x01
		}
	}}
	cache := newCache(64 << 20)
	r := ix.NewReader(bad, cache, ReaderOptions{Readahead: -1})
	if err := r.Prefetch(context.Background()); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Prefetch over a damaged chunk: %v", err)
	}
	if st := r.Stats(); st.Retries != 1 {
		t.Fatalf("damaged chunk: %+v, want one retry", st)
	}
	for i := range prefetchSpans(t, ix) {
		if _, ok := cache.Get(r.key(i)); ok {
			t.Fatalf("span %d cached from a run with a damaged chunk", i)
		}
	}
	good := newMemBlob(l.blob)
	r2 := ix.NewReader(good, cache, ReaderOptions{Readahead: -1})
	for _, name := range prioritizedFiles {
		e := entryNamed(t, ix, name)
		checkRead(t, r2, e, contents[name], make([]byte, e.Size), 0)
	}
}
