package cache

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// tmpGrace spares young temporary files at start: the directory may be
// shared, and a young one is likely another process's write in flight. A
// crashed writer's leftovers are older than this by the next start, or the
// one after.
const tmpGrace = time.Minute

// openDiskTier opens the disk tier in dir. It returns nil, nil, after one
// warning, when dir cannot be used at all, and an error only when dir
// exists but cannot be listed, which is a setup problem worth stopping for.
func openDiskTier(dir string, max int64, logger *slog.Logger, hk hooks) (*diskTier, error) {
	dir = filepath.Clean(dir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		logger.Warn("disk cache disabled: cannot create its directory; running memory only", "dir", dir, "err", err)
		return nil, nil
	}
	// Probing once beats discovering it on every write and Chtimes.
	probeErr := hk.probe(dir)
	writable := probeErr == nil
	found, err := scanDir(dir, writable, logger, hk.remove)
	if err != nil {
		return nil, err
	}
	if !writable {
		if len(found) == 0 {
			logger.Warn("disk cache disabled: directory not writable; running memory only", "dir", dir, "err", probeErr)
			return nil, nil
		}
		logger.Warn("disk cache read-only: directory not writable; serving its files, adding none", "dir", dir, "files", len(found), "err", probeErr)
	}
	files, err := newByteLRU[diskFile]()
	if err != nil {
		return nil, err
	}
	kept, err := newOpenFiles(maxOpenFiles)
	if err != nil {
		return nil, err
	}
	d := &diskTier{
		dir:      dir,
		max:      max,
		readOnly: !writable,
		logger:   logger,
		remove:   hk.remove,
		readLog:  warnOnce{logger: logger},
		writeLog: warnOnce{logger: logger},
		files:    files,
		open:     kept,
		queued:   make(map[string]bool),
	}
	d.scratch.New = func() any { return new([]byte) }
	// Oldest first, so that the last added, the most recently used, ends up
	// at the recent end of the LRU.
	for _, f := range found {
		d.files.add(f.name, diskFile{}, f.size)
	}
	if d.readOnly {
		return d, nil
	}
	d.mu.Lock()
	d.evictLocked()
	d.mu.Unlock()
	d.lastUse = newLastUse(hk.lastUseEvery, hk.chtimes, logger)
	d.queue = make(chan diskWrite, pendingWrites)
	d.done = make(chan struct{})
	go d.writer()
	return d, nil
}

// probeWritable reports why no file can be created and removed in dir.
func probeWritable(dir string) error {
	f, err := os.CreateTemp(dir, ".probe-*.tmp")
	if err != nil {
		return err
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}

type foundFile struct {
	name  string
	size  int64
	mtime time.Time
}

// scanDir lists the span files under dir, least recently used first (a
// file's mtime is its last use), and removes stale temporary files when it
// may write. A problem with one entry is logged, once for all of them; one
// with dir itself is returned.
func scanDir(dir string, writable bool, logger *slog.Logger, remove func(string) error) ([]foundFile, error) {
	var found []foundFile
	var skipped int
	var firstErr error
	skip := func(err error) {
		skipped++
		if firstErr == nil {
			firstErr = err
		}
	}
	staleBefore := time.Now().Add(-tmpGrace)
	err := filepath.WalkDir(dir, func(path string, de fs.DirEntry, err error) error {
		if err != nil {
			if path == dir {
				return err
			}
			if !errors.Is(err, fs.ErrNotExist) { // else removed while we walked
				skip(err)
			}
			return nil
		}
		parent := filepath.Dir(path)
		if de.IsDir() {
			if path == dir || (parent == dir && isFanOut(de.Name())) {
				return nil
			}
			if info, err := de.Info(); err == nil && writable && parent == dir && isStaleStaging(de.Name(), info.ModTime()) {
				if err := os.RemoveAll(path); err != nil {
					skip(err)
				}
			}
			return fs.SkipDir // not ours, or a batch being staged
		}
		name := de.Name()
		if strings.HasSuffix(name, ".tmp") {
			if writable {
				if err := removeStale(path, de, staleBefore, remove); err != nil {
					skip(err)
				}
			}
			return nil
		}
		if !de.Type().IsRegular() || !isSpanName(name) || filepath.Dir(parent) != dir || filepath.Base(parent) != name[:2] {
			return nil // not ours, or not where Get would look for it
		}
		info, err := de.Info()
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				skip(err)
			}
			return nil
		}
		found = append(found, foundFile{name: name, size: info.Size(), mtime: info.ModTime()})
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("span cache: scan %s: %w", dir, err)
	}
	if skipped > 0 {
		logger.Warn("span cache: skipped entries it could not read", "dir", dir, "count", skipped, "first_err", firstErr)
	}
	sort.Slice(found, func(i, j int) bool {
		if !found[i].mtime.Equal(found[j].mtime) {
			return found[i].mtime.Before(found[j].mtime)
		}
		return found[i].name < found[j].name
	})
	return found, nil
}

func removeStale(path string, de fs.DirEntry, staleBefore time.Time, remove func(string) error) error {
	info, err := de.Info()
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	if info.ModTime().After(staleBefore) {
		return nil
	}
	if err := remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

func isFanOut(name string) bool { return len(name) == 2 && isLowerHex(name) }

func isSpanName(name string) bool { return len(name) == 64 && isLowerHex(name) }

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
