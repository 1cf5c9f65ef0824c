package cache

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func span(n int, fill byte) []byte { return bytes.Repeat([]byte{fill}, n) }

func TestMemoryTierIsBoundedInBytesAndEvictsLeastRecentlyUsed(t *testing.T) {
	c, err := New(Options{MemoryBytes: 300})
	if err != nil {
		t.Fatal(err)
	}
	c.Put("a", span(100, 'a'))
	c.Put("b", span(100, 'b'))
	c.Put("c", span(100, 'c'))
	if _, ok := c.Get("a"); !ok { // a becomes most recently used
		t.Fatal("a missing before the bound was crossed")
	}
	c.Put("d", span(100, 'd')) // evicts b, the least recently used
	if _, ok := c.Get("b"); ok {
		t.Fatal("b should have been evicted")
	}
	for _, k := range []string{"a", "c", "d"} {
		if got, ok := c.Get(k); !ok || got[0] != k[0] {
			t.Fatalf("%s: got %v %v", k, ok, got)
		}
	}
	if s := c.Stats(); s.MemoryBytes != 300 {
		t.Fatalf("memory bytes %d, want 300", s.MemoryBytes)
	}
}

func TestSpanLargerThanMemoryIsNotCached(t *testing.T) {
	c, _ := New(Options{MemoryBytes: 10})
	c.Put("small", span(5, 's'))
	c.Put("huge", span(11, 'h'))
	if _, ok := c.Get("huge"); ok {
		t.Fatal("a span larger than the cache must not be kept")
	}
	if _, ok := c.Get("small"); !ok {
		t.Fatal("a huge span must not evict the others")
	}
}

func TestReplacingAKeyKeepsTheByteCountRight(t *testing.T) {
	c, _ := New(Options{MemoryBytes: 1000})
	c.Put("k", span(100, 1))
	c.Put("k", span(40, 2))
	if s := c.Stats(); s.MemoryBytes != 40 {
		t.Fatalf("memory bytes %d, want 40", s.MemoryBytes)
	}
}

func TestDiskTierSurvivesRestartAndPromotes(t *testing.T) {
	dir := t.TempDir()
	c, err := New(Options{MemoryBytes: 1 << 20, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	c.Put("layer/0", span(1000, 7))
	c.Close()

	c2, err := New(Options{MemoryBytes: 1 << 20, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	got, ok := c2.Get("layer/0")
	if !ok || !bytes.Equal(got, span(1000, 7)) {
		t.Fatalf("disk tier lost the span: %v", ok)
	}
	if _, ok := c2.Get("layer/0"); !ok {
		t.Fatal("second get failed")
	}
	s := c2.Stats()
	if s.DiskHits != 1 || s.MemoryHits != 1 {
		t.Fatalf("want one disk hit then one memory hit, got %+v", s)
	}
}

func TestDiskTierIsBounded(t *testing.T) {
	dir := t.TempDir()
	c, _ := New(Options{MemoryBytes: 1 << 20, Dir: dir, DiskBytes: 3 * (1000 + spanHeaderSize)})
	for i := 0; i < 10; i++ { // fewer than pendingWrites, so none is skipped
		c.Put(fmt.Sprint("k", i), span(1000, byte(i)))
	}
	c.Close() // waits for the writer
	if got := c.Stats().DiskBytes; got > 3*(1000+spanHeaderSize) {
		t.Fatalf("disk tier holds %d bytes, above its bound", got)
	}
	var files int
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			files++
		}
		return nil
	})
	if files != 3 {
		t.Fatalf("%d files on disk, want 3", files)
	}
}

func TestCorruptDiskFileIsDroppedNotServed(t *testing.T) {
	dir := t.TempDir()
	c, _ := New(Options{Dir: dir})
	c.Put("k", span(100, 9))
	c.Close()
	name := fileName("k")
	path := filepath.Join(dir, name[:2], name)
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	raw[len(raw)-1] ^= 0xff
	os.WriteFile(path, raw, 0o600)

	c2, _ := New(Options{Dir: dir})
	defer c2.Close()
	if _, ok := c2.Get("k"); ok {
		t.Fatal("served a corrupt span")
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatal("corrupt file not removed")
	}
}

func TestConcurrentUse(t *testing.T) {
	c, _ := New(Options{MemoryBytes: 64 << 10, Dir: t.TempDir(), DiskBytes: 256 << 10})
	defer c.Close()
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				k := fmt.Sprint(i % 37)
				if v, ok := c.Get(k); ok && v[0] != byte(i%37) {
					t.Errorf("key %s holds %d", k, v[0])
					return
				}
				c.Put(k, span(1024, byte(i%37)))
			}
		}(g)
	}
	wg.Wait()
	if s := c.Stats(); s.MemoryBytes > 64<<10 {
		t.Fatalf("memory bound exceeded: %d", s.MemoryBytes)
	}
}

func TestPutAfterCloseIsHarmless(t *testing.T) {
	c, _ := New(Options{Dir: t.TempDir()})
	c.Close()
	c.Put("k", span(10, 1)) // must not panic on a closed queue
	if _, ok := c.Get("k"); !ok {
		t.Fatal("memory tier should still serve")
	}
}
