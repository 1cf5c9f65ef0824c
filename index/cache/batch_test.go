package cache

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A batch's spans are invisible until Commit, then served from disk;
// an aborted batch leaves nothing.
func TestBatchCommitsAtOnce(t *testing.T) {
	dir := t.TempDir()
	c, err := New(Options{Dir: dir, MemoryBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b := c.NewBatch()
	if b == nil {
		t.Fatal("no batch with a writable disk tier")
	}
	for _, k := range []string{"a", "b"} {
		if err := b.Add(k, bytes.Repeat([]byte(k), 5000)); err != nil {
			t.Fatal(err)
		}
	}
	if c.Contains("a") {
		t.Fatal("a staged span is visible before Commit")
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	if got, ok := c.Get("b"); !ok || !bytes.Equal(got, bytes.Repeat([]byte("b"), 5000)) {
		t.Fatal("a committed span is not served")
	}
	if st := c.Stats(); st.DiskFiles != 2 {
		t.Fatalf("disk files %d", st.DiskFiles)
	}
	aborted := c.NewBatch()
	aborted.Add("c", []byte("never"))
	aborted.Abort()
	if c.Contains("c") {
		t.Fatal("an aborted span is visible")
	}
	if left, _ := filepath.Glob(filepath.Join(dir, stagingPrefix+"*")); len(left) != 0 {
		t.Fatalf("staging left behind: %v", left)
	}
	var nilBatch *Batch // memory-only caches give none
	if nilBatch.Add("x", nil) != nil || nilBatch.Commit() != nil {
		t.Fatal("a nil batch is not a no-op")
	}
	if mem, _ := New(Options{}); mem.NewBatch() != nil {
		t.Fatal("a memory-only cache made a batch")
	}
}

// A crashed build's staging directory is removed by the next start once
// stale, and never scanned as spans.
func TestStaleStagingIsRemoved(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, stagingPrefix+"old")
	fresh := filepath.Join(dir, stagingPrefix+"new")
	os.Mkdir(stale, 0o700)
	os.Mkdir(fresh, 0o700)
	old := time.Now().Add(-2 * stagingGrace)
	os.Chtimes(stale, old, old)
	c, err := New(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Error("a stale staging dir survived")
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Error("a fresh staging dir (a build in progress) was removed")
	}
}
