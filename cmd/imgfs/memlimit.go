package main

import (
	"runtime/debug"

	"github.com/imgfs/imgfs/index"
)

// mountHeapOverhead is the heap a mount server may use beyond its memory
// cache: spans being fetched and decoded (index.DefaultDecodeBytes), and 8
// MiB for FUSE buffers, the tree and the indexes. Spans queued for the disk
// cache share that room with the decodes: the limit is soft. With the
// default 24 MiB cache that is 56 MiB, and a mount reading a whole image
// peaks near 84 MiB of RSS (13 MiB of it the binary's pages) where 96 MiB
// gave 100 MiB at the same speed (docs/PERFORMANCE.md P9).
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
