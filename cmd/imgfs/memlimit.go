package main

import (
	"runtime/debug"

	"github.com/imgfs/imgfs/index"
)

// mountHeapOverhead is the heap a mount server may use beyond its memory
// cache: spans being fetched and decoded (index.DefaultDecodeBytes), and 8
// MiB for FUSE buffers, the tree and the indexes. Spans queued for the disk
// cache share that room with the decodes: the limit is soft, and reading a
// whole image was as fast with 72 MiB in all (32 MiB cache) as with 96,
// at 80 MiB peak RSS instead of 100 (docs/PERFORMANCE.md P9).
const mountHeapOverhead = index.DefaultDecodeBytes + 8<<20

// applyMountMemoryLimit sets the Go runtime's soft memory limit to the
// memory cache plus mountHeapOverhead, unless the user set GOMEMLIMIT. The
// garbage collector otherwise lets the heap grow to twice its live size
// (GOGC=100): a mount reading much more data than --memory-cache then
// peaked near twice the cache, over the "memory cache + 100 MiB" target.
// It returns the limit set, or 0 when GOMEMLIMIT rules.
func applyMountMemoryLimit(getenv func(string) string, memoryCache int64) int64 {
	if getenv("GOMEMLIMIT") != "" {
		return 0
	}
	limit := memoryCache + mountHeapOverhead
	debug.SetMemoryLimit(limit)
	return limit
}
