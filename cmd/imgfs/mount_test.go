package main

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"
)

// busyMount fails its first unmounts as a busy mount does, then ends.
type busyMount struct {
	mu        sync.Mutex
	busyTries int
	attempts  int
	stopped   chan struct{}
}

func (m *busyMount) Unmount() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.attempts++
	if m.attempts <= m.busyTries {
		return errors.New("device or resource busy")
	}
	close(m.stopped)
	return nil
}

func (m *busyMount) Wait() { <-m.stopped }

// TestSignalOnBusyMountKeepsServing: a signal whose unmount finds the
// mount busy must neither end the server (the mount would stay with no one
// serving it) nor make later signals useless: the next one tries again.
func TestSignalOnBusyMountKeepsServing(t *testing.T) {
	m := &busyMount{busyTries: 1, stopped: make(chan struct{})}
	sigs := make(chan os.Signal, 1)
	done := make(chan struct{})
	go func() {
		serveUntilUnmounted(m, sigs, slog.New(slog.NewTextHandler(io.Discard, nil)))
		close(done)
	}()
	sigs <- os.Interrupt
	select {
	case <-done:
		t.Fatal("serving stopped although the unmount failed")
	case <-time.After(200 * time.Millisecond):
	}
	sigs <- syscall.SIGTERM
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("a second signal did not unmount")
	}
	if m.attempts != 2 {
		t.Fatalf("%d unmount attempts, want 2", m.attempts)
	}
}

// TestUnmountFromOutsideEndsServing: fusermount -u ends the serve loop
// without any signal.
func TestUnmountFromOutsideEndsServing(t *testing.T) {
	m := &busyMount{stopped: make(chan struct{})}
	close(m.stopped)
	done := make(chan struct{})
	go func() {
		serveUntilUnmounted(m, make(chan os.Signal), slog.New(slog.NewTextHandler(io.Discard, nil)))
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("serving did not end with the mount")
	}
}
