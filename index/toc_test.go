package index

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/imgfs/imgfs/manifest"
	digest "github.com/opencontainers/go-digest"
)

// tocVariants encodes a tar every way the TOC builders must handle, with
// real writers of the formats.
func tocVariants(t *testing.T, tarData []byte, prioritized []string) []tocLayer {
	named := func(name string, l tocLayer) tocLayer { l.name = name; return l }
	return []tocLayer{
		named("estargz-writer", estargzWrite(t, tarData, 32<<10, 0, false)),
		named("estargz-shared-members", estargzWrite(t, tarData, 32<<10, 16<<10, false)),
		named("estargz-build", estargzBuild(t, tarData, 64<<10, nil, false)),
		named("estargz-build-prioritized", estargzBuild(t, tarData, 64<<10, prioritized, false)),
		named("zstdchunked-writer", estargzWrite(t, tarData, 32<<10, 0, true)),
		named("zstdchunked-shared-frames", estargzWrite(t, tarData, 32<<10, 16<<10, true)),
		named("zstdchunked-build", estargzBuild(t, tarData, 64<<10, nil, true)),
	}
}

// tocModTime is what a TOC keeps of a tar mtime: the eStargz writer rounds
// to the second and writes nothing for the epoch.
func tocModTime(t time.Time) time.Time {
	if t.Unix() == 0 {
		return time.Unix(0, 0)
	}
	return t.Round(time.Second)
}

// TestTOCLayers: for random layers written by the eStargz and zstd:chunked
// writers, entries match the tar (in order, when the writer keeps it),
// format artefacts are hidden, and random reads, reads across chunk
// boundaries and whole files equal a full sequential extraction.
func TestTOCLayers(t *testing.T) {
	for seed := int64(1); seed <= 2; seed++ {
		rng := rand.New(rand.NewSource(seed))
		tarData, files := randomLayer(rng, 80, 300<<10)
		want := extract(t, tarData)
		var prioritized []string
		for _, f := range files[len(files)/2:] {
			if f.hdr.Typeflag == '0' && !strings.Contains(f.hdr.Name, ".wh.") && len(prioritized) < 5 {
				prioritized = append(prioritized, f.hdr.Name)
			}
		}
		for _, l := range tocVariants(t, tarData, prioritized) {
			t.Run(fmt.Sprintf("%d/%s", seed, l.name), func(t *testing.T) {
				opts := l.opts()
				ix, err := Build(context.Background(), opts)
				if err != nil {
					t.Fatalf("Build: %v", err)
				}
				if ix.Format != l.format || !ix.Verified() || ix.Meta[metaTOCPinned] != "true" {
					t.Fatalf("format %s verified %v meta %v", ix.Format, ix.Verified(), ix.Meta)
				}
				if l.ordered {
					checkEntriesWith(t, ix, files, tocModTime)
				} else {
					checkSameNames(t, ix, files)
				}
				for _, e := range ix.Entries {
					if isTOCArtefact(&e) {
						t.Fatalf("artefact %q not hidden", e.Name)
					}
				}
				var chunks int
				for _, s := range ix.Spans {
					if s.Kind != SpanGzipMember && s.Kind != SpanZstdFrame || s.Check != CheckDecoded {
						t.Fatalf("span %+v: want a checked chunk", s)
					}
					if s.Skip > 0 {
						chunks++
					}
				}
				if strings.Contains(l.name, "shared") && chunks == 0 {
					t.Fatal("no chunk shares a member: the innerOffset path is untested")
				}
				r := ix.NewReader(opts.Blob, newCache(256<<10), ReaderOptions{})
				checkRandomReads(t, rng, ix, r, want, 200)
				checkBoundaryReads(t, ix, r, want)
				checkWholeFiles(t, ix, r, want)
				again, err := decodeIndex(encodeIndex(ix))
				if err != nil {
					t.Fatalf("index does not round-trip: %v", err)
				}
				sameIndex(t, ix, again)
			})
		}
	}
}

