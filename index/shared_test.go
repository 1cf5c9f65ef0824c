package index

import (
	"context"
	"errors"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imgfs/imgfs/manifest"
)

// slowStream is a streamBlob whose stream takes a while to open, so that
// concurrent builders overlap.
type slowStream struct{ *streamBlob }

func (b slowStream) Open(ctx context.Context) (io.ReadCloser, error) {
	time.Sleep(50 * time.Millisecond)
	return b.streamBlob.Open(ctx)
}

// TestConcurrentOpenBuildsOnce: builders of one layer sharing a cache dir
// build it once; the others wait for the lock and load what was stored.
func TestConcurrentOpenBuildsOnce(t *testing.T) {
	rng := rand.New(rand.NewSource(35))
	tarData, _ := randomLayer(rng, 40, 100<<10)
	data := gzipBytes(tarData, 1)
	dir := t.TempDir()
	blob := &streamBlob{memBlob: newMemBlob(data)}
	var wg sync.WaitGroup
	var built, elsewhere atomic.Int64
	for range 6 {
		wg.Go(func() {
			opts := buildOpts(data, manifest.FormatGzip, 0)
			opts.CacheDir, opts.Blob = dir, slowStream{blob}
			ix, err := Open(context.Background(), opts)
			if err != nil {
				t.Error(err)
				return
			}
			switch ix.How() {
			case HowBuilt:
				built.Add(1)
			case HowBuiltElsewhere, HowCached:
				elsewhere.Add(1)
			}
		})
	}
	wg.Wait()
	if blob.opened.Load() != 1 || built.Load() != 1 || elsewhere.Load() != 5 {
		t.Fatalf("blob streamed %d times, %d built, %d loaded: want one build", blob.opened.Load(), built.Load(), elsewhere.Load())
	}
	if locks, _ := filepath.Glob(filepath.Join(dir, "index", "sha256", ".*lock*")); len(locks) != 0 {
		t.Fatalf("lock files left: %v", locks)
	}
}

// TestStaleLockIsRecovered: a lock left by a builder that died (its file
// no longer touched) is removed and the build goes ahead.
func TestStaleLockIsRecovered(t *testing.T) {
	defer func(s, p time.Duration) { lockStale, lockPoll = s, p }(lockStale, lockPoll)
	lockStale, lockPoll = 300*time.Millisecond, 20*time.Millisecond
	rng := rand.New(rand.NewSource(36))
	tarData, _ := randomLayer(rng, 10, 10<<10)
	data := gzipBytes(tarData, 1)
	dir := t.TempDir()
	opts := buildOpts(data, manifest.FormatGzip, 0)
	opts.CacheDir = dir
	lockDir := filepath.Join(dir, "index", "sha256")
	os.MkdirAll(lockDir, 0o755)
	lock := filepath.Join(lockDir, "."+opts.Layer.Digest.Encoded()+".lock")
	if err := os.WriteFile(lock, []byte("pid 1 on elsewhere\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	ix, err := Open(context.Background(), opts)
	if err != nil || ix.How() != HowBuilt {
		t.Fatalf("Open with a stale lock: %v %v", ix, err)
	}
	if d := time.Since(start); d < lockStale {
		t.Fatalf("built after %s, before the lock was stale", d)
	}
	if _, err := os.Stat(lock); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("lock still there: %v", err)
	}
}

// TestReadOnlyDirIsSearched: an index in a read-only cache dir is used,
// and nothing is written there.
func TestReadOnlyDirIsSearched(t *testing.T) {
	rng := rand.New(rand.NewSource(37))
	tarData, _ := randomLayer(rng, 10, 10<<10)
	data := gzipBytes(tarData, 1)
	shared, private := t.TempDir(), t.TempDir()
	opts := buildOpts(data, manifest.FormatGzip, 0)
	opts.CacheDir = shared
	if _, err := Open(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	opts = buildOpts(data, manifest.FormatGzip, 0)
	opts.CacheDir, opts.ReadOnlyDirs = private, []string{shared}
	blob := opts.Blob.(*memBlob)
	ix, err := Open(context.Background(), opts)
	if err != nil || ix.How() != HowCached || blob.reads.Load() != 0 {
		t.Fatalf("Open: %v, how %q, %d blob reads", err, ix.How(), blob.reads.Load())
	}
	if files, _ := filepath.Glob(filepath.Join(private, "index", "*", "*")); len(files) != 0 {
		t.Fatalf("written to the private dir: %v", files)
	}
}

// TestImportIsScopedAndUnverified: an index taken from elsewhere is
// checked against the layer, marked unverified, stored and cached under
// names of its own, and never found by a lookup of another scope.
func TestImportIsScopedAndUnverified(t *testing.T) {
	rng := rand.New(rand.NewSource(38))
	tarData, _ := randomLayer(rng, 10, 10<<10)
	data := gzipBytes(tarData, 1)
	opts := buildOpts(data, manifest.FormatGzip, 0)
	built, err := Build(context.Background(), opts)
	if err != nil || !built.Pushable() {
		t.Fatal(err)
	}
	file := built.Encode()
	l := opts.Layer
	ix, err := Import(file, l, "reg/app", "artifact sha256:abc")
	if err != nil {
		t.Fatal(err)
	}
	if ix.Verified() || ix.Pushable() || ix.Origin() != "artifact sha256:abc" {
		t.Fatalf("imported index: verified %v pushable %v origin %q", ix.Verified(), ix.Pushable(), ix.Origin())
	}
	if name := ix.fileName(); !strings.Contains(name, ".gzip.artifact.") || name == built.fileName() {
		t.Fatalf("stored as %q (a local build is %q)", name, built.fileName())
	}
	if ix.cacheKeyPrefix() == built.cacheKeyPrefix() {
		t.Fatal("an imported index caches spans under the keys of a verified build")
	}
	dir := t.TempDir()
	opts.CacheDir = dir
	opts.Scope = "reg/app"
	opts.Remote = func(context.Context) (*Index, error) { return ix, nil }
	got, err := Open(context.Background(), opts)
	if err != nil || got.How() != HowArtifact {
		t.Fatalf("Open with Remote: %v %v", got, err)
	}
	if got, err := Lookup(dir, l, "reg/app", nil); err != nil || got.Origin() == "" || got.Verified() {
		t.Fatalf("stored artifact index: %v", err)
	}
	if _, err := Lookup(dir, l, "reg/other", nil); err == nil {
		t.Fatal("an artifact index of one repository served another")
	}

	for name, c := range map[string]struct {
		l    manifest.Layer
		data []byte
	}{
		"other layer":   {manifest.Layer{Digest: sha([]byte("x")), Size: l.Size, Format: manifest.FormatGzip}, file},
		"other size":    {manifest.Layer{Digest: l.Digest, Size: l.Size + 1, Format: manifest.FormatGzip}, file},
		"other format":  {manifest.Layer{Digest: l.Digest, Size: l.Size, Format: manifest.FormatZstd}, file},
		"damaged":       {l, append(append([]byte{}, file[:len(file)-1]...), file[len(file)-1]^1)},
		"other version": {l, append(append(append([]byte{}, file[:8]...), 99, 0, 0, 0), file[12:]...)},
		"not an index":  {l, []byte("{}")},
	} {
		if _, err := Import(c.data, c.l, "reg/app", "artifact x"); err == nil {
			t.Errorf("%s: imported", name)
		}
	}
}
