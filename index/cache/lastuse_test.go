package cache

import (
	"errors"
	"io/fs"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func TestLastUseIsDurableAcrossRestart(t *testing.T) {
	for _, via := range []string{"Get from memory", "ReadAt from disk"} {
		t.Run(via, func(t *testing.T) {
			dir := t.TempDir()
			size := diskSize("A", 1000)
			c := open(t, Options{Dir: dir})
			putDisk(t, c, "A", span(1000, 'A'), "B", span(1000, 'B'))
			// Written first and, on disk, older: without the use, A would go.
			long := time.Now().Add(-2 * time.Hour)
			setMtime(t, spanPath(dir, "A"), long)
			setMtime(t, spanPath(dir, "B"), long.Add(time.Hour))
			if via == "ReadAt from disk" {
				c.Close()
				c = open(t, Options{Dir: dir})
				if _, ok := c.ReadAt("A", make([]byte, 10), 0); !ok {
					t.Fatal("A missing")
				}
			} else if _, ok := c.Get("A"); !ok {
				t.Fatal("A missing")
			}
			if err := c.Close(); err != nil { // applies the pending last use
				t.Fatal(err)
			}
			if m := mtime(t, spanPath(dir, "A")); time.Since(m) > time.Minute {
				t.Fatalf("A's mtime %v does not record its use", m)
			}

			c = open(t, Options{Dir: dir, DiskBytes: size}) // room for one
			if !c.Contains("A") || c.Contains("B") {
				t.Fatal("eviction after restart did not follow last use")
			}
			if !exists(spanPath(dir, "A")) || exists(spanPath(dir, "B")) {
				t.Fatal("B should be the file evicted")
			}
		})
	}
}

func TestLastUseIsFlushedPeriodically(t *testing.T) {
	dir := t.TempDir()
	c := open(t, Options{Dir: dir, hooks: &hooks{lastUseEvery: 5 * time.Millisecond}})
	putDisk(t, c, "k", span(10, 1))
	long := time.Now().Add(-time.Hour)
	setMtime(t, spanPath(dir, "k"), long)
	c.Get("k")
	deadline := time.Now().Add(5 * time.Second)
	for mtime(t, spanPath(dir, "k")).Equal(long) {
		if time.Now().After(deadline) {
			t.Fatal("last use never reached the file")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestContainsDoesNotUseDiskFiles(t *testing.T) {
	dir := t.TempDir()
	size := diskSize("A", 100)
	var chtimes atomic.Int64
	hk := &hooks{chtimes: func(string, time.Time, time.Time) error { chtimes.Add(1); return nil }}
	c := open(t, Options{Dir: dir, MemoryBytes: 1, DiskBytes: 2 * size, hooks: hk})
	putDisk(t, c, "A", span(100, 'A'), "B", span(100, 'B'))
	mutateFile(t, spanPath(dir, "A"), func(raw []byte) []byte { raw[len(raw)-1] ^= 1; return raw })
	if !c.Contains("A") || !c.Contains("B") || c.Contains("C") {
		t.Fatal("Contains is wrong")
	}
	if !exists(spanPath(dir, "A")) {
		t.Fatal("Contains read the file: it found the damage and removed it")
	}
	c.Put("C", span(100, 'C')) // A is still the least recently used
	waitWrites(t, c)
	if c.Contains("A") || !c.Contains("B") {
		t.Fatal("Contains made A recently used")
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if n := chtimes.Load(); n != 0 {
		t.Fatalf("Contains recorded %d uses", n)
	}
	wantStats(t, c, 0, 0, 0)
}

func TestCloseReportsFailuresToRecordLastUse(t *testing.T) {
	for _, tc := range []struct {
		err  error
		fail bool
	}{
		{syscall.EIO, true},
		{syscall.ENOENT, false}, // evicted meanwhile, maybe by another process
	} {
		dir := t.TempDir()
		hk := &hooks{chtimes: func(name string, _, _ time.Time) error {
			return &fs.PathError{Op: "chtimes", Path: name, Err: tc.err}
		}}
		c := open(t, Options{Dir: dir, hooks: hk})
		putDisk(t, c, "k", span(10, 1))
		c.Get("k")
		err := c.Close()
		if tc.fail != (err != nil) || (err != nil && !errors.Is(err, tc.err)) {
			t.Fatalf("chtimes failing with %v: Close returned %v", tc.err, err)
		}
	}
}
