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
	"sync"
	"time"
)

// diskFile is what the disk tier knows of a file besides its size, which
// the LRU keeps.
type diskFile struct {
	// damaged: it failed a check and could not be removed. It is still on
	// disk, so it stays counted, but it is never served.
	damaged bool
}

type diskTier struct {
	dir      string
	max      int64
	readOnly bool // the files are served but neither added, removed nor touched
	logger   *slog.Logger
	remove   func(string) error
	lastUse  *lastUse // nil when read-only
	readLog  warnOnce
	writeLog warnOnce
	scratch  sync.Pool  // *[]byte: the block edges around a readAt
	open     *openFiles // span files kept open for rereads

	mu       sync.Mutex
	files    *byteLRU[diskFile] // by file name; its byte count is the tier's
	queued   map[string]bool    // file names waiting for the writer
	pending  int64              // bytes waiting for the writer
	closed   bool
	closeErr error // first write failure after close began

	queue chan diskWrite // nil when read-only
	done  chan struct{}  // closed when the writer is gone
}

type diskWrite struct {
	key, name string
	data      []byte
}

// fileName is hex(sha256(key)): keys may hold any bytes, a name may not.
func fileName(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

func (d *diskTier) path(name string) string {
	return filepath.Join(d.dir, name[:2], name)
}

// use marks a file as just used and reports whether it may be read.
func (d *diskTier) use(name string) bool {
	d.mu.Lock()
	f, ok := d.files.get(name)
	d.mu.Unlock()
	if !ok || f.damaged {
		return false
	}
	if d.lastUse != nil {
		d.lastUse.touch(d.path(name), time.Now())
	}
	return true
}

func (d *diskTier) touch(key string) { d.use(fileName(key)) }

func (d *diskTier) contains(key string) bool {
	name := fileName(key)
	d.mu.Lock()
	defer d.mu.Unlock()
	f, ok := d.files.peek(name)
	return ok && !f.damaged
}

func (d *diskTier) get(key string) ([]byte, bool) {
	name := fileName(key)
	if !d.use(name) {
		return nil, false
	}
	var data []byte
	err := d.withSpan(name, key, func(s *openSpan) (err error) {
		data, err = s.h.readData(fdReader(s.fd))
		return err
	})
	if err != nil {
		d.failed(name, d.path(name), err)
		return nil, false
	}
	return data, true
}

func (d *diskTier) readAt(key string, p []byte, off int64) (int, bool) {
	name := fileName(key)
	if !d.use(name) {
		return 0, false
	}
	var n int
	err := d.withSpan(name, key, func(s *openSpan) (err error) {
		buf := d.scratch.Get().(*[]byte)
		defer d.scratch.Put(buf)
		n, err = s.h.readAt(fdReader(s.fd), p, off, buf)
		return err
	})
	if err != nil {
		d.failed(name, d.path(name), err)
		return 0, false
	}
	return n, true
}

// withSpan calls read with the span file of name, open and its header
// checked for key, kept open for the next reads while the tier lists it.
// A file whose read fails is not kept: the next read opens it again, or
// finds it dropped.
func (d *diskTier) withSpan(name, key string, read func(*openSpan) error) error {
	s, ok := d.open.get(name)
	if !ok {
		var err error
		if s, err = d.openSpan(name, key); err != nil {
			return err
		}
	}
	defer s.release()
	err := read(s)
	if err != nil {
		d.open.forget(name, s)
	}
	return err
}

// openSpan opens the span file of name and checks its header for key. It
// is kept open only while the tier lists the file as good: a file dropped
// meanwhile by a concurrent read is read this once and closed.
func (d *diskTier) openSpan(name, key string) (*openSpan, error) {
	f, size, err := d.openSpanFile(d.path(name))
	if err != nil {
		return nil, err
	}
	h, err := readSpanHeader(f, size, key)
	if err != nil {
		f.Close()
		return nil, err
	}
	s := newOpenSpan(f, h)
	d.mu.Lock()
	defer d.mu.Unlock()
	if f, ok := d.files.peek(name); ok && !f.damaged {
		s = d.open.add(name, s)
	}
	return s, nil
}

// openSpanFile opens path and returns its size, refusing a file larger than
// the whole tier before anything allocates for it: no such file was written
// by a cache with this bound.
func (d *diskTier) openSpanFile(path string) (*os.File, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	info, err := f.Stat()
	if err == nil && info.Size() > d.max {
		err = fmt.Errorf("%w: %d bytes, more than the whole tier", errBadLength, info.Size())
	}
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, info.Size(), nil
}

// failed handles a file that could not be read as the span asked for.
func (d *diskTier) failed(name, path string, err error) {
	var bad formatError
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// Evicted by another process between our lookup and the read: a
		// plain miss, and the bytes are no longer on disk.
		d.mu.Lock()
		d.files.remove(name)
		d.open.remove(name)
		d.mu.Unlock()
	case errors.As(err, &bad):
		d.drop(name, path, err)
	default:
		// Not proof that the file is bad (too many open files, say): a
		// miss this time, and the file stays.
		d.readLog.log("span cache: read failed", "file", path, "err", err)
	}
}

// drop deletes a file that failed a check, so that it is neither served nor
// read again.
func (d *diskTier) drop(name, path string, why error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.open.remove(name)
	f, ok := d.files.peek(name)
	if !ok || f.damaged {
		return // a concurrent reader dropped it already
	}
	level := slog.LevelWarn
	if errors.Is(why, errOldFormat) {
		level = slog.LevelDebug // expected once after an upgrade, for every old file
	}
	var rmErr error
	if d.readOnly {
		rmErr = errors.New("cache directory is read-only")
	} else {
		rmErr = d.removeFile(path)
	}
	if rmErr != nil {
		d.files.update(name, diskFile{damaged: true})
		d.logger.Log(context.Background(), level, "span cache: ignoring bad file", "file", path, "err", why, "remove_err", rmErr)
		return
	}
	d.files.remove(name)
	if d.lastUse != nil {
		d.lastUse.forget(path)
	}
	d.logger.Log(context.Background(), level, "span cache: dropped bad file", "file", path, "err", why)
}

// removeFile removes path; a file already gone counts as removed.
func (d *diskTier) removeFile(path string) error {
	if err := d.remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

func (d *diskTier) usage() (bytes, files int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.files.bytes(), int64(d.files.len())
}

// close waits for the writer and applies pending last-use times.
func (d *diskTier) close() error {
	d.mu.Lock()
	d.closed = true
	d.open.close()
	d.mu.Unlock()
	if d.queue == nil {
		return nil
	}
	close(d.queue)
	<-d.done
	useErr := d.lastUse.close()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closeErr != nil {
		return d.closeErr
	}
	return useErr
}
