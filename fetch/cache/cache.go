// Package cache keeps decoded spans of layers: a memory LRU bounded in bytes
// in front of an optional disk tier, also bounded, that survives restarts.
//
// Values are shared, not copied: callers must not modify a slice they Put or
// Get. Keys are opaque strings chosen by the reader (layer digest + span).
package cache

import (
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// Options bound the cache.
type Options struct {
	MemoryBytes int64        // memory tier bound; <= 0 means DefaultMemoryBytes
	Dir         string       // disk tier directory; "" disables the disk tier
	DiskBytes   int64        // disk tier bound; <= 0 means DefaultDiskBytes
	Logger      *slog.Logger // nil: slog.Default()
}

const (
	DefaultMemoryBytes = 512 << 20
	DefaultDiskBytes   = 4 << 30
)

// Stats count what the cache did.
type Stats struct {
	MemoryHits, DiskHits, Misses int64
	MemoryBytes, DiskBytes       int64
}

// Cache is safe for concurrent use.
type Cache struct {
	mu       sync.Mutex
	lru      *simplelru.LRU[string, []byte]
	memBytes int64
	maxBytes int64
	disk     *diskTier // nil without a disk tier

	memHits, diskHits, misses atomic.Int64
}

// New opens a cache. With a Dir it scans what earlier runs left there.
func New(opts Options) (*Cache, error) {
	if opts.MemoryBytes <= 0 {
		opts.MemoryBytes = DefaultMemoryBytes
	}
	if opts.DiskBytes <= 0 {
		opts.DiskBytes = DefaultDiskBytes
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	// The entry count is not the bound (bytes are), so give the LRU room.
	lru, err := simplelru.NewLRU[string, []byte](1<<30, nil)
	if err != nil {
		return nil, err
	}
	c := &Cache{lru: lru, maxBytes: opts.MemoryBytes}
	if opts.Dir != "" {
		d, err := openDiskTier(opts.Dir, opts.DiskBytes, opts.Logger)
		if err != nil {
			return nil, err
		}
		c.disk = d
	}
	return c, nil
}

// Get returns a span from memory, else from disk (promoting it to memory).
func (c *Cache) Get(key string) ([]byte, bool) {
	c.mu.Lock()
	data, ok := c.lru.Get(key)
	c.mu.Unlock()
	if ok {
		c.memHits.Add(1)
		return data, true
	}
	if c.disk != nil {
		if data, ok := c.disk.get(key); ok {
			c.diskHits.Add(1)
			c.putMemory(key, data)
			return data, true
		}
	}
	c.misses.Add(1)
	return nil, false
}

// Put stores a span in memory and, in the background, on disk.
func (c *Cache) Put(key string, data []byte) {
	c.putMemory(key, data)
	if c.disk != nil {
		c.disk.put(key, data)
	}
}

func (c *Cache) putMemory(key string, data []byte) {
	size := int64(len(data))
	if size > c.maxBytes {
		return // would evict everything else for one span
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.lru.Peek(key); ok {
		c.memBytes -= int64(len(old))
	}
	c.lru.Add(key, data)
	c.memBytes += size
	for c.memBytes > c.maxBytes {
		_, evicted, ok := c.lru.RemoveOldest()
		if !ok {
			break
		}
		c.memBytes -= int64(len(evicted))
	}
}

// Stats reports hits, misses and the bytes each tier holds.
func (c *Cache) Stats() Stats {
	c.mu.Lock()
	mem := c.memBytes
	c.mu.Unlock()
	s := Stats{
		MemoryHits:  c.memHits.Load(),
		DiskHits:    c.diskHits.Load(),
		Misses:      c.misses.Load(),
		MemoryBytes: mem,
	}
	if c.disk != nil {
		s.DiskBytes = c.disk.bytes()
	}
	return s
}

// Close waits for pending disk writes.
func (c *Cache) Close() error {
	if c.disk != nil {
		c.disk.close()
	}
	return nil
}
