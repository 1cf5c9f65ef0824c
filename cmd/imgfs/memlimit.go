package main

import (
	"runtime/debug"

	"github.com/imgfs/imgfs/index"
)

// mountHeapOverhead is the heap a mount server may use beyond its memory
// cache: spans being fetched and decoded (index.DefaultDecodeBytes), and 32
// MiB for spans queued for the disk cache, FUSE buffers, the tree and the
// indexes.
const mountHeapOverhead = index.DefaultDecodeBytes + 32<<20

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