// checkSameNames compares the entries with the tar's, ignoring order.
func checkSameNames(t *testing.T, ix *Index, files []tarFile) {
	t.Helper()
	var got, want []string
	for _, e := range ix.Entries {
		got = append(got, fmt.Sprintf("%d %s", e.Type, e.Name))
	}
	for _, f := range files {
		name, _ := CleanPath(f.hdr.Name)
		typ := map[byte]EntryType{'0': TypeReg, '5': TypeDir, '2': TypeSymlink, '1': TypeHardlink, '3': TypeChar, '6': TypeFifo}[f.hdr.Typeflag]
		if kind, target, ok := whiteout(name); kind != 0 && ok {
			typ, name = kind, target
		}
		want = append(want, fmt.Sprintf("%d %s", typ, name))
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("entries differ:\n%v\n%v", got, want)
	}
}

// TestTOCBuildReadsOnlyFooterAndTOC: indexing fetches the footer and the
// TOC (eStargz), or only the TOC (zstd:chunked with its annotation), never
// file data.
func TestTOCBuildReadsOnlyFooterAndTOC(t *testing.T) {
	rng := rand.New(rand.NewSource(3))
	tarData, _ := randomLayer(rng, 60, 500<<10)
	for _, l := range []tocLayer{estargzWrite(t, tarData, 64<<10, 0, false), estargzWrite(t, tarData, 64<<10, 0, true)} {
		opts := l.opts()
		blob := opts.Blob.(*memBlob)
		ix, err := Build(context.Background(), opts)
		if err != nil {
			t.Fatal(err)
		}
		tocStart := ix.Spans[len(ix.Spans)-1].COff + ix.Spans[len(ix.Spans)-1].CLen
		tocBytes := blob.Size() - tocStart
		wantReads := int64(2)
		if l.format == manifest.FormatZstdChunked {
			wantReads = 1
		}
		if blob.reads.Load() != wantReads || blob.bytes.Load() > tocBytes {
			t.Fatalf("%s: build made %d reads of %d bytes; want %d reads within the %d bytes after the data", l.format, blob.reads.Load(), blob.bytes.Load(), wantReads, tocBytes)
		}
		if blob.bytes.Load()*10 > blob.Size() {
			t.Fatalf("%s: build fetched %d of %d bytes", l.format, blob.bytes.Load(), blob.Size())
		}
	}
}

// TestTOCReadFetchesOnlyItsChunks: reading a file fetches exactly its
// chunks' compressed bytes, in one request when they are adjacent.
func TestTOCReadFetchesOnlyItsChunks(t *testing.T) {
	rng := rand.New(rand.NewSource(4))
	tarData, _ := randomLayer(rng, 60, 500<<10)
	want := extract(t, tarData)
	for _, l := range []tocLayer{estargzWrite(t, tarData, 64<<10, 0, false), estargzWrite(t, tarData, 64<<10, 0, true)} {
		ix, err := Build(context.Background(), l.opts())
		if err != nil {
			t.Fatal(err)
		}
		var small, big *Entry
		for _, e := range regularEntries(ix) {
			switch n := len(chunkSpans(ix, e)); {
			case n == 1 && small == nil:
				small = e
			case n >= 3 && big == nil:
				big = e
			}
		}
		if small == nil || big == nil {
			t.Fatal("no single-chunk or multi-chunk file")
		}
		for _, e := range []*Entry{small, big} {
			blob := newMemBlob(l.blob)
			r := ix.NewReader(blob, newCache(defaultTestCache), ReaderOptions{Readahead: -1})
			checkRead(t, r, e, want[e.Name], make([]byte, e.Size), 0)
			var wantBytes int64
			for _, s := range chunkSpans(ix, e) {
				wantBytes += s.CLen
			}
			if blob.bytes.Load() != wantBytes || blob.reads.Load() != 1 {
				t.Fatalf("%s: reading %q (%d chunks) fetched %d bytes in %d reads; its chunks have %d",
					l.format, e.Name, len(chunkSpans(ix, e)), blob.bytes.Load(), blob.reads.Load(), wantBytes)
			}
		}
	}
}

