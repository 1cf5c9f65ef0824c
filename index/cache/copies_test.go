package cache

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func readFrom(b []byte) func(context.Context, []byte, int64) (int, error) {
	return func(_ context.Context, p []byte, off int64) (int, error) {
		n := copy(p, b[off:])
		if n < len(p) {
			return n, io.EOF
		}
		return n, nil
	}
}

func content(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i%251)
	}
	return b
}

func TestCopiesStoreOpen(t *testing.T) {
	c, err := NewCopies(t.TempDir(), 10<<20, nil)
	if err != nil {
		t.Fatal(err)
	}
	data := content(3<<20+5, 1)
	if _, ok := c.Open("k", int64(len(data))); ok {
		t.Fatal("a copy before any was stored")
	}
	if err := c.Store(context.Background(), "k", int64(len(data)), readFrom(data)); err != nil {
		t.Fatal(err)
	}
	f, ok := c.Open("k", int64(len(data)))
	if !ok {
		t.Fatal("no copy after Store")
	}
	got, _ := io.ReadAll(f)
	f.Close()
	if !bytes.Equal(got, data) {
		t.Fatal("the copy differs")
	}
	if _, ok := c.Open("k", int64(len(data))+1); ok {
		t.Error("a copy of another size was opened")
	}
	if !c.Has("k", int64(len(data))) || c.Has("other", int64(len(data))) {
		t.Error("Has")
	}
	// Stored twice: still one file.
	if err := c.Store(context.Background(), "k", int64(len(data)), readFrom(data)); err != nil {
		t.Fatal(err)
	}
}

func TestCopiesFailedStoreLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	c, err := NewCopies(dir, 10<<20, nil)
	if err != nil {
		t.Fatal(err)
	}
	boom := errors.New("registry gone")
	err = c.Store(context.Background(), "k", 4<<20, func(_ context.Context, p []byte, off int64) (int, error) {
		if off >= 2<<20 {
			return 0, boom
		}
		return len(p), nil
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Store: %v, want the read's error", err)
	}
	if c.Has("k", 4<<20) {
		t.Error("a failed copy is stored")
	}
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, _ error) error {
		if d != nil && !d.IsDir() {
			t.Errorf("left behind: %s", p)
		}
		return nil
	})
	if err := c.Store(context.Background(), "big", 11<<20, readFrom(content(11<<20, 0))); err == nil {
		t.Error("a copy larger than the budget was stored")
	}
}

func TestCopiesEvictLeastRecentlyOpened(t *testing.T) {
	dir := t.TempDir()
	c, err := NewCopies(dir, 5<<20, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	a, b, d := content(2<<20, 1), content(2<<20, 2), content(2<<20, 3)
	for _, kv := range []struct {
		k string
		v []byte
	}{{"a", a}, {"b", b}} {
		if err := c.Store(ctx, kv.k, int64(len(kv.v)), readFrom(kv.v)); err != nil {
			t.Fatal(err)
		}
	}
	// "a" was opened last: "b" goes when "d" needs room.
	old := time.Now().Add(-time.Hour)
	os.Chtimes(c.path("b"), old, old)
	os.Chtimes(c.path("a"), old.Add(-time.Hour), old.Add(-time.Hour))
	if f, ok := c.Open("a", int64(len(a))); ok {
		f.Close()
	}
	if err := c.Store(ctx, "d", int64(len(d)), readFrom(d)); err != nil {
		t.Fatal(err)
	}
	if !c.Has("a", int64(len(a))) || c.Has("b", int64(len(b))) || !c.Has("d", int64(len(d))) {
		t.Errorf("after eviction: a %v b %v d %v, want a and d", c.Has("a", 2<<20), c.Has("b", 2<<20), c.Has("d", 2<<20))
	}
	// A new process counts what is there, and removes stale temporary
	// files only.
	stale := filepath.Join(dir, "ab", "x.1"+copyTempSuffix)
	fresh := filepath.Join(dir, "ab", "y.2"+copyTempSuffix)
	os.MkdirAll(filepath.Dir(stale), 0o700)
	os.WriteFile(stale, []byte("partial"), 0o600)
	os.WriteFile(fresh, []byte("in flight"), 0o600)
	os.Chtimes(stale, old.Add(-time.Hour), old.Add(-time.Hour))
	c2, err := NewCopies(dir, 5<<20, nil)
	if err != nil {
		t.Fatal(err)
	}
	if used := totalBytes(c2.scan()); used != 4<<20 {
		t.Errorf("used %d, want %d", used, 4<<20)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Error("stale temporary file kept")
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Error("a temporary file in flight was removed")
	}
	if strings.HasSuffix(c.path("a"), copyTempSuffix) {
		t.Error("path")
	}
}

// TestCopiesSharedBudget: two processes (two Copies) sharing a directory
// keep it within the budget together, and a file larger than a quarter of
// the budget is not admitted.
func TestCopiesSharedBudget(t *testing.T) {
	dir := t.TempDir()
	a, err := NewCopies(dir, 10<<20, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewCopies(dir, 10<<20, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i, c := range []*Copies{a, b, a, b, a} {
		v := content(5<<19, byte(i)) // 2.5 MiB each
		if err := c.Store(ctx, string(rune('a'+i)), int64(len(v)), readFrom(v)); err != nil {
			t.Fatal(err)
		}
	}
	if total := totalBytes(a.scan()); total > 10<<20 {
		t.Errorf("%d bytes of copies in the shared directory, budget %d", total, 10<<20)
	}
	if !a.Admit(10<<20/4) || a.Admit(10<<20/4+1) {
		t.Error("Admit: a quarter of the budget is the largest file copied")
	}
	f, err := a.Probe()
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if len(a.scan()) != 4 {
		t.Errorf("Probe left a file behind: %d files", len(a.scan()))
	}
}
