package index

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/imgfs/imgfs/manifest"
)

// Hostile inputs not covered by the tar walker, gzip, TOC and store tests
// (TestHostileNames, TestHostileTars, TestGzipDamagedBlobs, the TOC tests,
// TestNoPoisoningAcrossRegistries), each with its expected outcome.

// TestOddNamesAreKeptVerbatim: names with newlines, control characters and
// invalid UTF-8 are legal in tar and kept as they are (display escapes
// them: imgfs ls); duplicates are all kept in order (the merge lets the
// last win).
func TestOddNamesAreKeptVerbatim(t *testing.T) {
	odd := []string{"new\nline", "esc\x1b[31m", "bad\xffutf8", "dup", "dup"}
	var files []tarFile
	for i, n := range odd {
		files = append(files, tarFile{hdr: tarHeader(n, 1), content: []byte{byte('a' + i)}})
	}
	ix, err := buildBoth(t, writeTar(t, files))
	if err != nil {
		t.Fatal(err)
	}
	if len(ix.Entries) != len(odd) {
		t.Fatalf("%d entries, want %d", len(ix.Entries), len(odd))
	}
	for i, n := range odd {
		if ix.Entries[i].Name != n {
			t.Errorf("entry %d: %q, want %q", i, ix.Entries[i].Name, n)
		}
	}
}

// streamGzipTar writes a gzip tar of n entries made by entry(i) without
// holding the tar in memory.
func streamGzipTar(t testing.TB, n int, entry func(i int) (tar.Header, []byte)) []byte {
	t.Helper()
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestSpeed)
	tw := tar.NewWriter(zw)
	for i := 0; i < n; i++ {
		h, content := entry(i)
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(content); err != nil {
			t.Fatal(err)
		}
	}
	tw.Close()
	zw.Close()
	return gz.Bytes()
}

// TestMillionEmptyFiles: a layer of 1,000,000 empty files indexes, stores
// and loads (the entry bound is 4 Mi).
func TestMillionEmptyFiles(t *testing.T) {
	const n = 1_000_000
	data := streamGzipTar(t, n, func(i int) (tar.Header, []byte) {
		return tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("d%03d/f%07d", i%1000, i), Mode: 0o644, ModTime: time.Unix(1700000000, 0)}, nil
	})
	opts := buildOpts(data, manifest.FormatGzip, 0)
	opts.CacheDir = t.TempDir()
	start := time.Now()
	ix, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(ix.Entries) != n {
		t.Fatalf("%d entries", len(ix.Entries))
	}
	loaded, err := Lookup(opts.CacheDir, opts.Layer, "", nil)
	if err != nil || len(loaded.Entries) != n {
		t.Fatalf("reload: %v", err)
	}
	t.Logf("1M empty files: %d KiB gzip, built and stored in %s", len(data)>>10, time.Since(start).Round(time.Millisecond))
}

// TestGzipBomb: 256 MiB of zeros in a ~256 KiB gzip blob, one deflate block
// (klauspost's best compression), indexes into pieces of ordinary span
// size; reading one byte of the middle decodes one piece, not the bomb.
func TestGzipBomb(t *testing.T) {
	const size = 256 << 20
	zeros := make([]byte, 1<<20)
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	tw := tar.NewWriter(zw)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "bomb", Size: size, Mode: 0o644})
	for written := 0; written < size; written += len(zeros) {
		tw.Write(zeros)
	}
	tw.Close()
	zw.Close()
	data := gz.Bytes()
	opts := buildOpts(data, manifest.FormatGzip, 0)
	kept := &recordBatch{spans: map[string][]byte{}}
	opts.Keep = func() SpanBatch { return kept }
	ix, err := Build(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	for i := range ix.Spans {
		if ix.Spans[i].ULen > maxSpanBytes {
			t.Fatalf("span %d decodes to %d bytes", i, ix.Spans[i].ULen)
		}
	}
	blob := opts.Blob.(*memBlob)
	blob.resetCounts()
	r := ix.NewReader(blob, newCache(defaultTestCache), ReaderOptions{Readahead: -1})
	defer r.Close()
	p := make([]byte, 1)
	if _, err := r.ReadAt(context.Background(), &ix.Entries[0], p, size/2); err != nil || p[0] != 0 {
		t.Fatalf("read: %v", err)
	}
	if st := r.Stats(); st.SpansDecoded != 1 || blob.bytes.Load() > int64(len(data)) {
		t.Fatalf("one byte of a %d MiB bomb decoded %d spans from %d blob bytes", size>>20, st.SpansDecoded, blob.bytes.Load())
	}
	prefix := keyPrefix(ix.Layer, ix.Format, "", true, "")
	for i := range ix.Spans {
		if _, ok := kept.spans[spanKey(prefix, &ix.Spans[i])]; ok && ix.Spans[i].Skip > 0 {
			t.Errorf("the build kept piece %d of a giant block (it cannot hold it)", i)
		}
	}
	t.Logf("gzip bomb: %d KiB blob, %d spans", len(data)>>10, len(ix.Spans))
}

// TestNotATar: a blob of the declared format that is not a tar fails the
// build with a clear error, not an empty layer.
func TestNotATar(t *testing.T) {
	for name, data := range map[string][]byte{
		"gzip of text": gzipBytes([]byte(strings.Repeat("hello world\n", 1000)), 6),
		"random bytes": randomBytesN(4096),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Build(context.Background(), buildOpts(data, manifest.FormatGzip, 0))
			if err == nil {
				t.Fatal("not a tar: indexed")
			}
		})
	}
	// An empty tar (only the end marker) is an empty layer.
	ix, err := Build(context.Background(), buildOpts(gzipBytes(make([]byte, 1024), 6), manifest.FormatGzip, 0))
	if err != nil || len(ix.Entries) != 0 {
		t.Fatalf("empty tar: %v, %d entries", err, len(ix.Entries))
	}
}

func randomBytesN(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7919 + i/13)
	}
	return b
}
