package fs

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
)

func TestReaderAlive(t *testing.T) {
	if !readerAlive(uint32(os.Getpid())) {
		t.Fatal("this process is not alive")
	}
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Skip(err)
	}
	pid := uint32(cmd.Process.Pid)
	if !readerAlive(pid) {
		t.Fatal("a sleeping child is not alive")
	}
	cmd.Process.Kill()
	cmd.Wait()
	if readerAlive(pid) {
		t.Fatal("a reaped child is alive")
	}
}

// The context ends when the reader goes, not on an interrupt alone, and
// costs nothing until someone waits on it.
func TestReaderContext(t *testing.T) {
	var alive atomic.Bool
	alive.Store(true)
	var checks atomic.Int32
	interrupt := make(chan struct{})
	c := newReaderContext(&fuse.Context{Caller: fuse.Caller{Pid: 42}, Cancel: interrupt}, 0)
	c.alive = func(pid uint32) bool { checks.Add(1); return alive.Load() }
	time.Sleep(2 * readerCheckInterval)
	if checks.Load() != 0 {
		t.Fatal("checked before anyone waited")
	}
	done := c.Done()
	close(interrupt) // a handled signal: checked at once, the read goes on
	deadline := time.Now().Add(5 * time.Second)
	for checks.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	select {
	case <-done:
		t.Fatal("ended on an interrupt while the reader is alive")
	case <-time.After(readerCheckInterval / 2):
	}
	alive.Store(false)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("did not end once the reader was gone")
	}
	if c.Err() != errReaderGone {
		t.Fatalf("Err %v", c.Err())
	}
	c.stop()
}

func TestReaderContextStops(t *testing.T) {
	c := newReaderContext(&fuse.Context{Caller: fuse.Caller{Pid: 42}}, 0)
	var checks atomic.Int32
	c.alive = func(uint32) bool { checks.Add(1); return true }
	c.Done()
	c.stop()
	time.Sleep(3 * readerCheckInterval)
	if n := checks.Load(); n > 1 {
		t.Fatalf("%d checks after stop", n)
	}
}

func TestReaderContextDeadline(t *testing.T) {
	c := newReaderContext(nil, 100*time.Millisecond)
	defer c.stop()
	if d, ok := c.Deadline(); !ok || time.Until(d) > 100*time.Millisecond {
		t.Fatalf("deadline %v %v", d, ok)
	}
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("no end at the deadline")
	}
	if !errors.Is(c.Err(), context.DeadlineExceeded) {
		t.Fatalf("Err %v", c.Err())
	}
}
