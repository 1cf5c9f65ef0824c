package fs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// readerCheckInterval is how often a read that waits (for the network)
// looks whether the process that asked for it is still there.
const readerCheckInterval = 200 * time.Millisecond

// readerContext is the context of one FUSE read. It ends when the process
// that issued the read is gone or dying (it was killed), so that a fetch
// nobody waits for any more is cancelled (see index.Reader), and at its
// deadline (MountOptions.ReadTimeout), so that no read waits on a stalled
// registry for longer than that: it then fails with EIO.
//
// It does not end on a FUSE INTERRUPT alone: the kernel sends one for any
// signal the reader gets, including those it handles and resumes from
// (SIGURG in every Go program, SIGCHLD, SIGALRM), and programs do not
// expect a regular file read to fail with EINTR. An interrupt only makes
// the check happen at once. Reads the kernel issues in the background
// (readahead into the page cache) are never interrupted at all, so the
// reader is also checked every readerCheckInterval while the read waits.
//
// The watch starts only when a read first waits on Done: reads served
// from the cache cost nothing.
type readerContext struct {
	pid       uint32
	interrupt <-chan struct{}
	deadline  time.Time // zero: none
	alive     func(pid uint32) bool

	once    sync.Once
	done    chan struct{}
	stopped chan struct{}
	mu      sync.Mutex
	err     error
}

// errReaderGone is the context's error once the reader has gone.
var errReaderGone = errors.New("the reading process is gone")

// errReadTimeout is the context's error past its deadline.
var errReadTimeout = fmt.Errorf("read timed out: %w", context.DeadlineExceeded)

// newReaderContext is the context of the read fc describes; timeout > 0
// sets its deadline.
func newReaderContext(fc *fuse.Context, timeout time.Duration) *readerContext {
	c := &readerContext{done: make(chan struct{}), stopped: make(chan struct{}), alive: readerAlive}
	if fc != nil {
		c.pid, c.interrupt = fc.Pid, fc.Cancel
	}
	if timeout > 0 {
		c.deadline = time.Now().Add(timeout)
	}
	return c
}

func (c *readerContext) Deadline() (time.Time, bool) { return c.deadline, !c.deadline.IsZero() }
func (c *readerContext) Value(any) any               { return nil }

func (c *readerContext) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *readerContext) Done() <-chan struct{} {
	if c.pid != 0 || !c.deadline.IsZero() {
		c.once.Do(func() { go c.watch() })
	}
	return c.done
}

// stop ends the watch; the read is over.
func (c *readerContext) stop() { close(c.stopped) }

func (c *readerContext) watch() {
	tick := time.NewTicker(readerCheckInterval)
	defer tick.Stop()
	var expired <-chan time.Time
	if !c.deadline.IsZero() {
		t := time.NewTimer(time.Until(c.deadline))
		defer t.Stop()
		expired = t.C
	}
	interrupt := c.interrupt
	for {
		select {
		case <-c.stopped:
			return
		case <-expired:
			c.end(errReadTimeout)
			return
		case <-interrupt:
			interrupt = nil // checked below, then by the ticker
		case <-tick.C:
		}
		if c.pid != 0 && !c.alive(c.pid) {
			c.end(errReaderGone)
			return
		}
	}
}

func (c *readerContext) end(err error) {
	c.mu.Lock()
	c.err = err
	c.mu.Unlock()
	close(c.done)
}

var _ context.Context = (*readerContext)(nil)

// sigkillMask is SIGKILL's bit in the pending-signal masks of
// /proc/<pid>/status.
const sigkillMask = 1 << (9 - 1)

// readerAlive reports whether the thread pid (FUSE names the calling
// thread) exists and is not dying: not a zombie, no SIGKILL pending. When
// /proc cannot tell, it answers yes: a read is never cancelled on a guess.
func readerAlive(pid uint32) bool {
	status, err := os.ReadFile("/proc/" + strconv.FormatUint(uint64(pid), 10) + "/status")
	if errors.Is(err, fs.ErrNotExist) {
		return false
	}
	if err != nil {
		return true
	}
	for _, line := range bytes.Split(status, []byte("\n")) {
		key, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		value = bytes.TrimSpace(value)
		switch string(key) {
		case "State":
			if bytes.HasPrefix(value, []byte("Z")) || bytes.HasPrefix(value, []byte("X")) {
				return false
			}
		case "SigPnd", "ShdPnd":
			if mask, err := strconv.ParseUint(string(value), 16, 64); err == nil && mask&sigkillMask != 0 {
				return false
			}
		}
	}
	return true
}
