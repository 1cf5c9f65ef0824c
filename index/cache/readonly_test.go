package cache

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func wantOneWarning(t *testing.T, logs *logRecorder, prefix string) {
	t.Helper()
	w := logs.warnings()
	if len(w) != 1 || !strings.HasPrefix(w[0], prefix) {
		t.Fatalf("warnings %q, want one starting %q", w, prefix)
	}
}

func TestUncreatableDirRunsMemoryOnly(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o600)
	logger, logs := newTestLogger()
	c := open(t, Options{Dir: filepath.Join(file, "spans"), Logger: logger})
	wantOneWarning(t, logs, "disk cache disabled: ")
	c.Put("k", span(10, 1))
	if _, ok := c.Get("k"); !ok {
		t.Fatal("memory tier should serve")
	}
	if s := c.Stats(); s.DiskBytes != 0 || s.DiskFiles != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// readOnly fails what a read-only file system would, counting the attempts.
func readOnly(removes, chtimes *atomic.Int64) *hooks {
	erofs := func(op, name string) error { return &fs.PathError{Op: op, Path: name, Err: syscall.EROFS} }
	return &hooks{
		probe:   func(dir string) error { return erofs("open", dir) },
		remove:  func(name string) error { removes.Add(1); return erofs("remove", name) },
		chtimes: func(name string, _, _ time.Time) error { chtimes.Add(1); return erofs("chtimes", name) },
	}
}

func TestUnwritableEmptyDirRunsMemoryOnly(t *testing.T) {
	dir := t.TempDir()
	var removes, chtimes atomic.Int64
	logger, logs := newTestLogger()
	c := open(t, Options{Dir: dir, Logger: logger, hooks: readOnly(&removes, &chtimes)})
	wantOneWarning(t, logs, "disk cache disabled: ")
	c.Put("k", span(10, 1))
	c.Close()
	if c.disk != nil || len(filesOnDisk(t, dir)) != 0 {
		t.Fatal("wrote to an unwritable dir")
	}
}

func TestReadOnlyDirServesExistingFiles(t *testing.T) {
	a, b := pattern(100_000, 1), pattern(5000, 2)
	dir := setup(t, "a", a, "b", b, "bad", span(10, 3))
	mutateFile(t, spanPath(dir, "bad"), func(raw []byte) []byte { raw[len(raw)-1] ^= 1; return raw })
	before := filesOnDisk(t, dir)
	var onDisk int64
	for _, n := range before {
		onDisk += n
	}

	var removes, chtimes atomic.Int64
	logger, logs := newTestLogger()
	// A bound below what is there: a read-only tier must not try to evict.
	c := open(t, Options{Dir: dir, DiskBytes: onDisk - 1, MemoryBytes: 1, Logger: logger, hooks: readOnly(&removes, &chtimes)})
	wantOneWarning(t, logs, "disk cache read-only: ")
	if got, ok := c.Get("a"); !ok || !bytes.Equal(got, a) {
		t.Fatal("Get from a read-only dir failed")
	}
	p := make([]byte, 100)
	if n, ok := c.ReadAt("b", p, 4950); !ok || !bytes.Equal(p[:n], b[4950:]) {
		t.Fatal("ReadAt from a read-only dir failed")
	}
	if _, ok := c.Get("bad"); ok {
		t.Fatal("served a bad file")
	}
	if c.Contains("bad") {
		t.Fatal("a bad file that cannot be removed must still not be offered")
	}
	if _, ok := c.Get("bad"); ok {
		t.Fatal("served a bad file")
	}
	c.Put("c", span(10, 4))
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if w := logs.warnings(); len(w) != 2 {
		t.Fatalf("want the read-only warning and one for the bad file, got %q", w)
	}
	if removes.Load() != 0 || chtimes.Load() != 0 {
		t.Fatalf("tried %d removals and %d chtimes on a read-only dir", removes.Load(), chtimes.Load())
	}
	if s := c.Stats(); s.DiskBytes != onDisk || s.DiskFiles != 3 {
		t.Fatalf("stats %+v, want the %d bytes in 3 files there", s, onDisk)
	}
	if after := filesOnDisk(t, dir); len(after) != len(before) {
		t.Fatalf("files changed in a read-only dir: %v", after)
	}
}

func TestReadOnlyDirWithRealPermissions(t *testing.T) {
	if isRoot() {
		t.Skip("permissions do not bind root")
	}
	dir := setup(t, "a", span(100, 1))
	sub := filepath.Dir(spanPath(dir, "a"))
	for _, d := range []string{sub, dir} {
		os.Chmod(d, 0o500)
		defer os.Chmod(d, 0o700)
	}
	logger, logs := newTestLogger()
	c := open(t, Options{Dir: dir, Logger: logger})
	wantOneWarning(t, logs, "disk cache read-only: ")
	if _, ok := c.Get("a"); !ok {
		t.Fatal("Get from a read-only dir failed")
	}
	c.Put("b", span(10, 2))
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if len(logs.warnings()) != 1 {
		t.Fatalf("warnings %q", logs.warnings())
	}
}