// TestTOCDigestAnnotation: a wrong TOC digest is an error; a missing one
// builds an index that does not claim to be verified, with a warning, and
// whose chunks are still checked against the TOC.
func TestTOCDigestAnnotation(t *testing.T) {
	rng := rand.New(rand.NewSource(5))
	tarData, _ := randomLayer(rng, 30, 100<<10)
	wrong := digest.FromString("not the toc").String()
	for _, l := range []tocLayer{estargzWrite(t, tarData, 32<<10, 0, false), estargzWrite(t, tarData, 32<<10, 0, true)} {
		var key string
		for k := range l.annotations {
			if strings.Contains(k, "digest") || strings.Contains(k, "checksum") {
				key = k
			}
		}
		opts := l.opts()
		opts.Layer.Annotations = map[string]string{}
		for k, v := range l.annotations {
			opts.Layer.Annotations[k] = v
		}
		opts.Layer.Annotations[key] = wrong
		if _, err := Build(context.Background(), opts); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), wrong) {
			t.Fatalf("%s: wrong %s: %v; want ErrCorrupt naming it", l.format, key, err)
		}
		opts.Layer.Annotations[key] = "sha256:zz"
		if _, err := Build(context.Background(), opts); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("%s: malformed %s: %v", l.format, key, err)
		}

		delete(opts.Layer.Annotations, key)
		logs := &logRecorder{}
		opts.Logger = slog.New(logs)
		ix, err := Build(context.Background(), opts)
		if err != nil {
			t.Fatalf("%s without %s: %v", l.format, key, err)
		}
		if ix.Verified() || ix.Meta[metaTOCPinned] != "false" || !strings.Contains(logs.text(), "no TOC digest annotation") {
			t.Fatalf("%s without %s: verified %v, meta %v, logs %s", l.format, key, ix.Verified(), ix.Meta, logs.text())
		}
		e := regularEntries(ix)[0]
		for _, c := range regularEntries(ix) {
			if c.Size > e.Size {
				e = c
			}
		}
		s := chunkSpans(ix, e)[0]
		bad := &memBlob{data: l.blob, corrupt: func(_ int64, p []byte, off int64) {
			if i := s.COff + s.CLen/2 - off; i >= 0 && i < int64(len(p)) {
				p[i] ^= 0x10
			}
		}}
		if _, err := ix.NewReader(bad, newCache(defaultTestCache), ReaderOptions{}).ReadAt(context.Background(), e, make([]byte, 10), 0); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("%s: damaged chunk of an unpinned TOC: %v; want ErrCorrupt", l.format, err)
		}
	}
}

// TestTOCCorruption: damage in the footer or TOC fails the build; damage
// in a chunk fails the read (after one retry), never returns data.
func TestTOCCorruption(t *testing.T) {
	rng := rand.New(rand.NewSource(6))
	tarData, _ := randomLayer(rng, 30, 100<<10)
	for _, l := range []tocLayer{estargzWrite(t, tarData, 32<<10, 0, false), estargzWrite(t, tarData, 32<<10, 0, true)} {
		ix, err := Build(context.Background(), l.opts())
		if err != nil {
			t.Fatal(err)
		}
		tocStart := ix.Spans[len(ix.Spans)-1].COff + ix.Spans[len(ix.Spans)-1].CLen
		damage := []int64{tocStart + 30, (tocStart + int64(len(l.blob))) / 2}
		if l.format == manifest.FormatEstargz { // zstd:chunked: the annotation is used, not the footer
			damage = append(damage, int64(len(l.blob))-20)
		}
		for _, at := range damage {
			damaged := bytes.Clone(l.blob)
			damaged[at] ^= 0x55
			o := l.opts()
			o.Blob = newMemBlob(damaged)
			if _, err := Build(context.Background(), o); err == nil {
				t.Fatalf("%s: byte %d of the TOC/footer region (from %d) damaged: built", l.format, at, tocStart)
			}
		}
		for _, short := range []int{0, 10, len(l.blob) / 2} {
			o := l.opts()
			o.Blob = newMemBlob(l.blob[:short])
			if _, err := Build(context.Background(), o); err == nil {
				t.Fatalf("%s: %d-byte truncated blob built", l.format, short)
			}
		}

		e := regularEntries(ix)[0]
		for _, c := range regularEntries(ix) {
			if c.Size > e.Size {
				e = c
			}
		}
		s := chunkSpans(ix, e)[0]
		bad := &memBlob{data: l.blob, corrupt: func(_ int64, p []byte, off int64) {
			if i := s.COff + s.CLen/3 - off; i >= 0 && i < int64(len(p)) {
				p[i] ^= 0x01
			}
		}}
		r := ix.NewReader(bad, newCache(defaultTestCache), ReaderOptions{})
		n, err := r.ReadAt(context.Background(), e, make([]byte, e.Size), 0)
		if !errors.Is(err, ErrCorrupt) || n != 0 {
			t.Fatalf("%s: read of a damaged chunk = %d, %v", l.format, n, err)
		}
		if st := r.Stats(); st.Retries != 1 {
			t.Fatalf("%s: damaged chunk: %+v, want one retry", l.format, st)
		}
	}
}

