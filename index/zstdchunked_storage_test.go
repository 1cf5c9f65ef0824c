package index_test

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand"
	"testing"
	"time"

	"github.com/imgfs/imgfs/index"
	"github.com/imgfs/imgfs/index/cache"
	"github.com/imgfs/imgfs/integration"
	"github.com/imgfs/imgfs/manifest"
	digest "github.com/opencontainers/go-digest"
)

type bytesBlob struct{ *bytes.Reader }

func (b bytesBlob) Size() int64 { return b.Reader.Size() }

func (b bytesBlob) ReadAt(_ context.Context, p []byte, off int64) (int, error) {
	return b.Reader.ReadAt(p, off)
}

// TestZstdChunkedContainersStorageLayout reads a layer in the layout
// containers/storage writes (the integration fixture's encoder: header
// frames apart from content frames, 64-byte "GNUlInUx" footer, tar-split
// after the TOC, io.github.containers.* annotations, nanosecond mtimes),
// with and without its annotations.
func TestZstdChunkedContainersStorageLayout(t *testing.T) {
	rng := rand.New(rand.NewSource(12))
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	want := map[string][]byte{}
	mtimes := map[string]time.Time{}
	for i := range 40 {
		name := fmt.Sprintf("dir%d/file%d", i%4, i)
		content := make([]byte, rng.Intn(300<<10))
		for j := range content {
			content[j] = byte(rng.Intn(16)) // compressible
		}
		mt := time.Unix(1700000000+int64(i), int64(rng.Intn(1e9)))
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: int64(len(content)), Mode: 0o640, ModTime: mt, Format: tar.FormatPAX}); err != nil {
			t.Fatal(err)
		}
		tw.Write(content)
		want[name], mtimes[name] = content, mt
		if i%7 == 0 {
			tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: fmt.Sprintf("empty%d/", i), Mode: 0o755, ModTime: mt, Format: tar.FormatPAX})
		}
	}
	tw.Close()
	enc, err := integration.ZstdChunkedEncoder(64 << 10)(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	for _, withAnnotations := range []bool{true, false} {
		layer := manifest.Layer{Digest: digest.FromBytes(enc.Blob), Size: int64(len(enc.Blob)), Format: manifest.FormatZstdChunked}
		if withAnnotations {
			layer.Annotations = enc.Annotations
		}
		blob := bytesBlob{bytes.NewReader(enc.Blob)}
		ix, err := index.Build(context.Background(), index.Options{Layer: layer, Blob: blob, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatalf("annotations %v: %v", withAnnotations, err)
		}
		if ix.Verified() != withAnnotations {
			t.Fatalf("annotations %v: verified %v", withAnnotations, ix.Verified())
		}
		c, err := cache.New(cache.Options{})
		if err != nil {
			t.Fatal(err)
		}
		r := ix.NewReader(blob, c, index.ReaderOptions{})
		seen := 0
		for i := range ix.Entries {
			e := &ix.Entries[i]
			if e.Type != index.TypeReg {
				continue
			}
			seen++
			if !e.ModTime.Equal(mtimes[e.Name]) {
				t.Fatalf("%q: mtime %v, want %v (nanoseconds are kept)", e.Name, e.ModTime, mtimes[e.Name])
			}
			got := make([]byte, e.Size)
			if _, err := r.ReadAt(context.Background(), e, got, 0); err != nil && err != io.EOF {
				t.Fatalf("read %q: %v", e.Name, err)
			}
			if !bytes.Equal(got, want[e.Name]) {
				t.Fatalf("%q: wrong content", e.Name)
			}
		}
		if seen != len(want) {
			t.Fatalf("%d files, want %d", seen, len(want))
		}
	}
}
