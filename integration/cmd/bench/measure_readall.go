package main

import (
	"context"
	"fmt"
	"math"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/imgfs/imgfs/index/cache"
)

// The read-all targets of the performance issue, measured on the python-like
// images: stargz-store's figures on its own eStargz image (a 3-layer python
// image, 66.5 MiB compressed) were 10.7 s, 841 requests and 86 MiB peak RSS
// for a cold read of every file; those are the absolute bounds here (the
// side-by-side run on one image is scripts/stargz-compare).
const (
	stargzReadAllRequests = 841
	stargzReadAllRSS      = 86 << 20
)

// readAllResult is one cold read of every file through a mount.
type readAllResult struct {
	took     time.Duration
	bytes    int64 // tar stream length
	stats    fetchStats
	peakRSS  int64
	blobSize int64
}

// measureReadAll: P9 (eStargz cold read of every file: time, requests,
// bytes, peak RSS) and P10 (a never-seen gzip image: bytes fetched to mount
// and read every file, over its blob bytes).
func (b *bench) measureReadAll(ctx context.Context) {
	b.detail("### P9/P10: cold read of every file (`tar -cf - -C MNT . | wc -c`)\n")
	b.detail("A fresh cache dir each time, default mount settings (memory cache %s, prefetch landmark); fetched bytes and requests from `mount --stats`, peak RSS is the server's VmHWM.\n", mib(cache.DefaultMemoryBytes))
	est := b.images["py-estargz"]
	r, err := b.readAllCold(ctx, est, "p9-estargz")
	if err != nil {
		b.addError("P9", "eStargz cold read of every file", err)
	} else {
		b.addRatio("P9", "py-estargz, cold read of every file: bytes fetched / blob bytes", mib(r.stats.bytes), mib(r.blobSize), float64(r.stats.bytes)/float64(r.blobSize), atMost(1.1))
		b.addRatio("P9", "same: requests / stargz-store's 841 on its image", strconv.FormatInt(r.stats.requests, 10), "841", float64(r.stats.requests)/stargzReadAllRequests, atMost(1))
		b.addRatio("P9", "same: peak RSS / stargz-store's 86 MiB", mib(r.peakRSS), "86 MiB", float64(r.peakRSS)/stargzReadAllRSS, atMost(1))
		b.addInfo("P9", "same: time (MB of tar stream per second)", secs(r.took), fmt.Sprintf("%.0f MB/s", mbps(r.bytes, r.took)), math.NaN())
	}

	gz := b.images["py-gzip"]
	start, err := b.coldStartFetched(ctx, gz)
	if err != nil {
		b.addError("P10", "never-seen gzip cold start", err)
	} else {
		b.addRatio("P10", "py-gzip never seen: bytes fetched to mount and run one command / blob bytes", mib(start.stats.bytes), mib(start.blobSize), float64(start.stats.bytes)/float64(start.blobSize), atMost(1.02))
	}
	r, err = b.readAllCold(ctx, gz, "p10-gzip")
	if err != nil {
		b.addError("P10", "never-seen gzip read of every file", err)
	} else {
		b.addRatio("P10", "py-gzip never seen: bytes fetched to mount and read every file / blob bytes", mib(r.stats.bytes), mib(r.blobSize), float64(r.stats.bytes)/float64(r.blobSize), atMost(1.02))
		b.addInfo("P10", "same: time (MB of tar stream per second)", secs(r.took), fmt.Sprintf("%.0f MB/s", mbps(r.bytes, r.took)), math.NaN())
	}
	b.detail("")
}

// readAllCold mounts im with a fresh cache dir and reads every file with
// tar, sampling the server's RSS.
func (b *bench) readAllCold(ctx context.Context, im *benchImage, name string) (*readAllResult, error) {
	cache, err := freshDir(filepath.Join(b.work, "cache", name))
	if err != nil {
		return nil, err
	}
	m, mountD, err := b.mount(ctx, im.ref, cache, name, "--stats")
	if err != nil {
		return nil, err
	}
	start := time.Now()
	out, err := exec.CommandContext(ctx, "sh", "-c", "tar -cf - -C "+m.dir+" . | wc -c").Output()
	took := time.Since(start)
	_, hwm, _ := memStatus(m.pid)
	log, uerr := b.unmount(m)
	if err != nil {
		return nil, fmt.Errorf("tar: %w", err)
	}
	if uerr != nil {
		return nil, uerr
	}
	st, err := parseStats(log)
	if err != nil {
		return nil, err
	}
	n, _ := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	r := &readAllResult{took: took, bytes: n, stats: st, peakRSS: hwm, blobSize: im.compressed()}
	b.detail("- %s: mount %s, read of every file %s (%s of tar stream), fetched %s in %d requests (blobs %s), server peak RSS %s",
		im.name, secs(mountD), secs(took), mib(n), mib(st.bytes), st.requests, mib(r.blobSize), mib(hwm))
	b.detail("\n```\n%s\n```\n", st.text)
	return r, nil
}

// coldStartFetched mounts a never-seen image and runs one command: what
// that fetched (the index builds included).
func (b *bench) coldStartFetched(ctx context.Context, im *benchImage) (*readAllResult, error) {
	name := "p10-start"
	cache, err := freshDir(filepath.Join(b.work, "cache", name))
	if err != nil {
		return nil, err
	}
	m, _, err := b.mount(ctx, im.ref, cache, name, "--stats")
	if err != nil {
		return nil, err
	}
	_, err = run(ctx, nil, "chroot", m.dir, "/bin/busybox", "true")
	log, uerr := b.unmount(m)
	if err != nil {
		return nil, err
	}
	if uerr != nil {
		return nil, uerr
	}
	st, err := parseStats(log)
	if err != nil {
		return nil, err
	}
	b.detail("- %s never seen, mount + `chroot MNT /bin/busybox true`: fetched %s in %d requests (blobs %s)", im.name, mib(st.bytes), st.requests, mib(im.compressed()))
	return &readAllResult{stats: st, blobSize: im.compressed()}, nil
}
