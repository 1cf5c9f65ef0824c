package cache

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"sync"
	"time"
)

// lastUse makes a span file's mtime mean "last used", which is what eviction
// after a restart and "imgfs cache prune" read. A hit is only noted in
// memory; the times are applied in one batch every period and on close, so
// a hot span costs one os.Chtimes per period, not one per read.
type lastUse struct {
	chtimes func(name string, atime, mtime time.Time) error
	log     warnOnce

	mu      sync.Mutex
	pending map[string]time.Time // file path: time of its last use
	closed  bool

	stop chan struct{}
	done chan struct{}
}

func newLastUse(every time.Duration, chtimes func(string, time.Time, time.Time) error, logger *slog.Logger) *lastUse {
	u := &lastUse{
		chtimes: chtimes,
		log:     warnOnce{logger: logger},
		pending: make(map[string]time.Time),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	go u.loop(every)
	return u
}

func (u *lastUse) loop(every time.Duration) {
	defer close(u.done)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			if err := u.flush(); err != nil {
				u.log.log("span cache: cannot record last use", "err", err)
			}
		case <-u.stop:
			return
		}
	}
}

func (u *lastUse) touch(path string, t time.Time) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if !u.closed {
		u.pending[path] = t
	}
}

// forget drops a pending update of a removed file, so that it does not land
// on a later file of the same name.
func (u *lastUse) forget(path string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	delete(u.pending, path)
}

// flush applies the pending times and returns the first failure. A file gone
// meanwhile (evicted, maybe by another process) is not one.
func (u *lastUse) flush() error {
	u.mu.Lock()
	batch := u.pending
	u.pending = make(map[string]time.Time)
	u.mu.Unlock()
	var first error
	failed := 0
	for path, t := range batch {
		// A zero atime leaves it alone: only mtime carries the last use.
		err := u.chtimes(path, time.Time{}, t)
		if err == nil || errors.Is(err, fs.ErrNotExist) {
			continue
		}
		failed++
		if first == nil {
			first = err
		}
	}
	if first != nil {
		return fmt.Errorf("span cache: record last use of %d files: %w", failed, first)
	}
	return nil
}

// close stops the periodic updates and applies what is pending.
func (u *lastUse) close() error {
	close(u.stop)
	<-u.done
	u.mu.Lock()
	u.closed = true
	u.mu.Unlock()
	return u.flush()
}