// rewriteTOC replaces the TOC of an eStargz blob with edit's version of it.
func rewriteTOC(t *testing.T, l tocLayer, edit func(*estargz.JTOC)) tocLayer {
	t.Helper()
	tocOff, _, err := estargzFooter(context.Background(), newMemBlob(l.blob))
	if err != nil {
		t.Fatal(err)
	}
	jsonTOC, err := gunzipTOC(l.blob[tocOff:])
	if err != nil {
		t.Fatal(err)
	}
	toc, err := parseTOC(jsonTOC)
	if err != nil {
		t.Fatal(err)
	}
	edit(toc)
	var buf bytes.Buffer
	buf.Write(l.blob[:tocOff])
	dgst, err := estargz.NewGzipCompressorWithLevel(1).WriteTOCAndFooter(&buf, tocOff, toc, nopHash{})
	if err != nil {
		t.Fatal(err)
	}
	l.blob = buf.Bytes()
	l.annotations = map[string]string{estargz.TOCJSONDigestAnnotation: dgst.String()}
	return l
}

type nopHash struct{ io.Writer }

func (nopHash) Write(p []byte) (int, error) { return len(p), nil }
func (nopHash) Sum(b []byte) []byte         { return b }
func (nopHash) Reset()                      {}
func (nopHash) Size() int                   { return 32 }
func (nopHash) BlockSize() int              { return 64 }

// TestStargzWithoutChunkDigests: old stargz TOCs carry no chunk digests;
// single-chunk files fall back to the file digest, other chunks are served
// unchecked and the index does not claim to be verified.
func TestStargzWithoutChunkDigests(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	tarData, _ := randomLayer(rng, 40, 200<<10)
	want := extract(t, tarData)
	base := estargzWrite(t, tarData, 32<<10, 0, false)
	for _, keepFileDigest := range []bool{true, false} {
		l := rewriteTOC(t, base, func(toc *estargz.JTOC) {
			for _, e := range toc.Entries {
				e.ChunkDigest = ""
				if !keepFileDigest {
					e.Digest = ""
				}
			}
		})
		ix, err := Build(context.Background(), l.opts())
		if err != nil {
			t.Fatal(err)
		}
		if ix.Verified() {
			t.Fatal("index without chunk digests claims to be verified")
		}
		var checked, unchecked int
		for _, e := range regularEntries(ix) {
			for _, s := range chunkSpans(ix, e) {
				if s.Check == CheckDecoded {
					checked++
				} else {
					unchecked++
				}
			}
			if n := len(chunkSpans(ix, e)); keepFileDigest && n == 1 && chunkSpans(ix, e)[0].Check != CheckDecoded {
				t.Fatalf("single-chunk %q did not use its file digest", e.Name)
			}
		}
		if unchecked == 0 || keepFileDigest != (checked > 0) {
			t.Fatalf("keep file digests %v: %d checked, %d unchecked chunks", keepFileDigest, checked, unchecked)
		}
		r := ix.NewReader(newMemBlob(l.blob), newCache(defaultTestCache), ReaderOptions{})
		checkWholeFiles(t, ix, r, want)
	}
}

