package index

import (
	"archive/tar"
	"bytes"
	"context"
	"testing"
)

// oneFileTar is a tar holding one regular file.
func oneFileTar(t *testing.T, name string, content []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(content))}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write(content); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestSharedCacheKeysNameTheTOC: the layer digest of a TOC layer is never
// checked (that needs the whole blob), so two manifests can name one
// digest with different TOCs, each pinned by its own annotation. A span
// decoded through one must never be served through the other from a shared
// (disk) cache: that would bypass the chunk digests of the second.
func TestSharedCacheKeysNameTheTOC(t *testing.T) {
	good := bytes.Repeat([]byte("good"), 4096)
	evil := bytes.Repeat([]byte("evil"), 4096)
	for _, zstd := range []bool{false, true} {
		legit := estargzWrite(t, oneFileTar(t, "etc/passwd", good), 32<<10, 0, zstd)
		hostile := estargzWrite(t, oneFileTar(t, "etc/passwd", evil), 32<<10, 0, zstd)
		legitOpts, hostileOpts := legit.opts(), hostile.opts()
		hostileOpts.Layer.Digest = legitOpts.Layer.Digest // the hostile manifest claims the legit layer
		open := func(o Options) (*Index, *Entry) {
			ix, err := Build(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			return ix, regularEntries(ix)[0]
		}
		shared := newCache(64 << 20) // stands for the mount's memory + disk cache
		hix, he := open(hostileOpts)
		buf := make([]byte, len(evil))
		if _, err := hix.NewReader(hostileOpts.Blob, shared, ReaderOptions{}).ReadAt(context.Background(), he, buf, 0); err != nil {
			t.Fatal(err)
		}
		lix, le := open(legitOpts)
		if _, err := lix.NewReader(legitOpts.Blob, shared, ReaderOptions{}).ReadAt(context.Background(), le, buf, 0); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf, good) {
			t.Fatalf("zstd %v: the legit layer served %q..., decoded through another TOC", zstd, buf[:8])
		}
	}
}
