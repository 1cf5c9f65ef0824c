package main

import (
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// processCPU is the CPU time all threads of pid have used so far (from
// /proc/PID/task/*/schedstat, in nanoseconds), or 0 if it cannot be read.
// On a machine shared with other work, CPU time per pass says more about
// what a read path costs than its wall time.
func processCPU(pid int) time.Duration {
	tasks, _ := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*/schedstat")
	var total time.Duration
	for _, t := range tasks {
		data, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		f := strings.Fields(string(data))
		if len(f) > 0 {
			ns, _ := strconv.ParseInt(f[0], 10, 64)
			total += time.Duration(ns)
		}
	}
	return total
}

// readFileCPU is readFile that also returns the CPU time the reading thread
// used: the reader's side of a read (the kernel's copies and page cache
// work in read(2)).
func readFileCPU(p string) (int64, time.Duration, time.Duration, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	before := threadCPU()
	n, d, err := readFile(p)
	return n, d, threadCPU() - before, err
}

func threadCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// medianCPU formats the median of CPU times in milliseconds.
func medianCPU(ds []time.Duration) string {
	if len(ds) == 0 {
		return "?"
	}
	return strconv.FormatInt(median(ds).Milliseconds(), 10) + " ms"
}
