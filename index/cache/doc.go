// Package cache keeps decoded spans of layers in two tiers: a small memory
// LRU bounded in bytes, in front of an optional disk tier, also bounded in
// bytes, that survives restarts and may be shared by several imgfs processes.
//
// Values are shared, not copied: callers must not modify a slice they Put or
// Get. Keys are opaque strings chosen by the reader (layer digest and span).
//
// # Tiers
//
// The memory tier holds what is being decoded and reread right now. Rereads
// of anything older are served by the disk tier, with ReadAt reading only the
// blocks a request touches, and above imgfs by the kernel page cache, so the
// memory tier stays small (DefaultMemoryBytes).
//
// A disk read lands straight in the caller's buffer: one preadv fills it and,
// beside it, the parts of its first and last blocks outside the range, so
// that every block touched is checked whole without a second copy. The tier
// keeps the span files it reads open (at most 64, least recently used closed
// first; a file evicted or dropped is closed, and Close closes them all), so
// a reread skips the open, fstat, header read and key check: a span file is
// never written in place once renamed into place, so what they checked
// holds for as long as the file is open, even if its name is removed or
// replaced meanwhile (by another process sharing the directory; the space
// of a file removed so is freed when the tier closes it).
//
// The disk tier stores one file per span at <dir>/<ab>/<abcdef...>, the hex
// SHA-256 of the key, fanned out on its first two digits. Files are written
// to a temporary name in the same directory and renamed into place, so a
// reader, in this process or another, never sees a partial file; a crash
// leaves at most a *.tmp, which a start removes once it is a minute old (a
// younger one may be another process's write in flight). A file's mtime
// means "last used": hits in either tier are recorded in memory and applied
// with os.Chtimes in batches and on Close, so eviction after a restart and
// "imgfs cache prune" both follow last use, not last write.
//
// # File format
//
// All integers are little-endian.
//
//	offset   size  field
//	0        4     "ISP2": magic "ISP" and format version '2'
//	4        4     CRC-32C of bytes [8, dataOff): the rest of the header
//	8        4     block size B, 1 <= B <= 16 MiB (written as 64 KiB)
//	12       8     data length L
//	20       2     key length K
//	22       K     key
//	22+K     4*N   CRC-32C of each block of data, N = ceil(L/B), the last one short
//	dataOff  L     data; dataOff = 22+K+4N and the file is exactly dataOff+L bytes
//
// Version 1 ("ISP1", one CRC over the data and no key) is dropped on sight.
//
// # Trust model
//
// The directory is private to the user (created 0700). The checksums catch
// damage (a torn write after a crash, bit rot), block by block so that a
// partial read verifies only what it returns; every read checks the blocks
// it returns, through a file kept open too. The embedded key catches a file
// copied or renamed over another span's name, which a checksum alone cannot:
// such a file is intact, just not the span asked for. A file failing any
// check is logged, deleted (or, in a read-only directory, ignored from then
// on) and counted as a miss; its bytes are never returned. A read failing
// for another reason, such as too many open files, is a miss that leaves the
// file alone. None of this defends against a local attacker who can write
// the directory: CRC-32C is not a MAC, and such an attacker can forge files.
package cache
