package main

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	spancache "github.com/imgfs/imgfs/index/cache"
)

// measureMountReady: P8, `mount --background` of a 100k-file image whose
// indexes are cached, until it returns (the mount answers), and the server's
// RSS once the tree has been walked.
func (b *bench) measureMountReady(ctx context.Context) {
	b.detail("### P8: mount ready with cached indexes, 100k files\n")
	if err := b.mountReady(ctx); err != nil {
		b.addError("P8", "mount ready, 100k files", err)
	}
	b.detail("")
}

func (b *bench) mountReady(ctx context.Context) error {
	im := b.images["tree100k"]
	cache, err := freshDir(filepath.Join(b.work, "cache", im.name))
	if err != nil {
		return err
	}
	d, err := b.imgfs(ctx, nil, cache, "index", im.ref)
	if err != nil {
		return err
	}
	b.cacheDirs[im.name] = cache
	b.detail("- `imgfs index` of %d files in %d gzip layers (%s): %s", len(im.files), len(im.layers), mib(im.compressed()), secs(d))
	var ready []time.Duration
	for i := range b.repeats + 2 {
		m, d, err := b.mount(ctx, im.ref, cache, fmt.Sprintf("ready-%d", i))
		if err != nil {
			return err
		}
		ready = append(ready, d)
		if _, err := b.unmount(m); err != nil {
			return err
		}
	}
	med := median(ready)
	b.addRatio("P8", fmt.Sprintf("`mount --background` of %d files, indexes cached, until it returns / 300 ms", len(im.files)),
		secs(med), "300 ms", ratioD(med, 300*time.Millisecond), atMost(1))
	b.detail("- runs (client start, server re-exec, manifest, index load, merge, FUSE mount): %s", spread(ready))

	m, _, err := b.mount(ctx, im.ref, cache, "ready-walk")
	if err != nil {
		return err
	}
	n, walkD, walkErr := findWalk(ctx, m.dir)
	rss, hwm, memErr := memStatus(m.pid)
	if _, err := b.unmount(m); err != nil {
		return err
	}
	if walkErr != nil {
		return walkErr
	}
	if memErr != nil {
		return memErr
	}
	budget := int64(spancache.DefaultMemoryBytes + 100<<20)
	b.addInfo("P8", fmt.Sprintf("server RSS after walking %d entries (no data read) / (default %s memory cache + 100 MiB)", n, mib(spancache.DefaultMemoryBytes)),
		mib(rss), mib(budget), float64(rss)/float64(budget))
	b.detail("- after a cold find of %d entries (%s): RSS %s, peak %s", n, secs(walkD), mib(rss), mib(hwm))
	return nil
}
