package main

import (
	"fmt"
	"os"
	"runtime/pprof"
)

// startCPUProfile writes a CPU profile of the mount server to the file that
// IMGFS_CPUPROFILE names, until the returned stop runs (at unmount): how
// the read path's time was found for docs/PERFORMANCE.md. An environment
// variable rather than a flag, since it is for developers and reaches a
// --background server unchanged.
func startCPUProfile(getenv func(string) string) (stop func(), err error) {
	path := getenv("IMGFS_CPUPROFILE")
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("IMGFS_CPUPROFILE: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("IMGFS_CPUPROFILE: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
