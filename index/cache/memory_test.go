package cache

import "testing"

func TestMemoryTierIsBoundedInBytesAndEvictsLeastRecentlyUsed(t *testing.T) {
	c := open(t, Options{MemoryBytes: 300})
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
	c := open(t, Options{MemoryBytes: 10})
	c.Put("small", span(5, 's'))
	c.Put("huge", span(11, 'h'))
	if _, ok := c.Get("huge"); ok {
		t.Fatal("a span larger than the cache must not be kept")
	}
	if _, ok := c.Get("small"); !ok {
		t.Fatal("a huge span must not evict the others")
	}
	if s := c.Stats(); s.MemoryBytes != 5 {
		t.Fatalf("memory bytes %d, want 5", s.MemoryBytes)
	}
}

func TestReplacingAKeyKeepsTheByteCountRight(t *testing.T) {
	c := open(t, Options{MemoryBytes: 1000})
	c.Put("k", span(100, 1))
	c.Put("k", span(40, 2))
	if s := c.Stats(); s.MemoryBytes != 40 {
		t.Fatalf("memory bytes %d, want 40", s.MemoryBytes)
	}
	if got, _ := c.Get("k"); len(got) != 40 || got[0] != 2 {
		t.Fatalf("got %d bytes of %v, want the replacement", len(got), got[:1])
	}
	c.Put("k", span(2000, 3)) // too large: the old value stays
	if got, _ := c.Get("k"); len(got) != 40 {
		t.Fatalf("got %d bytes, want the 40 kept", len(got))
	}
}

func TestMemoryOnlyCacheUsesTheDefaultBound(t *testing.T) {
	c, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if c.mem.max != DefaultMemoryBytes || c.disk != nil {
		t.Fatalf("bound %d, disk %v; want %d and no disk", c.mem.max, c.disk != nil, DefaultMemoryBytes)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestContainsDoesNotPromoteReorderOrCount(t *testing.T) {
	c := open(t, Options{MemoryBytes: 300})
	c.Put("a", span(100, 'a'))
	c.Put("b", span(100, 'b'))
	c.Put("c", span(100, 'c'))
	if !c.Contains("a") || c.Contains("zz") {
		t.Fatal("Contains is wrong")
	}
	c.Put("d", span(100, 'd')) // a is still the least recently used
	if c.Contains("a") {
		t.Fatal("Contains made a recently used")
	}
	wantStats(t, c, 0, 0, 0)
}
