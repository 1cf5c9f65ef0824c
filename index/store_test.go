package index

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"log/slog"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/imgfs/imgfs/manifest"
	digest "github.com/opencontainers/go-digest"
)

func sameIndex(t *testing.T, a, b *Index) {
	t.Helper()
	if a.Layer != b.Layer || a.Format != b.Format || a.SpanSize != b.SpanSize || a.usize != b.usize || a.blobSize != b.blobSize || a.verified != b.verified {
		t.Fatalf("header differs: %v %v %v %v %v %v / %v %v %v %v %v %v", a.Layer, a.Format, a.SpanSize, a.usize, a.blobSize, a.verified, b.Layer, b.Format, b.SpanSize, b.usize, b.blobSize, b.verified)
	}
	if len(a.Entries) != len(b.Entries) {
		t.Fatalf("%d vs %d entries", len(a.Entries), len(b.Entries))
	}
	for i := range a.Entries {
		x, y := a.Entries[i], b.Entries[i]
		if !x.ModTime.Equal(y.ModTime) {
			t.Fatalf("entry %q: mtime %v vs %v", x.Name, x.ModTime, y.ModTime)
		}
		x.ModTime = y.ModTime
		if len(x.Xattrs) == 0 && len(y.Xattrs) == 0 {
			x.Xattrs, y.Xattrs = nil, nil
		}
		if !reflect.DeepEqual(x, y) {
			t.Fatalf("entry %d differs:\n%+v\n%+v", i, x, y)
		}
	}
	if !reflect.DeepEqual(a.Spans, b.Spans) || !reflect.DeepEqual(a.windows, b.windows) || len(a.Meta) != len(b.Meta) {
		t.Fatal("spans, windows or meta differ")
	}
	for k, v := range a.Meta {
		if b.Meta[k] != v {
			t.Fatalf("meta %q differs", k)
		}
	}
}

func TestCodecRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewSource(31))
	tarData, _ := randomLayer(rng, 200, 200<<10)
	for _, c := range []struct {
		data   []byte
		format manifest.Format
	}{{tarData, manifest.FormatTar}, {gzipBytes(tarData, 6), manifest.FormatGzip}} {
		ix, err := Build(context.Background(), buildOpts(c.data, c.format, 64<<10))
		if err != nil {
			t.Fatal(err)
		}
		ix.Meta = map[string]string{"toc": "sha256:abc", "empty": ""}
		got, err := decodeIndex(encodeIndex(ix))
		if err != nil {
			t.Fatal(err)
		}
		sameIndex(t, ix, got)
	}
}

// TestDecodeRejectsDamage: every truncation and many single-byte flips of
// an index file are rejected.
func TestDecodeRejectsDamage(t *testing.T) {
	rng := rand.New(rand.NewSource(32))
	tarData, _ := randomLayer(rng, 30, 100<<10)
	ix, err := Build(context.Background(), buildOpts(gzipBytes(tarData, 6), manifest.FormatGzip, 64<<10))
	if err != nil {
		t.Fatal(err)
	}
	good := encodeIndex(ix)
	for n := 0; n < len(good); n += 1 + n/50 {
		if _, err := decodeIndex(good[:n]); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("truncated to %d bytes: %v", n, err)
		}
	}
	for range 300 {
		bad := bytes.Clone(good)
		bad[rng.Intn(len(bad))] ^= byte(1 + rng.Intn(255))
		if _, err := decodeIndex(bad); err == nil {
			t.Fatal("flipped byte accepted")
		}
	}
	// With the checksum repaired, damage reaches the parser: truncations
	// are errors, flips are errors or still-valid indexes, never panics.
	resum := func(b []byte) []byte {
		sum := sha256.Sum256(b[:len(b)-sha256.Size])
		copy(b[len(b)-sha256.Size:], sum[:])
		return b
	}
	for n := headerLen + sha256.Size; n < len(good); n += 1 + n/50 {
		if _, err := decodeIndex(resum(bytes.Clone(good[:n]))); !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnsupported) {
			t.Fatalf("payload truncated to %d bytes: %v", n, err)
		}
	}
	for range 2000 {
		bad := bytes.Clone(good)
		bad[headerLen+rng.Intn(len(bad)-headerLen-sha256.Size)] ^= byte(1 + rng.Intn(255))
		if ix, err := decodeIndex(resum(bad)); err == nil {
			if err := ix.validate(); err != nil {
				t.Fatalf("accepted an invalid index: %v", err)
			}
		}
	}
	other := bytes.Clone(good)
	binary.LittleEndian.PutUint32(other[len(indexMagic):], indexVersion+1)
	if _, err := decodeIndex(other); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "version") {
		t.Fatalf("other version: %v", err)
	}
}