// TestMalformedTOCs: chunk lists that do not tile their file, offsets
// outside the data, unknown and hostile entries.
func TestMalformedTOCs(t *testing.T) {
	rng := rand.New(rand.NewSource(8))
	tarData, _ := randomLayer(rng, 20, 200<<10)
	base := estargzWrite(t, tarData, 32<<10, 0, false)
	firstChunk := func(toc *estargz.JTOC) int {
		for i, e := range toc.Entries {
			if e.Type == "chunk" {
				return i
			}
		}
		t.Fatal("no chunk entry")
		return 0
	}
	bad := map[string]func(*estargz.JTOC){
		"gap between chunks":  func(toc *estargz.JTOC) { toc.Entries[firstChunk(toc)].ChunkOffset++ },
		"chunk past the file": func(toc *estargz.JTOC) { toc.Entries[firstChunk(toc)-1].ChunkSize = 1 << 40 },
		"offset past the TOC": func(toc *estargz.JTOC) { toc.Entries[firstChunk(toc)].Offset = 1 << 40 },
		"negative offset":     func(toc *estargz.JTOC) { toc.Entries[firstChunk(toc)].Offset = -5 },
		"orphan chunk": func(toc *estargz.JTOC) {
			toc.Entries = append([]*estargz.TOCEntry{{Type: "chunk", Offset: 100, ChunkSize: 5}}, toc.Entries...)
		},
		"chunks of a directory": func(toc *estargz.JTOC) {
			i := firstChunk(toc)
			toc.Entries[i-1].Type = "dir"
		},
		"bad chunk digest": func(toc *estargz.JTOC) { toc.Entries[firstChunk(toc)].ChunkDigest = "sha256:1234" },
		"null entry":       func(toc *estargz.JTOC) { toc.Entries = append(toc.Entries, nil) },
	}
	for name, edit := range bad {
		l := rewriteTOC(t, base, edit)
		if _, err := Build(context.Background(), l.opts()); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v; want ErrCorrupt", name, err)
		}
	}
	// Entries that cannot be represented are dropped, as from a tar.
	l := rewriteTOC(t, base, func(toc *estargz.JTOC) {
		toc.Entries = append(toc.Entries,
			&estargz.TOCEntry{Name: "../escape", Type: "dir"},
			&estargz.TOCEntry{Name: "weird", Type: "socket"},
			&estargz.TOCEntry{Name: "dev/x", Type: "char", DevMajor: -1},
			&estargz.TOCEntry{Name: "late", Type: "reg", ModTime3339: "yesterday"},
			&estargz.TOCEntry{Name: "a/b/.wh..wh..opq", Type: "reg"},
			&estargz.TOCEntry{Name: "/abs/./path", Type: "symlink", LinkName: "../../x", ModTime3339: "2024-01-02T03:04:05.123456789Z",
				Xattrs: map[string][]byte{"user.bin": {0, 1, 2}}, UID: 7, Uname: "seven"},
			&estargz.TOCEntry{Name: "link", Type: "hardlink", LinkName: "/abs//path", UID: 7})
	})
	ix, err := Build(context.Background(), l.opts())
	if err != nil {
		t.Fatal(err)
	}
	tail := ix.Entries[len(ix.Entries)-3:]
	if tail[0].Type != TypeOpaque || tail[0].Name != "a/b" {
		t.Fatalf("opaque marker: %+v", tail[0])
	}
	sym := tail[1]
	if sym.Name != "abs/path" || sym.Linkname != "../../x" || sym.Xattrs["user.bin"] != "\x00\x01\x02" || sym.Uname != "seven" ||
		!sym.ModTime.Equal(time.Date(2024, 1, 2, 3, 4, 5, 123456789, time.UTC)) {
		t.Fatalf("symlink: %+v", sym)
	}
	if tail[2].Type != TypeHardlink || tail[2].Linkname != "abs/path" || tail[2].Uname != "seven" {
		t.Fatalf("hardlink: %+v", tail[2])
	}
}

// TestEstargzIndexedAsGzip: an eStargz blob whose annotation was stripped
// is indexed as gzip and shows the same tree: the TOC entry and landmark
// are hidden there too.
func TestEstargzIndexedAsGzip(t *testing.T) {
	rng := rand.New(rand.NewSource(9))
	tarData, _ := randomLayer(rng, 30, 100<<10)
	l := estargzBuild(t, tarData, 32<<10, nil, false)
	asTOC, err := Build(context.Background(), l.opts())
	if err != nil {
		t.Fatal(err)
	}
	asGzip, err := Build(context.Background(), buildOpts(l.blob, manifest.FormatGzip, 0))
	if err != nil {
		t.Fatal(err)
	}
	if len(asGzip.Entries) != len(asTOC.Entries) {
		t.Fatalf("gzip view has %d entries, TOC view %d", len(asGzip.Entries), len(asTOC.Entries))
	}
	for i := range asGzip.Entries {
		g, c := asGzip.Entries[i], asTOC.Entries[i]
		if g.Name != c.Name || g.Type != c.Type || g.Size != c.Size || !tocModTime(g.ModTime).Equal(c.ModTime) {
			t.Fatalf("entry %d: gzip view %+v, TOC view %+v", i, g, c)
		}
	}
}

