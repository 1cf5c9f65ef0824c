package index

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"
)

// Build locks: a cache dir may be shared by many processes and hosts (NFS,
// Lustre), and a layer is indexed by one of them at a time. The builder
// creates <cacheDir>/index/<algorithm>/.<hex>.lock with O_EXCL (atomic on
// local file systems and on NFS v3 and later), writes who it is, and
// touches it every lockHeartbeat while it builds; the others wait for the
// file to go, then read the index it stored. A lock whose modification
// time has not changed for lockStale, by the waiter's own clock (so clock
// skew between hosts does not matter), belongs to a builder that died: it
// is removed and the wait goes on as a race for a new lock.
var (
	lockHeartbeat = 2 * time.Second
	lockStale     = 15 * time.Second
	lockPoll      = 100 * time.Millisecond
)

// buildLock is a held build lock.
type buildLock struct {
	path string
	stop chan struct{}
	done chan struct{}
}

// lockBuild returns once this process holds the build lock of the layer
// (nil, nil when the cache dir cannot hold one: the build then goes
// ahead unlocked), or ctx ends. waited reports whether another builder
// held it meanwhile: the caller then looks for the index it stored.
func lockBuild(ctx context.Context, dir, hex string, log *slog.Logger) (l *buildLock, waited bool, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, false, nil
	}
	path := filepath.Join(dir, "."+hex+".lock")
	host, _ := os.Hostname()
	var lastMod time.Time
	lastChange := time.Now()
	announced := false
	for {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err == nil {
			fmt.Fprintf(f, "pid %d on %s since %s\n", os.Getpid(), host, time.Now().UTC().Format(time.RFC3339))
			f.Close()
			l := &buildLock{path: path, stop: make(chan struct{}), done: make(chan struct{})}
			go l.heartbeat()
			return l, waited, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, waited, nil // read-only or odd file system: build unlocked
		}
		st, serr := os.Stat(path)
		switch {
		case errors.Is(serr, fs.ErrNotExist):
			continue // released meanwhile: race for it
		case serr != nil:
			return nil, waited, nil
		case !st.ModTime().Equal(lastMod):
			lastMod, lastChange = st.ModTime(), time.Now()
		case time.Since(lastChange) > lockStale:
			warn(log, "removing a stale index build lock (its builder stopped without releasing it)", "path", path)
			// Rename first, so that of several waiters removing it only one
			// succeeds and none removes a lock taken anew meanwhile.
			stale := fmt.Sprintf("%s.stale-%d", path, os.Getpid())
			if os.Rename(path, stale) == nil {
				os.Remove(stale)
			}
			lastChange = time.Now()
			continue
		}
		waited = true
		if !announced && log != nil {
			log.Info("another process is building this layer's index; waiting for it", "lock", path)
			announced = true
		}
		t := time.NewTimer(lockPoll)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, waited, ctx.Err()
		case <-t.C:
		}
	}
}

// heartbeat touches the lock file until release.
func (l *buildLock) heartbeat() {
	defer close(l.done)
	t := time.NewTicker(lockHeartbeat)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			now := time.Now()
			_ = os.Chtimes(l.path, now, now)
		}
	}
}

// release stops the heartbeat and removes the lock file.
func (l *buildLock) release() {
	if l == nil {
		return
	}
	close(l.stop)
	<-l.done
	os.Remove(l.path)
}