func TestValidName(t *testing.T) {
	for name, want := range map[string]bool{
		"": true, "a": true, "a/b": true, "a/.b": true, "..a/b..": true,
		"/a": false, "a/": false, "a//b": false, "./a": false, "a/./b": false, "../a": false, "a/..": false, ".": false, "a\x00": false,
	} {
		if isCleanName(name) != want {
			t.Errorf("isCleanName(%q) = %v", name, !want)
		}
	}
}

// logRecorder keeps warnings for assertions.
type logRecorder struct {
	mu   sync.Mutex
	msgs []string
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	msg := r.Message
	r.Attrs(func(a slog.Attr) bool { msg += " " + a.String(); return true })
	l.msgs = append(l.msgs, msg)
	return nil
}
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecorder) WithGroup(string) slog.Handler      { return l }
func (l *logRecorder) text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.msgs, "\n")
}

func TestOpenCachesAndRebuilds(t *testing.T) {
	rng := rand.New(rand.NewSource(33))
	tarData, _ := randomLayer(rng, 50, 100<<10)
	data := gzipBytes(tarData, 6)
	dir := t.TempDir()
	opts := buildOpts(data, manifest.FormatGzip, 64<<10)
	opts.CacheDir = dir
	blob := opts.Blob.(*memBlob)
	logs := &logRecorder{}
	opts.Logger = slog.New(logs)

	first, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "index", "sha256", opts.Layer.Digest.Encoded()+".gzip")
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("index not stored: %v", err)
	}

	blob.resetCounts()
	second, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if blob.reads.Load() != 0 {
		t.Fatalf("cached Open read the blob %d times", blob.reads.Load())
	}
	sameIndex(t, first, second)

	good, _ := os.ReadFile(path)
	damage := map[string][]byte{
		"flipped byte": func() []byte { b := bytes.Clone(good); b[len(b)/2] ^= 1; return b }(),
		"truncated":    good[:len(good)/2],
		"empty":        {},
		"foreign file": []byte("{\"not\": \"an index\"}"),
		"other version": func() []byte {
			b := bytes.Clone(good)
			binary.LittleEndian.PutUint32(b[len(indexMagic):], 99)
			return b
		}(),
	}
	for name, bad := range damage {
		t.Run(name, func(t *testing.T) {
			if err := os.WriteFile(path, bad, 0o644); err != nil {
				t.Fatal(err)
			}
			blob.resetCounts()
			ix, err := Open(context.Background(), opts)
			if err != nil {
				t.Fatal(err)
			}
			sameIndex(t, first, ix)
			if blob.reads.Load() == 0 {
				t.Fatal("damaged index was not rebuilt")
			}
			if !strings.Contains(logs.text(), "index file unusable; rebuilding") {
				t.Fatalf("no warning logged: %s", logs.text())
			}
			if now, _ := os.ReadFile(path); !bytes.Equal(now, good) {
				t.Fatal("rebuilt index not stored")
			}
		})
	}

	// A valid index of another layer at this path is not used.
	otherTar, _ := randomLayer(rand.New(rand.NewSource(330)), 5, 1000)
	otherData := gzipBytes(otherTar, 1)
	otherIx, err := Build(context.Background(), buildOpts(otherData, manifest.FormatGzip, 0))
	if err != nil {
		t.Fatal(err)
	}
	if err := storeIndex(path, otherIx); err != nil {
		t.Fatal(err)
	}
	ix, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	sameIndex(t, first, ix)
	if !strings.Contains(logs.text(), "another layer, format or registry") {
		t.Fatalf("no warning about a foreign index: %s", logs.text())
	}

	// An index built as gzip is not used for a layer declared as a TOC
	// format: Open rebuilds (and here fails: the blob has no TOC).
	chunked := opts
	chunked.Layer.Format = manifest.FormatZstdChunked
	if _, err := Open(context.Background(), chunked); err == nil {
		t.Fatal("a gzip index served a layer declared zstd:chunked")
	}
	// Declared tar but stored gzip: the gzip index was built from bytes
	// that matched the digest, so it describes that digest whatever a
	// manifest declares: it is used.
	declaredTar := opts
	declaredTar.Layer.Format = manifest.FormatTar
	blob.resetCounts()
	if _, err := Open(context.Background(), declaredTar); err != nil || blob.reads.Load() != 0 {
		t.Fatalf("Open with a sniffable format: %v, %d reads", err, blob.reads.Load())
	}
}

