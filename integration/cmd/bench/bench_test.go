package main

import (
	"bytes"
	"compress/gzip"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/imgfs/imgfs/integration"
)

// statsSample is what `imgfs mount --stats` prints on exit.
const statsSample = `time=... level=INFO msg=mounted
LAYER  DIGEST               FORMAT   REQUESTS  FETCHED   LOOKUPS  HITS  SHARED  MISSES
1      sha256:f78f88ffca92  estargz  0         0 B       0        0     0       0
3      sha256:88980f103143  estargz  2080      29.0 MiB  2361     281   12      2080
total                                2080      29.0 MiB
span cache: 269 memory hits, 0 disk hits, 2092 misses; 52.9 MiB in memory, 52.9 MiB on disk
`

func TestParseStats(t *testing.T) {
	st, err := parseStats(statsSample)
	if err != nil {
		t.Fatal(err)
	}
	if st.requests != 2080 || st.bytes != int64(29.0*(1<<20)) {
		t.Fatalf("got %d requests, %d bytes", st.requests, st.bytes)
	}
	if !strings.HasPrefix(st.text, "LAYER") || !strings.Contains(st.text, "cache:") {
		t.Fatalf("table text %q", st.text)
	}
	for _, tc := range []struct {
		line string
		want int64
	}{
		{"total  5  0 B", 0},
		{"total  5  512 B", 512},
		{"total\t\t\t7\t1.50 KiB\t\t", 1536},
		{"total  9  2.00 GiB", 2 << 30},
	} {
		st, err := parseStats("LAYER x\n" + tc.line + "\n")
		if err != nil || st.bytes != tc.want {
			t.Errorf("%q: got %d, %v; want %d", tc.line, st.bytes, err, tc.want)
		}
	}
	if _, err := parseStats("imgfs: mount failed\n"); err == nil {
		t.Fatal("a log without a stats table parsed")
	}
}

func FuzzParseStats(f *testing.F) {
	f.Add(statsSample)
	f.Add("total 1 1 B\n")
	f.Fuzz(func(t *testing.T, log string) {
		st, err := parseStats(log)
		if err == nil && (st.requests < 0 || st.bytes < 0) {
			t.Fatalf("negative figures from %q: %+v", log, st)
		}
	})
}

func TestLimitStatus(t *testing.T) {
	for _, tc := range []struct {
		l    limit
		v    float64
		want string
	}{
		{atMost(0.1), 0.1, "met"},
		{atMost(0.1), 0.11, "**NOT met**"},
		{atLeast(0.8), 0.8, "met"},
		{atLeast(0.8), 0.79, "**NOT met**"},
		{atLeast(1), math.NaN(), "n/a"},
	} {
		if got := tc.l.status(tc.v); got != tc.want {
			t.Errorf("%s with %v: %s, want %s", tc.l, tc.v, got, tc.want)
		}
	}
	if atMost(1.5).String() != "≤ 1.5" || atLeast(0.8).String() != "≥ 0.8" {
		t.Errorf("limits print as %s, %s", atMost(1.5), atLeast(0.8))
	}
}

func TestMedian(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		var out []time.Duration
		for _, x := range v {
			out = append(out, time.Duration(x)*time.Millisecond)
		}
		return out
	}
	if got := median(ms(30, 10, 20)); got != 20*time.Millisecond {
		t.Errorf("median of 3: %v", got)
	}
	if got := median(ms(40, 10, 30, 20)); got != 20*time.Millisecond {
		t.Errorf("median of 4 (lower middle): %v", got)
	}
}

func TestContentIsDeterministicAndShaped(t *testing.T) {
	a, b := newContentGen(9), newContentGen(9)
	for _, k := range []contentKind{kindText, kindBinary, kindPyc, kindRandom} {
		x, y := a.content(k, 256<<10), b.content(k, 256<<10)
		if !bytes.Equal(x, y) || len(x) != 256<<10 {
			t.Fatalf("kind %d: not deterministic or wrong size", k)
		}
	}
	// Compressibility decides what lazy reads and index builds cost: keep
	// each kind near the files it stands for.
	for _, tc := range []struct {
		kind   contentKind
		lo, hi float64
	}{
		{kindText, 0.15, 0.35}, {kindBinary, 0.4, 0.65}, {kindPyc, 0.35, 0.6}, {kindRandom, 0.99, 1.01},
	} {
		data := newContentGen(1).content(tc.kind, 4<<20)
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		zw.Write(data)
		zw.Close()
		if r := float64(buf.Len()) / float64(len(data)); r < tc.lo || r > tc.hi {
			t.Errorf("kind %d compresses to %.2f, want %.2f-%.2f", tc.kind, r, tc.lo, tc.hi)
		}
	}
}

func TestLayerTreeWritesParentsFirst(t *testing.T) {
	tr := newLayerTree()
	tr.file("usr/lib/b/x.so", 0o755, []byte("x"))
	tr.file("usr/bin/a", 0o755, []byte("a"))
	var paths []string
	for _, e := range tr.sorted() {
		paths = append(paths, e.Path)
	}
	want := "usr usr/bin usr/bin/a usr/lib usr/lib/b usr/lib/b/x.so"
	if got := strings.Join(paths, " "); got != want {
		t.Fatalf("entries %q, want %q", got, want)
	}
}

// TestEstargzChunkSizes builds an eStargz layer with a file of several
// chunks and checks the P3 denominator read back from its TOC.
func TestEstargzChunkSizes(t *testing.T) {
	g := newContentGen(5)
	entries := []integration.Entry{
		integration.Dir("data"),
		{Path: "data/big.bin", Type: integration.TypeFile, Mode: 0o644, Content: g.content(kindBinary, 9<<20)},
		integration.File("data/small.txt", "hello\n"),
		integration.File("data/empty", ""),
	}
	l, err := integration.BuildLayer(integration.LayerSpec{Entries: entries, Compression: integration.Estargz, Encoder: estargzEncoder})
	if err != nil {
		t.Fatal(err)
	}
	sizes, err := estargzChunkSizes(l.Blob, entries)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := sizes["data/empty"]; ok {
		t.Error("an empty file has no chunks")
	}
	big, small := sizes["data/big.bin"], sizes["data/small.txt"]
	// binary content compresses to about half: 3 chunks of 4 MiB hold it.
	if big < 3<<20 || big > 7<<20 || small <= 0 || small > 4096 || big+small > int64(len(l.Blob)) {
		t.Fatalf("chunk sizes big %d, small %d, blob %d", big, small, len(l.Blob))
	}

	im := &benchImage{
		layers: []layerInfo{{chunkCSize: sizes}, {blobSize: 50, tarSize: 100}},
		files:  map[string]fileRef{"data/big.bin": {0, 9 << 20}, "gz/file": {1, 1000}},
	}
	comp, uncomp := compressedEstimate(im, []string{"data/big.bin", "gz/file"})
	if comp != big+500 || uncomp != 9<<20+1000 {
		t.Fatalf("estimate %d of %d bytes, want %d of %d", comp, uncomp, big+500, 9<<20+1000)
	}
}
