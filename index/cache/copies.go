package cache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// Copies keeps whole copies of files that were read to their end, one
// plain file each, so that the kernel can read them itself (FUSE
// passthrough) instead of asking imgfs for every page: rereads then run at
// local-disk speed, in this mount and in the next.
//
// A copy is stored at <dir>/<ab>/<abcdef...>, the hex SHA-256 of its key
// (the reader's name for the content, bound to what it was verified
// against), written to a temporary name, synced and renamed into place: a
// copy under its name is always complete. Its size must be the size asked
// for, or it is not used. Copies are evicted, least recently opened first
// (mtime), to stay within the byte budget; a copy removed while the kernel
// reads it stays readable through the open descriptor. Several processes
// may share the directory: the budget is checked against a listing of it
// at each store (copies being written by others are not counted).
type Copies struct {
	dir string
	max int64
	log *slog.Logger

	mu sync.Mutex // one eviction at a time in this process
}

// copyChunk is the size of each read of a copy's content: small enough to
// add little to a mount's memory.
const copyChunk = 256 << 10

// copyTempSuffix marks a copy being written.
const copyTempSuffix = ".tmp"

// NewCopies keeps copies in dir, at most maxBytes of them. Temporary files
// older than an hour (a crash mid-write) are removed.
func NewCopies(dir string, maxBytes int64, log *slog.Logger) (*Copies, error) {
	if maxBytes <= 0 {
		return nil, errors.New("file copies: no space allowed")
	}
	if log == nil {
		log = slog.Default()
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("file copies: %w", err)
	}
	c := &Copies{dir: dir, max: maxBytes, log: log}
	c.scan() // removes what crashed writers left
	return c, nil
}

type storedCopy struct {
	path  string
	size  int64
	mtime time.Time
}

// scan lists the copies on disk, removing stale temporary files.
func (c *Copies) scan() []storedCopy {
	var out []storedCopy
	_ = filepath.WalkDir(c.dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		if strings.HasSuffix(path, copyTempSuffix) {
			if time.Since(info.ModTime()) > time.Hour {
				os.Remove(path)
			}
			return nil
		}
		out = append(out, storedCopy{path: path, size: info.Size(), mtime: info.ModTime()})
		return nil
	})
	return out
}

func (c *Copies) path(key string) string {
	sum := sha256.Sum256([]byte(key))
	name := hex.EncodeToString(sum[:])
	return filepath.Join(c.dir, name[:2], name)
}

// Open opens the copy of key, which must be size bytes long, for reading;
// false when there is none (or it has another size). Opening counts as a
// use for eviction.
func (c *Copies) Open(key string, size int64) (*os.File, bool) {
	path := c.path(key)
	f, err := os.Open(path)
	if err != nil {
		return nil, false
	}
	info, err := f.Stat()
	if err != nil || !info.Mode().IsRegular() || info.Size() != size {
		f.Close()
		return nil, false
	}
	now := time.Now()
	_ = os.Chtimes(path, now, now)
	return f, true
}

// Admit reports whether a file of size bytes is worth a copy: at most a
// quarter of the budget, so that one file cannot evict all the others.
func (c *Copies) Admit(size int64) bool { return size <= c.max/4 }

// Probe opens an empty file in the store's directory, already removed:
// something to try the kernel's passthrough with.
func (c *Copies) Probe() (*os.File, error) {
	f, err := os.CreateTemp(c.dir, ".probe-*"+copyTempSuffix)
	if err != nil {
		return nil, fmt.Errorf("file copies: %w", err)
	}
	os.Remove(f.Name())
	return f, nil
}

// Has reports whether a copy of key of size bytes is stored.
func (c *Copies) Has(key string, size int64) bool {
	info, err := os.Stat(c.path(key))
	return err == nil && info.Mode().IsRegular() && info.Size() == size
}

// Store writes a copy of key, size bytes read with read (which fills p
// from offset off, as io.ReaderAt), unless one is stored already. Files
// larger than the budget are not copied.
func (c *Copies) Store(ctx context.Context, key string, size int64, read func(ctx context.Context, p []byte, off int64) (int, error)) error {
	if size > c.max {
		return fmt.Errorf("file copy of %d bytes: larger than the budget (%d)", size, c.max)
	}
	if c.Has(key, size) {
		return nil
	}
	c.makeRoom(size)
	path := c.path(key)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("file copy: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*"+copyTempSuffix)
	if err != nil {
		return fmt.Errorf("file copy: %w", err)
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	buf := make([]byte, min(size, copyChunk))
	for off := int64(0); off < size; {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := read(ctx, buf[:min(int64(len(buf)), size-off)], off)
		if n > 0 {
			if _, werr := tmp.WriteAt(buf[:n], off); werr != nil {
				return fmt.Errorf("file copy: %w", werr)
			}
			off += int64(n)
		}
		if err != nil && off < size {
			return fmt.Errorf("file copy at offset %d: %w", off, err)
		}
		if n == 0 && err == nil {
			return fmt.Errorf("file copy at offset %d: no progress", off)
		}
	}
	// Synced before the rename: a copy under its name is complete even
	// after a crash.
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("file copy: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("file copy: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("file copy: %w", err)
	}
	done = true
	return nil
}

// makeRoom evicts the least recently opened copies until size more bytes
// fit in the budget. The directory is listed each time (it holds few
// files, of 1 MiB and more): other processes sharing it add copies too.
func (c *Copies) makeRoom(size int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	files := c.scan()
	used := totalBytes(files)
	slices.SortFunc(files, func(a, b storedCopy) int { return a.mtime.Compare(b.mtime) })
	for _, f := range files {
		if used+size <= c.max {
			break
		}
		if err := os.Remove(f.path); err == nil || errors.Is(err, fs.ErrNotExist) {
			used -= f.size
			c.log.Debug("file copy evicted", "path", f.path, "bytes", f.size)
		}
	}
}

// totalBytes is the size of files in all.
func totalBytes(files []storedCopy) int64 {
	var n int64
	for _, f := range files {
		n += f.size
	}
	return n
}