// TestConcurrentOpen: many builders of one layer at once all succeed and
// leave one valid index and no temporary files.
func TestConcurrentOpen(t *testing.T) {
	rng := rand.New(rand.NewSource(34))
	tarData, _ := randomLayer(rng, 40, 100<<10)
	data := gzipBytes(tarData, 1)
	dir := t.TempDir()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			opts := buildOpts(data, manifest.FormatGzip, 0)
			opts.CacheDir = dir
			if _, err := Open(context.Background(), opts); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "index", "sha256", "*"))
	hidden, _ := filepath.Glob(filepath.Join(dir, "index", "sha256", ".*"))
	if len(files) != 1 || len(hidden) != 0 {
		t.Fatalf("files left: %v %v", files, hidden)
	}
	if _, err := loadIndex(files[0]); err != nil {
		t.Fatal(err)
	}
}

func TestIndexDirRejectsBadDigests(t *testing.T) {
	for _, d := range []digest.Digest{"", "sha256:../../etc", "sha256:abc", "md5:d41d8cd98f00b204e9800998ecf8427e"} {
		if p, err := indexDir("/cache", d); err == nil {
			t.Errorf("indexDir(%q) = %s", d, p)
		}
	}
}

func TestOpenWithoutCacheDirBuilds(t *testing.T) {
	rng := rand.New(rand.NewSource(35))
	tarData, _ := randomLayer(rng, 10, 10<<10)
	ix, err := Open(context.Background(), buildOpts(tarData, manifest.FormatTar, 0))
	if err != nil || len(ix.Entries) == 0 {
		t.Fatalf("Open without a cache dir: %v", err)
	}
}

func TestLookupNeverBuilds(t *testing.T) {
	rng := rand.New(rand.NewSource(34))
	tarData, _ := randomLayer(rng, 20, 10<<10)
	opts := buildOpts(gzipBytes(tarData, 6), manifest.FormatGzip, 64<<10)
	dir := t.TempDir()
	if _, err := Lookup(dir, opts.Layer, "", nil); err == nil {
		t.Fatal("Lookup of a layer never indexed must fail, not build")
	}
	opts.CacheDir = dir
	built, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := Lookup(dir, opts.Layer, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if loaded.UncompressedSize() != built.UncompressedSize() || len(loaded.Entries) != len(built.Entries) {
		t.Fatalf("loaded index differs: %d/%d entries", len(loaded.Entries), len(built.Entries))
	}
	// An index file copied under another layer's name is refused.
	other := opts.Layer
	other.Digest = digest.FromString("another layer")
	data, _ := os.ReadFile(filepath.Join(dir, "index", "sha256", opts.Layer.Digest.Encoded()+".gzip"))
	os.WriteFile(filepath.Join(dir, "index", "sha256", other.Digest.Encoded()+".gzip"), data, 0o644)
	if _, err := Lookup(dir, other, "", nil); err == nil {
		t.Fatal("an index of another layer was used")
	}
}

// TestNoPoisoningAcrossRegistries: the attacks of the security review.
// A hostile registry serves an uncompressed tar (or nothing: size 0) under
// the digest of a popular gzip layer, with a gzip media type. Whatever
// index that builds must never serve the real layer from its own
// registry, and the real layer's index is built from its own bytes.
func TestNoPoisoningAcrossRegistries(t *testing.T) {
	rng := rand.New(rand.NewSource(36))
	realTar, _ := randomLayer(rng, 20, 10<<10)
	realGzip := gzipBytes(realTar, 6)
	hostileTar, _ := randomLayer(rand.New(rand.NewSource(37)), 3, 100)
	victim := manifest.Layer{Digest: sha(realGzip), Size: int64(len(realGzip)), Format: manifest.FormatGzip}
	for name, hostileBlob := range map[string][]byte{"tar under a gzip digest": hostileTar, "empty blob": {}} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			hostile := Options{CacheDir: dir, Layer: victim, Blob: newMemBlob(hostileBlob), Scope: "evil.example/x", Logger: quietLogger()}
			hostile.Layer.Size = int64(len(hostileBlob))
			hix, err := Open(context.Background(), hostile)
			if err == nil && hix.Verified() {
				t.Fatal("an index of bytes that do not match the digest claims to be verified")
			}
			legit := Options{CacheDir: dir, Layer: victim, Blob: newMemBlob(realGzip), Scope: "registry.example/library/app", Logger: quietLogger()}
			lix, err := Open(context.Background(), legit)
			if err != nil {
				t.Fatal(err)
			}
			if !lix.Verified() || lix.Format != manifest.FormatGzip || len(lix.Entries) != len(extract(t, realTar))+countDirs(realTar) {
				t.Fatalf("the real layer got a foreign index: %s verified %v, %d entries", lix.Format, lix.Verified(), len(lix.Entries))
			}
		})
	}
}

// countDirs counts the directory entries of a tar (extract keeps files only).
func countDirs(tarData []byte) int {
	n := 0
	tr := tar.NewReader(bytes.NewReader(tarData))
	for {
		h, err := tr.Next()
		if err != nil {
			return n
		}
		if h.Typeflag != tar.TypeReg {
			n++
		}
	}
}
