package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// lineCounter counts the lines written to it.
type lineCounter struct{ n int }

func (c *lineCounter) Write(p []byte) (int, error) {
	c.n += bytes.Count(p, []byte{'\n'})
	return len(p), nil
}

// findWalk runs find with a -printf that needs an lstat of every entry
// (size, mode, owner, mtime), like `find -exec stat` without the execs.
func findWalk(ctx context.Context, dir string) (int, time.Duration, error) {
	var c lineCounter
	d, err := run(ctx, &c, "find", dir, "-printf", "%p %s %m %U %G %T@\n")
	return c.n, d, err
}

// measureWalk: P6, find + stat of a 50k-file tree through the mount (cold:
// first walk after mounting; warm: again) against the tree umoci unpacked.
func (b *bench) measureWalk(ctx context.Context) {
	b.detail("### P6: `find DIR -printf '%%p %%s %%m %%U %%G %%T@\\n'` over the 50k-file tree\n")
	if err := b.walk(ctx); err != nil {
		b.addError("P6", "find + stat of 50k files", err)
	}
	b.detail("")
}

func (b *bench) walk(ctx context.Context) error {
	im := b.images["tree50k"]
	// The local tree is extracted with tar: the same tree umoci would
	// write, without umoci's 30+ s of mtree bookkeeping in the run time.
	base, err := b.baseline(ctx, im, baselineOptions{tar: true, keep: true})
	if err != nil {
		return fmt.Errorf("baseline: %w", err)
	}
	defer os.RemoveAll(filepath.Join(b.work, "baseline", im.name))
	// The first walk only warms the local tree's dentry and inode caches.
	localEntries, _, err := findWalk(ctx, base.rootfs)
	if err != nil {
		return err
	}
	coldDisk, coldErr := b.newColdLocal(ctx, base.rootfs, localEntries)
	if coldErr == nil {
		defer coldDisk.remove()
	}

	cache, err := freshDir(filepath.Join(b.work, "cache", im.name))
	if err != nil {
		return err
	}
	if _, err := b.imgfs(ctx, nil, cache, "index", im.ref); err != nil {
		return err
	}
	b.cacheDirs[im.name] = cache
	// Local walks are interleaved with the mount's, so that both sides of
	// a ratio see the same load when other work shares the machine.
	var local, localCold, cold, warm, serverCPU []time.Duration
	localWalk := func() error {
		_, d, err := findWalk(ctx, base.rootfs)
		local = append(local, d)
		return err
	}
	var mountEntries int
	var coldRequests int64 // of a mount that did one cold walk only
	var rtt time.Duration  // of one request, measured on the first mount
	var rttErr error
	for i := range b.repeats {
		if err := localWalk(); err != nil {
			return err
		}
		if coldErr == nil {
			var d time.Duration
			if _, d, coldErr = coldDisk.walk(ctx, func(dir string) (int, time.Duration, error) { return findWalk(ctx, dir) }); coldErr == nil {
				localCold = append(localCold, d)
			}
		}
		m, _, err := b.mount(ctx, im.ref, cache, fmt.Sprintf("walk-%d", i), "--stats")
		if err != nil {
			return err
		}
		cpu0, cpuErr := procCPU(m.pid)
		n, d, walkErr := findWalk(ctx, m.dir)
		if cpu1, err := procCPU(m.pid); cpuErr == nil && err == nil {
			serverCPU = append(serverCPU, cpu1-cpu0)
		}
		cold = append(cold, d)
		mountEntries = n
		for j := 0; walkErr == nil && i == 0 && j < b.repeats; j++ {
			if walkErr = localWalk(); walkErr == nil {
				_, d, walkErr = findWalk(ctx, m.dir)
				warm = append(warm, d)
			}
		}
		if walkErr == nil && i == 0 {
			rtt, rttErr = roundTrip(m.dir, 5000)
		}
		log, err := b.unmount(m)
		if err != nil {
			return err
		}
		if walkErr != nil {
			return walkErr
		}
		if mix, err := parseRequestMix(log); err == nil && i > 0 { // mount 0 also did warm walks
			coldRequests = mix["total"]
		}
	}
	if mountEntries < localEntries {
		return fmt.Errorf("walk saw %d entries through the mount, %d on disk", mountEntries, localEntries)
	}
	l := median(local)
	b.addRatio("P6", fmt.Sprintf("find + lstat of %d entries through the mount, cold (first walk after mount) / on local disk (extracted, warm)", mountEntries),
		secs(median(cold)), secs(l), ratioD(median(cold), l), atMost(1.5))
	b.addRatio("P6", "same, warm (second walk, kernel caches filled) / local disk",
		secs(median(warm)), secs(l), ratioD(median(warm), l), atMost(1.5))
	if coldErr != nil {
		b.addError("P6", "cold local baseline (ext4 image)", coldErr)
	} else {
		lc := median(localCold)
		b.addInfo("P6", "same, cold / local disk cold (the tree in an ext4 image, mounted afresh for each walk)",
			secs(median(cold)), secs(lc), ratioD(median(cold), lc))
	}
	b.detail("- local (%d entries, interleaved with the mount's walks): %s; local cold (ext4 image mounted afresh): %s; mount cold (%d entries, the synthesized /.singularity.d and stubs included): %s; warm: %s",
		localEntries, spread(local), spread(localCold), mountEntries, spread(cold), spread(warm))
	b.detail("- mount server CPU per cold walk: %s", spread(serverCPU))
	switch {
	case rttErr != nil:
		b.detail("- round trip of one request: %v", rttErr)
	case coldRequests > 0:
		b.detail("- a cold walk sends %d requests; one round trip (statx with AT_STATX_FORCE_SYNC, a GETATTR each, on the mount after the walks) takes %s: %s of the cold walk is waiting for answers, whatever the server does",
			coldRequests, micros(rtt), secs(rtt*time.Duration(coldRequests)))
	}
	return nil
}
