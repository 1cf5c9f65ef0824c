package index

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"math/rand"
	"testing"

	"github.com/imgfs/imgfs/manifest"
)

func tarSeeds(f *testing.F) [][]byte {
	rng := rand.New(rand.NewSource(41))
	small, _ := randomLayer(rng, 8, 2000)
	return [][]byte{
		small,
		writeTar(f, []tarFile{{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "../x", Size: 1, Format: tar.FormatPAX,
			PAXRecords: map[string]string{"SCHILY.xattr.user.a": "b", "LIBARCHIVE.xattr.user.c": "ZA"}}, content: []byte("x")}}),
		writeTar(f, []tarFile{{hdr: tar.Header{Typeflag: tar.TypeLink, Name: "a/.wh.b", Linkname: "/c", Format: tar.FormatGNU}}}),
		{},
	}
}

// FuzzTarWalk: no tar makes the walker panic, and whatever it accepts
// yields a valid index that survives storage.
func FuzzTarWalk(f *testing.F) {
	for _, s := range tarSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ix, err := Build(context.Background(), buildOpts(data, manifest.FormatTar, 0))
		if err != nil {
			return
		}
		for _, e := range ix.Entries {
			if !isCleanName(e.Name) || e.Type == TypeHardlink && !isCleanName(e.Linkname) {
				t.Fatalf("walker produced an unclean name %q -> %q", e.Name, e.Linkname)
			}
		}
		if _, err := decodeIndex(encodeIndex(ix)); err != nil {
			t.Fatalf("accepted index does not round-trip: %v", err)
		}
	})
}

// FuzzGzipBuild: no gzip stream makes the gzip builder panic (its span
// bookkeeping panics on internal inconsistencies), and accepted streams
// give spans that decode to the stream's bytes.
func FuzzGzipBuild(f *testing.F) {
	rng := rand.New(rand.NewSource(42))
	for _, s := range tarSeeds(f) {
		f.Add(gzipBytes(s, 6), int64(512))
		f.Add(multiMember(s, rng, 3), int64(100))
		f.Add(gzipBytes(s, 0), int64(1))
	}
	f.Fuzz(func(t *testing.T, data []byte, spanSize int64) {
		ix, err := Build(context.Background(), buildOpts(data, manifest.FormatGzip, spanSize))
		if err != nil {
			return
		}
		r := ix.NewReader(newMemBlob(data), newCache(defaultTestCache), ReaderOptions{})
		for _, e := range ix.Entries {
			if e.Type == TypeReg && e.Size > 0 {
				if _, err := r.ReadAt(context.Background(), &e, make([]byte, min(e.Size, 1<<20)), 0); err != nil {
					t.Fatalf("read %q from an accepted layer: %v", e.Name, err)
				}
			}
		}
	})
}

// FuzzDecodeIndex: no index file makes the decoder panic or over-allocate.
// Inputs are also tried with a repaired checksum so mutations reach the
// parser.
func FuzzDecodeIndex(f *testing.F) {
	rng := rand.New(rand.NewSource(43))
	tarData, _ := randomLayer(rng, 10, 100<<10)
	for _, c := range []struct {
		data   []byte
		format manifest.Format
	}{{gzipBytes(tarData, 6), manifest.FormatGzip}, {tarData, manifest.FormatTar}} {
		ix, err := Build(context.Background(), buildOpts(c.data, c.format, 16<<10))
		if err != nil {
			f.Fatal(err)
		}
		ix.Meta = map[string]string{"k": "v"}
		f.Add(encodeIndex(ix))
	}
	for _, zstdChunks := range []bool{false, true} { // TOC chunk spans, with innerOffset
		l := estargzWrite(f, tarData, 16<<10, 8<<10, zstdChunks)
		ix, err := Build(context.Background(), l.opts())
		if err != nil {
			f.Fatal(err)
		}
		f.Add(encodeIndex(ix))
	}
	zopts := buildOpts(zstdFrames(f, tarData, 2), manifest.FormatZstd, 16<<10) // local spans
	zopts.CacheDir = f.TempDir()
	zix, err := Build(context.Background(), zopts)
	if err != nil {
		f.Fatal(err)
	}
	zix.Close()
	f.Add(encodeIndex(zix))
	f.Fuzz(func(t *testing.T, data []byte) {
		decodeIndex(data)
		if len(data) < headerLen+sha256.Size {
			return
		}
		fixed := append([]byte(nil), data...)
		sum := sha256.Sum256(fixed[:len(fixed)-sha256.Size])
		copy(fixed[len(fixed)-sha256.Size:], sum[:])
		ix, err := decodeIndex(fixed)
		if err != nil {
			return
		}
		if _, err := decodeIndex(encodeIndex(ix)); err != nil {
			t.Fatalf("decoded index does not re-encode: %v", err)
		}
	})
}
