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
	var local []time.Duration
	var localEntries int
	for i := range b.repeats + 1 {
		n, d, err := findWalk(ctx, base.rootfs)
		if err != nil {
			return err
		}
		if i > 0 { // the first walk only warms the dentry and inode caches
			local = append(local, d)
		}
		localEntries = n
	}

	cache, err := freshDir(filepath.Join(b.work, "cache", im.name))
	if err != nil {
		return err
	}
	if _, err := b.imgfs(ctx, nil, cache, "index", im.ref); err != nil {
		return err
	}
	b.cacheDirs[im.name] = cache
	var cold, warm []time.Duration
	var mountEntries int
	for i := range b.repeats {
		m, _, err := b.mount(ctx, im.ref, cache, fmt.Sprintf("walk-%d", i))
		if err != nil {
			return err
		}
		n, d, walkErr := findWalk(ctx, m.dir)
		cold = append(cold, d)
		mountEntries = n
		for j := 0; walkErr == nil && i == 0 && j < b.repeats; j++ {
			_, d, walkErr = findWalk(ctx, m.dir)
			warm = append(warm, d)
		}
		if _, err := b.unmount(m); err != nil {
			return err
		}
		if walkErr != nil {
			return walkErr
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
	b.detail("- local (%d entries): %s; mount cold (%d entries, the synthesized /.singularity.d and stubs included): %s; warm: %s",
		localEntries, spread(local), mountEntries, spread(cold), spread(warm))
	return nil
}
