package cache

import (
	"testing"
)

// benchDisk returns a cache whose memory keeps nothing, over a dir holding
// one 4 MiB span, so that every read goes to disk (and the page cache).
func benchDisk(b *testing.B) *Cache {
	dir := b.TempDir()
	c := open(b, Options{Dir: dir})
	putDisk(b, c, "span", pattern(4<<20, 1))
	c.Close()
	return open(b, Options{Dir: dir, MemoryBytes: 1})
}

func BenchmarkReadAt128KiBFromDisk(b *testing.B) {
	c := benchDisk(b)
	p := make([]byte, 128<<10)
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		off := int64(i%31) * int64(len(p)) // unaligned to blocks half the time
		if n, ok := c.ReadAt("span", p, off+int64(i%2)*1000); !ok || n != len(p) {
			b.Fatal("miss")
		}
	}
}

func BenchmarkGet4MiBFromDisk(b *testing.B) {
	c := benchDisk(b)
	b.SetBytes(4 << 20)
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := c.Get("span"); !ok {
			b.Fatal("miss")
		}
	}
}

func BenchmarkReadAt128KiBFromMemory(b *testing.B) {
	c := open(b, Options{})
	c.Put("span", pattern(4<<20, 1))
	p := make([]byte, 128<<10)
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, ok := c.ReadAt("span", p, int64(i%31)*int64(len(p))); !ok {
			b.Fatal("miss")
		}
	}
}