// TestZstdChunkedFooterFallback: without the position annotation the TOC
// is found through the footer (here the older "GnUlInUx" one); a bad
// position annotation is an error.
func TestZstdChunkedFooterFallback(t *testing.T) {
	rng := rand.New(rand.NewSource(10))
	tarData, _ := randomLayer(rng, 30, 100<<10)
	want := extract(t, tarData)
	l := estargzWrite(t, tarData, 32<<10, 0, true)
	if string(l.blob[len(l.blob)-8:]) != zstdChunkedFooterMagicOld {
		t.Fatalf("writer's footer magic is %q", l.blob[len(l.blob)-8:])
	}
	opts := l.opts()
	opts.Layer.Annotations = map[string]string{manifest.AnnotationZstdChunkedManifestSumOld: l.annotations[manifest.AnnotationZstdChunkedManifestSumOld]}
	blob := opts.Blob.(*memBlob)
	ix, err := Build(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if !ix.Verified() || blob.reads.Load() != 2 {
		t.Fatalf("footer fallback: verified %v, %d reads", ix.Verified(), blob.reads.Load())
	}
	checkWholeFiles(t, ix, ix.NewReader(blob, newCache(defaultTestCache), ReaderOptions{}), want)

	pos := l.annotations[manifest.AnnotationZstdChunkedManifestPosOld]
	var off, n, u, typ int64
	fmt.Sscanf(pos, "%d:%d:%d:%d", &off, &n, &u, &typ)
	for _, badPos := range []string{"1:2:3", "x:1:2:1", fmt.Sprintf("%d:%d:%d:2", off, n, u), fmt.Sprintf("%d:%d:%d:1", off+1, n, u),
		fmt.Sprintf("%d:%d:%d:1", off, n, u+1), fmt.Sprintf("%d:%d:%d:1", off, int64(len(l.blob)), u), "4:10:10:1"} {
		o := l.opts()
		o.Layer.Annotations = map[string]string{manifest.AnnotationZstdChunkedManifestPos: badPos}
		if _, err := Build(context.Background(), o); err == nil {
			t.Errorf("position %q accepted", badPos)
		}
	}
	// Not a zstd:chunked blob at all.
	o := buildOpts(gzipBytes(tarData, 1), manifest.FormatZstdChunked, 0)
	if _, err := Build(context.Background(), o); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("gzip blob declared zstd:chunked: %v", err)
	}
}

// TestOpenTOCLayerFromCache: a stored TOC index is used without touching
// the blob.
func TestOpenTOCLayerFromCache(t *testing.T) {
	rng := rand.New(rand.NewSource(11))
	tarData, _ := randomLayer(rng, 20, 50<<10)
	l := estargzWrite(t, tarData, 32<<10, 0, false)
	opts := l.opts()
	opts.CacheDir = t.TempDir()
	first, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	blob := opts.Blob.(*memBlob)
	blob.resetCounts()
	second, err := Open(context.Background(), opts)
	if err != nil || blob.reads.Load() != 0 {
		t.Fatalf("second Open: %v, %d reads", err, blob.reads.Load())
	}
	sameIndex(t, first, second)

	// An index stored while the annotation was missing is rebuilt once the
	// manifest pins the TOC, and a wrong pin is then an error.
	unpinned := opts
	unpinned.Layer.Annotations = nil
	unpinned.CacheDir = t.TempDir()
	if ix, err := Open(context.Background(), unpinned); err != nil || ix.Verified() {
		t.Fatalf("unpinned Open: %v", err)
	}
	pinned := unpinned
	pinned.Layer.Annotations = l.annotations
	blob.resetCounts()
	if ix, err := Open(context.Background(), pinned); err != nil || !ix.Verified() || blob.reads.Load() == 0 {
		t.Fatalf("Open with the pin after an unpinned one: %v, %d reads", err, blob.reads.Load())
	}
	wrong := pinned
	wrong.Layer.Annotations = map[string]string{estargz.TOCJSONDigestAnnotation: digest.FromString("other").String()}
	if _, err := Open(context.Background(), wrong); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open with another pin than the stored index: %v", err)
	}
}

