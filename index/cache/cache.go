package cache

import (
	"log/slog"
	"sync"
	"sync/atomic"
)

// Options bound the cache.
type Options struct {
	MemoryBytes int64        // memory tier bound in bytes; <= 0: DefaultMemoryBytes
	Dir         string       // disk tier directory; "": memory only
	DiskBytes   int64        // disk tier bound in bytes; <= 0: DefaultDiskBytes
	Logger      *slog.Logger // nil: slog.Default()

	// hooks let tests fail file system calls that root cannot be made to
	// fail, and shorten the last-use period; nil means the real ones.
	hooks *hooks
}

const (
	// DefaultMemoryBytes is the one statement of the default memory tier
	// size. It is small on purpose: memory only needs the spans being decoded
	// and reread right now. Older rereads come from the disk tier, whose
	// ReadAt reads just the blocks asked for, and above imgfs from the
	// kernel page cache; a large memory tier would mostly hold a second copy
	// of what the page cache already has. 24 MiB holds the span being read
	// and the four read ahead of it for a sequential reader of a gzip layer,
	// and keeps a mount reading a whole image under stargz-store's peak RSS
	// (docs/PERFORMANCE.md P9); 64 MiB was no faster.
	DefaultMemoryBytes = 24 << 20
	// DefaultDiskBytes bounds the disk tier when Options.DiskBytes does not.
	DefaultDiskBytes = 10 << 30
)

// Stats count what the cache did and what it holds.
type Stats struct {
	MemoryHits, DiskHits, Misses int64
	MemoryBytes, DiskBytes       int64
	DiskFiles                    int64
}

// Cache is a two-tier span cache, safe for concurrent use.
type Cache struct {
	mem  *memoryTier
	disk *diskTier // nil: memory only

	memHits, diskHits, misses atomic.Int64

	closeOnce sync.Once
	closeErr  error
}

// New opens a cache. With a Dir it scans what earlier runs left there. A Dir
// that cannot be created or written does not fail New: the cache logs one
// warning and runs memory only, or serves the files already there without
// adding any. New fails only when Dir exists but cannot be listed; without a
// Dir it does not fail at all, which makes New(Options{MemoryBytes: n}) the
// small memory-only cache for tests and defaults.
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
	mem, err := newMemoryTier(opts.MemoryBytes)
	if err != nil {
		return nil, err
	}
	c := &Cache{mem: mem}
	if opts.Dir != "" {
		c.disk, err = openDiskTier(opts.Dir, opts.DiskBytes, opts.Logger, opts.hooks.withDefaults())
		if err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Get returns a span from memory, else from disk after checking all of the
// file, promoting it to memory. It counts a memory hit, a disk hit or a miss.
func (c *Cache) Get(key string) ([]byte, bool) {
	if data, ok := c.mem.get(key); ok {
		c.memHits.Add(1)
		c.touchDisk(key)
		return data, true
	}
	if c.disk != nil {
		if data, ok := c.disk.get(key); ok {
			c.diskHits.Add(1)
			c.mem.put(key, data)
			return data, true
		}
	}
	c.misses.Add(1)
	return nil, false
}

// Contains reports whether the span is in memory or on disk. It reads no
// file, promotes nothing, leaves both LRU orders alone and counts nothing:
// planning readahead is not using. A disk file it reports may still turn out
// damaged, or evicted by another process, when read.
func (c *Cache) Contains(key string) bool {
	return c.mem.contains(key) || (c.disk != nil && c.disk.contains(key))
}

// ReadAt copies bytes [off, off+len(p)) of the span, clamped to its end, into
// p and reports whether the span was there. From memory it copies; from disk
// it reads only the blocks the range touches, through a file kept open,
// straight into p, and checks them, without loading or promoting the span:
// rereads of a disk-cached span cost a preadv of about len(p), and the
// kernel page cache holds them anyway.
//
// An off at or past the end of a span that is there copies nothing and
// reports true, like a read at end of file: the span exists, the range is
// empty. A negative off is a caller's bug: it reports false and counts
// nothing. Otherwise ReadAt counts like Get. On false, p may hold bytes
// that failed their check (they land in p before they are checked): the
// caller must not use them.
func (c *Cache) ReadAt(key string, p []byte, off int64) (int, bool) {
	if off < 0 {
		return 0, false
	}
	if data, ok := c.mem.get(key); ok {
		c.memHits.Add(1)
		c.touchDisk(key)
		if off >= int64(len(data)) {
			return 0, true
		}
		return copy(p, data[off:]), true
	}
	if c.disk != nil {
		if n, ok := c.disk.readAt(key, p, off); ok {
			c.diskHits.Add(1)
			return n, true
		}
	}
	c.misses.Add(1)
	return 0, false
}

// touchDisk records a memory hit as a use of the disk copy too: otherwise a
// span kept hot in memory would look stale on disk, be evicted there, and be
// gone after a restart.
func (c *Cache) touchDisk(key string) {
	if c.disk != nil {
		c.disk.touch(key)
	}
}

// Put stores a span in memory now and on disk in the background, best
// effort: when the writer falls behind, the span is not written. A span
// larger than a tier's bound is not kept in that tier and evicts nothing.
// Replacing a key in memory keeps its byte count right; on disk, a key
// already there is not rewritten.
func (c *Cache) Put(key string, data []byte) {
	c.mem.put(key, data)
	if c.disk != nil {
		c.disk.put(key, data)
	}
}

// Stats reports hits, misses and what each tier holds.
func (c *Cache) Stats() Stats {
	s := Stats{
		MemoryHits:  c.memHits.Load(),
		DiskHits:    c.diskHits.Load(),
		Misses:      c.misses.Load(),
		MemoryBytes: c.mem.bytes(),
	}
	if c.disk != nil {
		s.DiskBytes, s.DiskFiles = c.disk.usage()
	}
	return s
}

// Close waits for pending disk writes and applies pending last-use times,
// returning the first error met while doing so. The cache keeps serving
// afterwards, from memory and disk, but writes nothing more to disk.
func (c *Cache) Close() error {
	c.closeOnce.Do(func() {
		if c.disk != nil {
			c.closeErr = c.disk.close()
		}
	})
	return c.closeErr
}
