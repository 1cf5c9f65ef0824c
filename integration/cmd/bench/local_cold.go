package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// coldLocal is a copy of a local tree in an ext4 image, mounted afresh for
// every walk: a local file system whose dentry and inode caches start
// empty each time (its blocks stay in the page cache, as an imgfs mount's
// index is in memory). Dropping the machine's caches would give the same
// only by disturbing everything else running on it.
type coldLocal struct {
	image, dir string
}

// newColdLocal builds the image of root with mkfs.ext4 -d (no mount
// needed). It needs root and e2fsprogs; the caller reports an error as a
// missing figure.
func (b *bench) newColdLocal(ctx context.Context, root string, entries int) (*coldLocal, error) {
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		return nil, fmt.Errorf("cold local baseline needs mkfs.ext4 (e2fsprogs): %w", err)
	}
	dir := filepath.Join(b.work, "coldlocal")
	if _, err := freshDir(filepath.Join(dir, "mnt")); err != nil {
		return nil, err
	}
	c := &coldLocal{image: filepath.Join(dir, "ext4.img"), dir: filepath.Join(dir, "mnt")}
	f, err := os.Create(c.image)
	if err != nil {
		return nil, err
	}
	// Sparse: only what mkfs writes takes space.
	err = f.Truncate(4 << 30)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	inodes := strconv.Itoa(2*entries + 1024)
	if _, err := run(ctx, nil, "mkfs.ext4", "-q", "-F", "-N", inodes, "-d", root, c.image); err != nil {
		return nil, err
	}
	return c, nil
}

// walk mounts the image, runs one walk of it (cold), and unmounts it.
func (c *coldLocal) walk(ctx context.Context, walk func(dir string) (int, time.Duration, error)) (int, time.Duration, error) {
	if _, err := run(ctx, nil, "mount", "-o", "loop,ro", c.image, c.dir); err != nil {
		return 0, 0, err
	}
	n, d, err := walk(c.dir)
	if _, uerr := run(context.Background(), nil, "umount", c.dir); uerr != nil && err == nil {
		err = uerr
	}
	return n, d, err
}

func (c *coldLocal) remove() { os.RemoveAll(filepath.Dir(c.image)) }

// procCPU is the CPU time (user + system) process pid has used so far,
// from /proc/PID/stat, in clock ticks of 10 ms (USER_HZ is 100 on Linux).
func procCPU(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// "pid (comm) state ppid ...": fields counted after the last ')';
	// utime and stime are fields 14 and 15 of the whole line.
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat: %q", pid, s)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %q", pid, s)
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond, nil
}
