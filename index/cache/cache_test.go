package cache

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
)

func TestHitAndMissCountersAreExact(t *testing.T) {
	dir := t.TempDir()
	c := open(t, Options{Dir: dir})
	putDisk(t, c, "a", pattern(1000, 1))
	c.Get("a")                          // memory hit
	c.Get("x")                          // miss
	c.ReadAt("a", make([]byte, 10), 5)  // memory hit
	c.ReadAt("x", make([]byte, 10), 5)  // miss
	c.ReadAt("a", make([]byte, 10), -1) // a caller's bug: not counted
	c.Contains("a")
	c.Contains("x")
	wantStats(t, c, 2, 0, 2)
	c.Close()

	c = open(t, Options{Dir: dir})
	p := make([]byte, 10)
	for range 2 { // ReadAt does not promote: both come from disk
		if n, ok := c.ReadAt("a", p, 5); !ok || n != 10 {
			t.Fatalf("ReadAt from disk: %d %v", n, ok)
		}
	}
	if s := c.Stats(); s.MemoryBytes != 0 {
		t.Fatalf("ReadAt promoted %d bytes to memory", s.MemoryBytes)
	}
	wantStats(t, c, 0, 2, 0)
	c.Get("a") // disk hit, promoted
	c.Get("a") // memory hit
	c.ReadAt("a", p, 5)
	c.Get("x")
	c.Contains("a")
	wantStats(t, c, 2, 3, 1)
	if s := c.Stats(); s.MemoryBytes != 1000 || s.DiskFiles != 1 || s.DiskBytes != diskSize("a", 1000) {
		t.Fatalf("stats %+v", s)
	}
}

// readAtCases are ranges of a span of n bytes, with their clamped result.
func readAtCases(n int) []struct {
	name      string
	off, size int
} {
	b := spanBlockSize
	cases := []struct {
		name      string
		off, size int
	}{
		{"start", 0, 100},
		{"inside a block", 10, 100},
		{"whole span", 0, n},
		{"past the end, clamped", n - 50, 100},
		{"last byte", n - 1, 1},
		{"at the end", n, 10},
		{"past the end", n + 10, 10},
		{"empty", 3, 0},
	}
	if n > 3*b {
		cases = append(cases, []struct {
			name      string
			off, size int
		}{
			{"crossing one boundary", b - 10, 20},
			{"crossing two boundaries", b - 10, b + 20},
			{"aligned block", b, b},
			{"128 KiB unaligned", b/2 + 3, 128 << 10},
			{"last partial block", 3*b + 1, n - 3*b - 1},
		}...)
	}
	return cases
}

func checkReadAt(t *testing.T, c *Cache, key string, data []byte) {
	t.Helper()
	for _, tc := range readAtCases(len(data)) {
		p := bytes.Repeat([]byte{0xee}, tc.size)
		n, ok := c.ReadAt(key, p, int64(tc.off))
		want := []byte{}
		if tc.off < len(data) {
			want = data[tc.off:min(tc.off+tc.size, len(data))]
		}
		if !ok || n != len(want) || !bytes.Equal(p[:n], want) {
			t.Errorf("%s: ReadAt(%d bytes at %d) = %d %v, want %d bytes", tc.name, tc.size, tc.off, n, ok, len(want))
		}
		if tc.size > n && p[n] != 0xee {
			t.Errorf("%s: wrote past the %d bytes it returned", tc.name, n)
		}
	}
}

func TestReadAtFromMemory(t *testing.T) {
	c := open(t, Options{MemoryBytes: 1 << 20})
	data := pattern(1000, 3)
	c.Put("k", data)
	checkReadAt(t, c, "k", data)
	if n, ok := c.ReadAt("k", make([]byte, 4), -1); ok || n != 0 {
		t.Fatalf("negative offset: %d %v", n, ok)
	}
	if n, ok := c.ReadAt("absent", make([]byte, 4), 0); ok || n != 0 {
		t.Fatalf("absent key: %d %v", n, ok)
	}
}

func TestConcurrentUse(t *testing.T) {
	c := open(t, Options{MemoryBytes: 64 << 10, Dir: t.TempDir(), DiskBytes: 1 << 20})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			p := make([]byte, 300)
			for i := range 400 {
				k := i % 37
				key := fmt.Sprint("key/", k)
				want := pattern(4096+k, byte(k))
				switch (i + g) % 4 {
				case 0:
					if v, ok := c.Get(key); ok && !bytes.Equal(v, want) {
						t.Errorf("Get %s: wrong bytes", key)
						return
					}
				case 1:
					off := (i * 131) % len(want)
					if n, ok := c.ReadAt(key, p, int64(off)); ok && !bytes.Equal(p[:n], want[off:min(off+len(p), len(want))]) {
						t.Errorf("ReadAt %s at %d: wrong bytes", key, off)
						return
					}
				case 2:
					c.Contains(key)
				case 3:
					c.Put(key, want)
				}
			}
		}(g)
	}
	wg.Wait()
	s := c.Stats()
	if s.MemoryBytes > 64<<10 || s.DiskBytes > 1<<20 {
		t.Fatalf("bound exceeded: %+v", s)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestPutAfterCloseIsHarmless(t *testing.T) {
	dir := t.TempDir()
	c := open(t, Options{Dir: dir})
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	c.Put("k", span(10, 1)) // must not panic on a closed queue
	if _, ok := c.Get("k"); !ok {
		t.Fatal("memory tier should still serve")
	}
	if err := c.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	if files := filesOnDisk(t, dir); len(files) != 0 {
		t.Fatalf("wrote %v after Close", files)
	}
}
