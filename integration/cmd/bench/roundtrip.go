package main

import (
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// roundTrip is the mean time of one FUSE request to the mount at dir, from
// a process's system call to its answer: statx with AT_STATX_FORCE_SYNC
// makes the kernel send a GETATTR however fresh its attributes are, so n
// calls are n round trips. A cold walk waits at least its requests times
// this, whatever the server does.
func roundTrip(dir string, n int) (time.Duration, error) {
	var sx unix.Statx_t
	start := time.Now()
	for range n {
		if err := unix.Statx(unix.AT_FDCWD, dir, unix.AT_SYMLINK_NOFOLLOW|unix.AT_STATX_FORCE_SYNC, unix.STATX_BASIC_STATS, &sx); err != nil {
			return 0, fmt.Errorf("statx %s: %w", dir, err)
		}
	}
	return time.Since(start) / time.Duration(n), nil
}

func micros(d time.Duration) string {
	return fmt.Sprintf("%.1f µs", float64(d)/float64(time.Microsecond))
}
