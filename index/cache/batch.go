package cache

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Batch stages spans for the disk tier and makes them visible all at once,
// on Commit. An index build keeps the spans it decodes this way and
// commits only once the blob digest has matched: no span decoded from
// bytes that then failed the digest is ever served, even under a key that
// a later, good build would compute too (a damaged window upstream changes
// a span's output but not its compressed bytes).
type Batch struct {
	d   *diskTier
	dir string // staging directory inside the tier

	mu     sync.Mutex
	staged []stagedSpan
	bytes  int64
	done   bool
}

type stagedSpan struct {
	name, path string
	size       int64
}

// stagingPrefix names the staging directories of batches; a crashed
// build's is removed at the next start once stale.
const stagingPrefix = ".staging-"

// stagingGrace is how old a staging directory must be before a new cache
// treats it as a crashed build's: a build may take a while.
const stagingGrace = 6 * time.Hour

// NewBatch starts a batch, or returns nil when the cache has no writable
// disk tier (nothing is kept then).
func (c *Cache) NewBatch() *Batch {
	if c.disk == nil || c.disk.readOnly {
		return nil
	}
	dir, err := os.MkdirTemp(c.disk.dir, stagingPrefix+"*")
	if err != nil {
		c.disk.writeLog.log("span cache: cannot stage spans", "err", err)
		return nil
	}
	return &Batch{d: c.disk, dir: dir}
}

// Add writes one span into the staging area. Spans beyond the tier's bound
// are not kept (the build goes on; reads fetch them). Add on a nil Batch
// does nothing.
func (b *Batch) Add(key string, data []byte) error {
	if b == nil {
		return nil
	}
	size := spanFileSize(len(key), int64(len(data)), spanBlockSize)
	b.mu.Lock()
	full := b.done || len(key) > maxKeyLen || b.bytes+size > b.d.max
	b.mu.Unlock()
	if full {
		return nil
	}
	name := fileName(key)
	path := filepath.Join(b.dir, name)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("span cache: stage: %w", err)
	}
	_, err = f.Write(appendSpanHeader(nil, key, data, spanBlockSize))
	if err == nil {
		_, err = f.Write(data)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("span cache: stage: %w", err)
	}
	b.mu.Lock()
	b.staged = append(b.staged, stagedSpan{name: name, path: path, size: size})
	b.bytes += size
	b.mu.Unlock()
	return nil
}

// Commit moves the staged spans into the tier (atomic renames) and
// accounts for them, evicting what the bound requires.
func (b *Batch) Commit() error {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	staged := b.staged
	b.done = true
	b.mu.Unlock()
	var errs []error
	for _, s := range staged {
		final := b.d.path(s.name)
		if err := os.MkdirAll(filepath.Dir(final), 0o700); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := os.Rename(s.path, final); err != nil {
			errs = append(errs, err)
			continue
		}
		b.d.mu.Lock()
		b.d.files.add(s.name, diskFile{}, s.size)
		b.d.mu.Unlock()
	}
	b.d.mu.Lock()
	b.d.evictLocked()
	b.d.mu.Unlock()
	errs = append(errs, os.RemoveAll(b.dir))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("span cache: commit staged spans: %w", err)
	}
	return nil
}

// Abort drops what was staged.
func (b *Batch) Abort() {
	if b == nil {
		return
	}
	b.mu.Lock()
	b.done = true
	b.mu.Unlock()
	os.RemoveAll(b.dir)
}

// isStaleStaging reports whether name is a staging directory left by a
// build that is long gone.
func isStaleStaging(name string, mtime time.Time) bool {
	return strings.HasPrefix(name, stagingPrefix) && time.Since(mtime) > stagingGrace
}