// tocSeeds are TOC JSON documents for FuzzTOC.
func tocSeeds(t testing.TB) [][]byte {
	rng := rand.New(rand.NewSource(44))
	tarData, _ := randomLayer(rng, 6, 3000)
	l := estargzWrite(t, tarData, 1024, 0, false)
	tocOff, _, err := estargzFooter(context.Background(), newMemBlob(l.blob))
	if err != nil {
		t.Fatal(err)
	}
	real, err := gunzipTOC(l.blob[tocOff:])
	if err != nil {
		t.Fatal(err)
	}
	small, _ := json.Marshal(estargz.JTOC{Version: 1, Entries: []*estargz.TOCEntry{
		{Name: "f", Type: "reg", Size: 10, Offset: 5, ChunkSize: 4, ChunkDigest: digest.FromString("x").String()},
		{Type: "chunk", Offset: 5, InnerOffset: 4, ChunkOffset: 4},
		{Name: ".wh.g", Type: "reg"}, {Name: "h", Type: "hardlink", LinkName: "f"},
	}})
	return [][]byte{real, small, []byte(`{"entries":[null]}`), []byte(`{}`)}
}

// FuzzTOC: no TOC makes the conversion panic, and whatever it accepts is
// a valid index (every span inside the blob, entries inside the stream)
// that survives storage.
func FuzzTOC(f *testing.F) {
	for _, s := range tocSeeds(f) {
		f.Add(s, int64(1<<20))
	}
	f.Fuzz(func(t *testing.T, data []byte, dataEnd int64) {
		toc, err := parseTOC(data)
		if err != nil || dataEnd < 0 {
			return
		}
		content, err := convertTOC(toc, tocLayout{kind: SpanGzipMember, dataEnd: dataEnd}, quietLogger())
		if err != nil {
			return
		}
		ix := &Index{Layer: sha(data), Format: manifest.FormatEstargz, Entries: content.entries, Spans: content.spans,
			usize: content.usize, blobSize: dataEnd + 51, verified: content.allDigests}
		if err := ix.validate(); err != nil {
			if errors.Is(err, ErrUnsupported) { // spans too large to serve
				return
			}
			t.Fatalf("converted TOC is not a valid index: %v", err)
		}
		for _, e := range ix.Entries {
			if !isCleanName(e.Name) || e.Type == TypeHardlink && !isCleanName(e.Linkname) {
				t.Fatalf("unclean name %q -> %q", e.Name, e.Linkname)
			}
		}
		if _, err := decodeIndex(encodeIndex(ix)); err != nil {
			t.Fatalf("converted TOC does not round-trip: %v", err)
		}
	})
}

// TestLegacyStargzFooter: old stargz blobs end with a 47-byte footer
// (extra field without a subfield header); the library's legacy parser
// finds their TOC.
func TestLegacyStargzFooter(t *testing.T) {
	rng := rand.New(rand.NewSource(13))
	tarData, _ := randomLayer(rng, 20, 100<<10)
	want := extract(t, tarData)
	l := estargzWrite(t, tarData, 32<<10, 0, false)
	tocOff, size, err := estargzFooter(context.Background(), newMemBlob(l.blob))
	if err != nil || size != estargz.FooterSize {
		t.Fatalf("footer: %v, size %d", err, size)
	}
	var footer bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&footer, gzip.NoCompression)
	zw.Extra = []byte(fmt.Sprintf("%016xSTARGZ", tocOff))
	zw.Close()
	if footer.Len() != 47 {
		t.Fatalf("legacy footer of %d bytes", footer.Len())
	}
	l.blob = append(bytes.Clone(l.blob[:len(l.blob)-estargz.FooterSize]), footer.Bytes()...)
	opts := l.opts()
	ix, err := Build(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if !ix.Verified() {
		t.Fatal("legacy footer: not verified")
	}
	checkWholeFiles(t, ix, ix.NewReader(opts.Blob, newCache(defaultTestCache), ReaderOptions{}), want)
}
