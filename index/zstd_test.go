package index

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imgfs/imgfs/manifest"
	"github.com/klauspost/compress/zstd"
)

// zstdFrames compresses data as one zstd frame per piece.
func zstdFrames(t testing.TB, data []byte, pieces int) []byte {
	t.Helper()
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest))
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	var out []byte
	step := (len(data) + pieces - 1) / pieces
	for off := 0; off < len(data); off += step {
		out = enc.EncodeAll(data[off:min(off+step, len(data))], out)
	}
	return out
}

// TestZstdLayers: plain zstd layers (one frame, many frames) are indexed
// in one pass into a verified local copy, with and without a cache dir;
// entries match the tar and reads equal a full extraction without
// touching the blob again.
func TestZstdLayers(t *testing.T) {
	const spanSize = 64 << 10
	for seed := int64(1); seed <= 2; seed++ {
		rng := rand.New(rand.NewSource(seed))
		tarData, files := randomLayer(rng, 80, 300<<10)
		want := extract(t, tarData)
		for _, v := range []struct {
			name   string
			frames int
			cached bool
		}{{"one-frame", 1, true}, {"many-frames", 7, true}, {"no-cache-dir", 3, false}} {
			t.Run(fmt.Sprintf("%d/%s", seed, v.name), func(t *testing.T) {
				data := zstdFrames(t, tarData, v.frames)
				opts := buildOpts(data, manifest.FormatZstd, spanSize)
				if v.cached {
					opts.CacheDir = t.TempDir()
				}
				ix, err := Build(context.Background(), opts)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { ix.Close() })
				checkEntries(t, ix, files)
				if !ix.Verified() || ix.UncompressedSize() != int64(len(tarData)) || len(ix.Spans) != (len(tarData)+spanSize-1)/spanSize {
					t.Fatalf("verified %v, size %d, %d spans", ix.Verified(), ix.UncompressedSize(), len(ix.Spans))
				}
				if v.cached {
					path, _ := LocalPath(opts.CacheDir, opts.Layer.Digest)
					if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, tarData) {
						t.Fatalf("local copy %s: %v, equal %v", path, err, bytes.Equal(got, tarData))
					}
					if left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".*")); len(left) != 0 {
						t.Fatalf("temporary files left: %v", left)
					}
				}
				blob := newMemBlob(data)
				r := ix.NewReader(blob, newCache(256<<10), ReaderOptions{})
				checkRandomReads(t, rng, ix, r, want, 200)
				checkBoundaryReads(t, ix, r, want)
				checkWholeFiles(t, ix, r, want)
				if blob.reads.Load() != 0 || r.Stats().LocalReads == 0 {
					t.Fatalf("reads went to the blob (%d) rather than the local copy (%+v)", blob.reads.Load(), r.Stats())
				}
			})
		}
	}
}

// TestZstdDamagedBlobs: a wrong digest, truncation or corrupt frames fail
// the build and leave no local copy behind.
func TestZstdDamagedBlobs(t *testing.T) {
	rng := rand.New(rand.NewSource(20))
	tarData, _ := randomLayer(rng, 30, 100<<10)
	data := zstdFrames(t, tarData, 2)
	flipped := bytes.Clone(data)
	flipped[len(flipped)/2] ^= 0x20
	for name, c := range map[string]struct{ blob, digestOf []byte }{
		"wrong digest":  {data, append(bytes.Clone(data), 0)},
		"truncated":     {data[:len(data)*2/3], data[:len(data)*2/3]},
		"flipped byte":  {flipped, flipped},
		"trailing junk": {append(bytes.Clone(data), "junk"...), append(bytes.Clone(data), "junk"...)},
	} {
		dir := t.TempDir()
		opts := buildOpts(c.blob, manifest.FormatZstd, 0)
		opts.Layer.Digest = sha(c.digestOf)
		opts.CacheDir = dir
		if _, err := Build(context.Background(), opts); err == nil {
			t.Errorf("%s: built", name)
		} else if name == "wrong digest" && !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v; want ErrCorrupt", name, err)
		}
		if left, _ := filepath.Glob(filepath.Join(dir, "local", "sha256", "*")); len(left) != 0 {
			t.Errorf("%s: files left: %v", name, left)
		}
		if left, _ := filepath.Glob(filepath.Join(dir, "local", "sha256", ".*")); len(left) != 0 {
			t.Errorf("%s: temporary files left: %v", name, left)
		}
	}
}

// TestZstdOpenRebuildsWithoutLocalCopy: a stored plain zstd index is used
// with its local copy; when the copy is gone or has the wrong size the
// index is rebuilt; a damaged copy of the right size is caught at read.
func TestZstdOpenRebuildsWithoutLocalCopy(t *testing.T) {
	rng := rand.New(rand.NewSource(21))
	tarData, _ := randomLayer(rng, 30, 100<<10)
	want := extract(t, tarData)
	data := zstdFrames(t, tarData, 1)
	opts := buildOpts(data, manifest.FormatZstd, 32<<10)
	opts.CacheDir = t.TempDir()
	logs := &logRecorder{}
	opts.Logger = slog.New(logs)
	blob := opts.Blob.(*memBlob)
	path, _ := LocalPath(opts.CacheDir, opts.Layer.Digest)
	open := func() (*Index, int64) {
		t.Helper()
		blob.resetCounts()
		ix, err := Open(context.Background(), opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ix.Close() })
		checkWholeFiles(t, ix, ix.NewReader(blob, newCache(defaultTestCache), ReaderOptions{}), want)
		return ix, blob.reads.Load()
	}
	if _, reads := open(); reads == 0 {
		t.Fatal("first Open did not build")
	}
	if _, reads := open(); reads != 0 {
		t.Fatalf("second Open read the blob %d times", reads)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if _, reads := open(); reads == 0 || !strings.Contains(logs.text(), "local copy of the plain zstd layer is missing") {
		t.Fatalf("Open without the local copy: %d reads, logs %s", reads, logs.text())
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("local copy not rebuilt: %v", err)
	}
	if err := os.Truncate(path, 100); err != nil {
		t.Fatal(err)
	}
	if _, reads := open(); reads == 0 {
		t.Fatal("truncated local copy used")
	}

	damaged, _ := os.ReadFile(path)
	damaged[len(damaged)/2] ^= 1
	if err := os.WriteFile(path, damaged, 0o644); err != nil {
		t.Fatal(err)
	}
	blob.resetCounts()
	ix, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	r := ix.NewReader(blob, newCache(defaultTestCache), ReaderOptions{})
	var failed bool
	for _, e := range regularEntries(ix) {
		if e.Size == 0 {
			continue
		}
		if _, err := r.ReadAt(context.Background(), e, make([]byte, e.Size), 0); err != nil {
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "local copy") {
				t.Fatalf("read from a damaged local copy: %v", err)
			}
			failed = true
		}
	}
	if !failed {
		t.Fatal("damaged local copy served")
	}
}
