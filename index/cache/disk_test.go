package cache

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestDiskTierSurvivesRestartAndPromotes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spans")
	c := open(t, Options{MemoryBytes: 1 << 20, Dir: dir})
	c.Put("layer/0", span(1000, 7))
	if err := c.Close(); err != nil { // waits for the writer
		t.Fatal(err)
	}

	c2 := open(t, Options{MemoryBytes: 1 << 20, Dir: dir})
	if !c2.Contains("layer/0") {
		t.Fatal("Contains does not see the disk tier")
	}
	got, ok := c2.Get("layer/0")
	if !ok || !bytes.Equal(got, span(1000, 7)) {
		t.Fatalf("disk tier lost the span: %v", ok)
	}
	if _, ok := c2.Get("layer/0"); !ok {
		t.Fatal("second get failed")
	}
	wantStats(t, c2, 1, 1, 0)
	if info, err := os.Stat(dir); err != nil || info.Mode().Perm() != 0o700 {
		t.Fatalf("cache dir mode %v, %v; want 0700", info.Mode().Perm(), err)
	}
}

func TestDiskTierIsBounded(t *testing.T) {
	dir := t.TempDir()
	bound := 3 * diskSize("k0", 1000)
	c := open(t, Options{MemoryBytes: 1 << 20, Dir: dir, DiskBytes: bound})
	for i := range 10 { // fewer than pendingWrites, so none is skipped
		c.Put(fmt.Sprint("k", i), span(1000, byte(i)))
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	s := c.Stats()
	if s.DiskBytes != bound || s.DiskFiles != 3 {
		t.Fatalf("disk tier holds %d bytes in %d files, want %d in 3", s.DiskBytes, s.DiskFiles, bound)
	}
	if got := bytesOnDisk(t, dir); got != s.DiskBytes {
		t.Fatalf("%d bytes on disk, accounted %d", got, s.DiskBytes)
	}
	for _, k := range []string{"k7", "k8", "k9"} {
		if !exists(spanPath(dir, k)) {
			t.Fatalf("%s, among the most recent, was evicted", k)
		}
	}
	// A span that alone exceeds the bound is not written: it would evict all.
	c2 := open(t, Options{Dir: dir, DiskBytes: bound})
	c2.Put("huge", span(int(bound), 1))
	c2.Close()
	if exists(spanPath(dir, "huge")) || len(filesOnDisk(t, dir)) != 3 {
		t.Fatal("a span larger than the disk bound was written")
	}
}

func TestReadAtFromDisk(t *testing.T) {
	dir := t.TempDir()
	data := pattern(3*spanBlockSize+1000, 5)
	c := open(t, Options{Dir: dir})
	putDisk(t, c, "k", data)
	c.Close()

	c = open(t, Options{Dir: dir})
	checkReadAt(t, c, "k", data)
	s := c.Stats()
	if s.MemoryHits != 0 || s.Misses != 0 || s.DiskHits != int64(len(readAtCases(len(data)))) {
		t.Fatalf("stats %+v", s)
	}
	if s.MemoryBytes != 0 {
		t.Fatalf("ReadAt loaded %d bytes into memory", s.MemoryBytes)
	}
}

func TestFileEvictedByAnotherProcessIsAPlainMiss(t *testing.T) {
	dir := t.TempDir()
	logger, logs := newTestLogger()
	c := open(t, Options{Dir: dir, Logger: logger})
	putDisk(t, c, "a", span(100, 1), "b", span(100, 2))
	c.Close()

	c = open(t, Options{Dir: dir, Logger: logger})
	os.Remove(spanPath(dir, "a"))
	os.Remove(spanPath(dir, "b"))
	if _, ok := c.Get("a"); ok {
		t.Fatal("served a removed file")
	}
	if _, ok := c.ReadAt("b", make([]byte, 10), 0); ok {
		t.Fatal("served a removed file")
	}
	wantStats(t, c, 0, 0, 2)
	if s := c.Stats(); s.DiskBytes != 0 || s.DiskFiles != 0 {
		t.Fatalf("still counts removed files: %+v", s)
	}
	if w := logs.warnings(); len(w) != 0 {
		t.Fatalf("warned about a normal race: %v", w)
	}
}

func TestTwoProcessesShareADirectory(t *testing.T) {
	dir := t.TempDir()
	c1 := open(t, Options{Dir: dir})
	c2 := open(t, Options{Dir: dir})
	var wg sync.WaitGroup
	for _, c := range []*Cache{c1, c2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10 {
				c.Put(fmt.Sprint("shared/", i), pattern(70_000+i, byte(i)))
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(c1.Close(), c2.Close()); err != nil {
		t.Fatal(err)
	}
	c3 := open(t, Options{Dir: dir, MemoryBytes: 1})
	for i := range 10 {
		key := fmt.Sprint("shared/", i)
		if got, ok := c3.Get(key); !ok || !bytes.Equal(got, pattern(70_000+i, byte(i))) {
			t.Fatalf("%s: %v", key, ok)
		}
	}
}

func TestFailedRemovalKeepsAccountingTruthful(t *testing.T) {
	dir := t.TempDir()
	logger, logs := newTestLogger()
	stuck := spanPath(dir, "k0")
	hk := &hooks{remove: func(name string) error {
		if name == stuck {
			return &fs.PathError{Op: "remove", Path: name, Err: syscall.EACCES}
		}
		return os.Remove(name)
	}}
	size := diskSize("k0", 1000)
	c := open(t, Options{Dir: dir, DiskBytes: 2 * size, Logger: logger, hooks: hk})
	check := func(step string, files int64) {
		t.Helper()
		s := c.Stats()
		if onDisk := bytesOnDisk(t, dir); s.DiskBytes != onDisk || s.DiskFiles != files {
			t.Fatalf("%s: accounted %d bytes in %d files, %d bytes on disk, want %d files", step, s.DiskBytes, s.DiskFiles, onDisk, files)
		}
		if s.DiskBytes > 2*size {
			t.Fatalf("%s: %d bytes over the bound", step, s.DiskBytes)
		}
	}
	putDisk(t, c, "k0", span(1000, 0), "k1", span(1000, 1))
	c.Put("k2", span(1000, 2)) // k0 cannot go, so k1 goes
	waitWrites(t, c)
	check("after k2", 2)
	if !exists(stuck) || exists(spanPath(dir, "k1")) {
		t.Fatal("evicted the wrong file")
	}
	if w := logs.warnings(); len(w) != 1 {
		t.Fatalf("want one warning for the failed removal, got %v", w)
	}
	// A file already gone counts as removed.
	os.Remove(spanPath(dir, "k2"))
	c.Put("k3", span(1000, 3))
	waitWrites(t, c)
	check("after k3", 2)
	if got, ok := c.Get("k0"); !ok || got[0] != 0 {
		t.Fatal("the file that could not be removed is still valid and should be served")
	}
}

func TestStaleTempFilesAreRemovedAtStart(t *testing.T) {
	dir := t.TempDir()
	name := fileName("k")
	sub := filepath.Join(dir, name[:2])
	os.MkdirAll(sub, 0o700)
	stale := filepath.Join(sub, name+".123.tmp")
	fresh := filepath.Join(sub, name+".456.tmp")
	staleProbe := filepath.Join(dir, ".probe-1.tmp")
	for _, p := range []string{stale, fresh, staleProbe} {
		if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	setMtime(t, stale, time.Now().Add(-time.Hour))
	setMtime(t, staleProbe, time.Now().Add(-time.Hour))

	c := open(t, Options{Dir: dir})
	if exists(stale) || exists(staleProbe) {
		t.Fatal("stale temporary files survived the start")
	}
	if !exists(fresh) {
		t.Fatal("removed a temporary file young enough to be another process's write")
	}
	if s := c.Stats(); s.DiskFiles != 0 || s.DiskBytes != 0 {
		t.Fatalf("counted temporary files: %+v", s)
	}
}

func TestScanCountsOnlyWellPlacedSpanFiles(t *testing.T) {
	dir := t.TempDir()
	c := open(t, Options{Dir: dir})
	putDisk(t, c, "k", span(10, 1))
	c.Close()
	name := fileName("k")
	os.WriteFile(filepath.Join(dir, "README"), []byte("x"), 0o600)
	os.MkdirAll(filepath.Join(dir, "zz"), 0o700)
	os.WriteFile(filepath.Join(dir, "zz", name), []byte("x"), 0o600) // misplaced
	os.MkdirAll(filepath.Join(dir, "other", name[:2]), 0o700)
	os.WriteFile(filepath.Join(dir, "other", name[:2], name), []byte("x"), 0o600)
	os.Symlink(spanPath(dir, "k"), filepath.Join(dir, name[:2], fileName("link")))

	c = open(t, Options{Dir: dir})
	if s := c.Stats(); s.DiskFiles != 1 || s.DiskBytes != diskSize("k", 10) {
		t.Fatalf("stats %+v, want only the one span file", s)
	}
}

func TestUnlistableDirIsAnError(t *testing.T) {
	if isRoot() {
		t.Skip("permissions do not bind root")
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o300); err != nil {
		t.Fatal(err)
	}
	defer os.Chmod(dir, 0o700)
	if _, err := New(Options{Dir: dir}); err == nil {
		t.Fatal("New accepted a cache dir it cannot list")
	}
}

func TestUnreadableEntriesAreLoggedOnce(t *testing.T) {
	if isRoot() {
		t.Skip("permissions do not bind root")
	}
	dir := t.TempDir()
	for _, sub := range []string{"aa", "bb"} {
		os.Mkdir(filepath.Join(dir, sub), 0o000)
		defer os.Chmod(filepath.Join(dir, sub), 0o700)
	}
	logger, logs := newTestLogger()
	open(t, Options{Dir: dir, Logger: logger})
	if w := logs.warnings(); len(w) != 1 {
		t.Fatalf("want one warning, got %v", w)
	}
}

func TestWriteFailuresWarnOnce(t *testing.T) {
	dir := t.TempDir()
	for i := range 256 { // every fan-out dir is a file: every write fails
		os.WriteFile(filepath.Join(dir, fmt.Sprintf("%02x", i)), nil, 0o600)
	}
	logger, logs := newTestLogger()
	c := open(t, Options{Dir: dir, Logger: logger})
	for i := range 3 {
		c.Put(fmt.Sprint("k", i), span(10, 1))
		waitWrites(t, c)
	}
	if w := logs.warnings(); len(w) != 1 {
		t.Fatalf("want one warning for three failed writes, got %q", w)
	}
	if s := c.Stats(); s.DiskFiles != 0 || s.DiskBytes != 0 {
		t.Fatalf("stats %+v", s)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("failures before Close, already logged, returned by it: %v", err)
	}
}

// Spans waiting for the disk writer are bounded in bytes too: a slow disk
// with large spans must not pin more memory than pendingBytes.
func TestPendingWritesAreBoundedInBytes(t *testing.T) {
	c, err := New(Options{Dir: t.TempDir(), MemoryBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.disk.mu.Lock()
	c.disk.pending = pendingBytes // as if the writer were behind
	c.disk.mu.Unlock()
	c.Put("big", make([]byte, 1<<20))
	c.disk.mu.Lock()
	queued := c.disk.queued[fileName("big")]
	c.disk.pending = 0
	c.disk.mu.Unlock()
	if queued {
		t.Fatal("a span was queued for the disk past the pending bytes bound")
	}
}
