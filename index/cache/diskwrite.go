package cache

import (
	"fmt"
	"os"
	"path/filepath"
)

// pendingWrites and pendingBytes bound the spans waiting for the disk
// writer; when either is reached, a span is simply not written (the cache
// is best effort), so a slow disk never holds up a read nor pins more
// memory than this (spans may be evicted from memory while they wait).
// 16 MiB is 16 ms of writes to the page cache; more only added to a
// mount's peak RSS (docs/PERFORMANCE.md P9).
const (
	pendingWrites = 16
	pendingBytes  = 16 << 20
)

func (d *diskTier) put(key string, data []byte) {
	if d.readOnly || len(key) > maxKeyLen || spanFileSize(len(key), int64(len(data)), spanBlockSize) > d.max {
		return
	}
	name := fileName(key)
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed || d.queued[name] || d.pending+int64(len(data)) > pendingBytes && d.pending > 0 {
		return
	}
	if f, ok := d.files.peek(name); ok && !f.damaged {
		return
	}
	select {
	case d.queue <- diskWrite{key: key, name: name, data: data}:
		d.queued[name] = true
		d.pending += int64(len(data))
	default: // the writer is behind: skip, the span stays in memory
	}
}

func (d *diskTier) writer() {
	defer close(d.done)
	for w := range d.queue {
		err := d.write(w)
		d.mu.Lock()
		delete(d.queued, w.name)
		d.pending -= int64(len(w.data))
		if err != nil && d.closed && d.closeErr == nil {
			d.closeErr = err
		}
		d.mu.Unlock()
		if err != nil {
			d.writeLog.log("span cache: write failed", "err", err)
		}
	}
}

// write stores one span. No fsync: a file torn by a crash fails its length
// or block checks and is dropped when read, which costs a refetch, while an
// fsync per span would cost every write.
func (d *diskTier) write(w diskWrite) error {
	final := d.path(w.name)
	sub := filepath.Dir(final)
	if err := os.MkdirAll(sub, 0o700); err != nil {
		return fmt.Errorf("span cache: create %s: %w", sub, err)
	}
	tmp, err := os.CreateTemp(sub, w.name+".*.tmp")
	if err != nil {
		return fmt.Errorf("span cache: create temporary file: %w", err)
	}
	header := appendSpanHeader(nil, w.key, w.data, spanBlockSize)
	_, err = tmp.Write(header)
	if err == nil {
		_, err = tmp.Write(w.data)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		// Atomic: a reader in any process sees the old file or the new one.
		// Two processes writing the same key both succeed; the last wins.
		err = os.Rename(tmp.Name(), final)
	}
	if err != nil {
		d.remove(tmp.Name())
		return fmt.Errorf("span cache: write %s: %w", final, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.files.add(w.name, diskFile{}, int64(len(header)+len(w.data)))
	d.evictLocked()
	return nil
}

// evictLocked removes least recently used files until the tier fits. A file
// that cannot be removed is still on disk, so it stays counted; it moves to
// the recent end so that the next oldest goes instead and it is retried only
// after all others.
func (d *diskTier) evictLocked() {
	for tries := d.files.len(); d.files.bytes() > d.max && tries > 0; tries-- {
		name, _ := d.files.oldest()
		path := d.path(name)
		if err := d.removeFile(path); err != nil {
			d.logger.Warn("span cache: cannot evict", "file", path, "err", err)
			d.files.get(name)
			continue
		}
		d.files.remove(name)
		d.open.remove(name)
		if d.lastUse != nil {
			d.lastUse.forget(path)
		}
	}
}
