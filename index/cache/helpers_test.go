package cache

import (
	"bytes"
	"context"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func span(n int, fill byte) []byte { return bytes.Repeat([]byte{fill}, n) }

// pattern is a span whose bytes differ with their offset, so that a read at
// the wrong place shows.
func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7+i>>8) + seed
	}
	return b
}

// logRecorder keeps the records logged through it.
type logRecorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *logRecorder) WithGroup(string) slog.Handler            { return r }
func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.records = append(r.records, rec.Clone())
	return nil
}

// warnings lists the messages logged at warning level or above.
func (r *logRecorder) warnings() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, rec := range r.records {
		if rec.Level >= slog.LevelWarn {
			out = append(out, rec.Message)
		}
	}
	return out
}

func newTestLogger() (*slog.Logger, *logRecorder) {
	r := &logRecorder{}
	return slog.New(r), r
}

// open opens a cache closed at the end of the test, quiet unless the test
// gives a logger.
func open(t testing.TB, opts Options) *Cache {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	c, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// waitWrites waits until the background writer has written, and evicted
// for, every span queued so far.
func waitWrites(t testing.TB, c *Cache) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.disk.mu.Lock()
		idle := len(c.disk.queued) == 0
		c.disk.mu.Unlock()
		if idle {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("disk writes still pending")
		}
		time.Sleep(time.Millisecond)
	}
}

// putDisk stores spans one after the other, each on disk before the next,
// so that their order on disk is the order given.
func putDisk(t testing.TB, c *Cache, kv ...any) {
	t.Helper()
	for i := 0; i < len(kv); i += 2 {
		key := kv[i].(string)
		c.Put(key, kv[i+1].([]byte))
		waitWrites(t, c)
		if !c.disk.contains(key) {
			t.Fatalf("%s was not written", key)
		}
	}
}

func spanPath(dir, key string) string {
	name := fileName(key)
	return filepath.Join(dir, name[:2], name)
}

func diskSize(key string, n int) int64 { return spanFileSize(len(key), int64(n), spanBlockSize) }

// filesOnDisk maps the span files under dir to their sizes, skipping
// temporary files.
func filesOnDisk(t testing.TB, dir string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	err := filepath.WalkDir(dir, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if de.Type().IsRegular() && !strings.HasSuffix(p, ".tmp") {
			info, err := de.Info()
			if err != nil {
				return err
			}
			out[p] = info.Size()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func bytesOnDisk(t testing.TB, dir string) int64 {
	var total int64
	for _, n := range filesOnDisk(t, dir) {
		total += n
	}
	return total
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func mtime(t testing.TB, path string) time.Time {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return info.ModTime()
}

func setMtime(t testing.TB, path string, when time.Time) {
	t.Helper()
	if err := os.Chtimes(path, time.Time{}, when); err != nil {
		t.Fatal(err)
	}
}

// mutateFile rewrites path through f.
func mutateFile(t testing.TB, path string, f func([]byte) []byte) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, f(raw), 0o600); err != nil {
		t.Fatal(err)
	}
}

func copyFile(t testing.TB, from, to string) {
	t.Helper()
	raw, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, raw, 0o600); err != nil {
		t.Fatal(err)
	}
}

func wantStats(t testing.TB, c *Cache, memHits, diskHits, misses int64) {
	t.Helper()
	s := c.Stats()
	if s.MemoryHits != memHits || s.DiskHits != diskHits || s.Misses != misses {
		t.Fatalf("stats %+v, want %d memory hits, %d disk hits, %d misses", s, memHits, diskHits, misses)
	}
}

func isRoot() bool { return os.Geteuid() == 0 }

// bytesReaderv is a vectorReaderAt over raw that returns at most chunk
// bytes a call (0: no limit), so that short reads get exercised.
type bytesReaderv struct {
	raw   []byte
	chunk int
}

func (r bytesReaderv) ReadvAt(bufs [][]byte, off int64) (int, error) {
	if off >= int64(len(r.raw)) {
		return 0, nil // preadv's end of file
	}
	src := r.raw[off:]
	if r.chunk > 0 && len(src) > r.chunk {
		src = src[:r.chunk]
	}
	n := 0
	for _, b := range bufs {
		k := copy(b, src[n:])
		n += k
		if k < len(b) {
			break
		}
	}
	return n, nil
}
