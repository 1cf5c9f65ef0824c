package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// overlayWalk runs, in a private mount namespace, what Apptainer does to a
// directory image: a read-only overlayfs whose lower layers are an empty
// directory and the image (lowerdir=EMPTY:LOWER, redirect_dir=on, no
// upper), then find with an lstat of every entry of /small through it.
// Every call mounts a new overlay, as every `apptainer exec` does, so the
// overlay's own dentry cache starts empty each time.
func (b *bench) overlayWalk(ctx context.Context, lower string) (int, time.Duration, error) {
	dir := filepath.Join(b.work, "overlay")
	empty, target := filepath.Join(dir, "empty"), filepath.Join(dir, "root")
	for _, d := range []string{empty, target} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return 0, 0, err
		}
	}
	const script = `mount -t overlay overlay -o ro,lowerdir="$1":"$2",redirect_dir=on "$3" && exec find "$3/small" -printf '%p %s %m %U %G %T@\n'`
	var c lineCounter
	d, err := run(ctx, &c, "unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", empty, lower, target)
	return c.n, d, err
}

// measureOverlay: P6o, find + lstat of a 50k-file, 5.6k-directory tree
// under Apptainer's overlay, with the mount as the lower layer, against the
// same tree extracted to local disk under the same overlay. Cold: the first
// walk after mounting; warm: later walks on the same mount (each through a
// new overlay). The same walk on the image variant that carries an xattr
// shows what every path costs when the mount cannot tell the kernel that
// there are none. With -apptainer, the real client is timed too.
func (b *bench) measureOverlay(ctx context.Context) {
	b.detail("### P6o: find + lstat under a read-only overlayfs, as Apptainer mounts a directory image\n")
	b.detail("In `unshare --mount`: `mount -t overlay overlay -o ro,lowerdir=EMPTY:DIR,redirect_dir=on ROOT; find ROOT/small -printf '%%p %%s %%m %%U %%G %%T@\\n'`; a new overlay for every walk.\n")
	if err := b.overlay(ctx); err != nil {
		b.addError("P6o", "find + lstat under overlayfs", err)
	}
	b.detail("")
}

func (b *bench) overlay(ctx context.Context) error {
	im, imX := b.images["meta50k"], b.images["meta50k-xattr"]
	base, err := b.baseline(ctx, im, baselineOptions{tar: true, keep: true})
	if err != nil {
		return fmt.Errorf("baseline: %w", err)
	}
	defer os.RemoveAll(filepath.Join(b.work, "baseline", im.name))
	// The first walk only warms the local tree's dentry and inode caches.
	localEntries, _, err := b.overlayWalk(ctx, base.rootfs)
	if err != nil {
		return err
	}
	coldDisk, coldErr := b.newColdLocal(ctx, base.rootfs, 2*localEntries)
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
	var local, localCold, cold, warm []time.Duration
	var mixes []requestMix
	for i := range b.repeats {
		_, d, err := b.overlayWalk(ctx, base.rootfs)
		if err != nil {
			return err
		}
		local = append(local, d)
		if coldErr == nil {
			if _, d, coldErr = coldDisk.walk(ctx, func(dir string) (int, time.Duration, error) { return b.overlayWalk(ctx, dir) }); coldErr == nil {
				localCold = append(localCold, d)
			}
		}
		warmWalks := 0
		if i == 0 {
			warmWalks = b.repeats
		}
		c, w, mix, err := b.overlayRuns(ctx, im, cache, fmt.Sprintf("overlay-%d", i), localEntries, warmWalks)
		if err != nil {
			return err
		}
		cold, warm, mixes = append(cold, c...), append(warm, w...), append(mixes, mix)
	}
	l := median(local)
	b.addRatio("P6o", fmt.Sprintf("find + lstat of %d entries under overlayfs over the mount, cold (first walk after mount) / overlayfs over local disk (warm)", localEntries),
		secs(median(cold)), secs(l), ratioD(median(cold), l), atMost(1.3))
	b.addRatio("P6o", "same, warm (later walks, each through a new overlay, as every `apptainer exec`) / local disk",
		secs(median(warm)), secs(l), ratioD(median(warm), l), atMost(1.3))
	if coldErr != nil {
		b.addError("P6o", "cold local baseline (ext4 image)", coldErr)
	} else {
		lc := median(localCold)
		b.addInfo("P6o", "same, cold / overlayfs over local disk cold (the tree in an ext4 image, mounted afresh for each walk)",
			secs(median(cold)), secs(lc), ratioD(median(cold), lc))
	}
	b.detail("- overlayfs over local disk (interleaved with the mount's walks): %s; over local disk cold (ext4 image mounted afresh): %s; over the mount, cold: %s; warm: %s",
		spread(local), spread(localCold), spread(cold), spread(warm))
	b.describeMixes(mixes, b.repeats)

	// The variant with one xattr'd file: its /small layer is the same blob,
	// so its index is already in the cache dir.
	_, wX, mixX, err := b.overlayRuns(ctx, imX, cache, "overlay-xattr", localEntries, b.repeats)
	if err != nil {
		return err
	}
	b.addInfo("P6o", "same, warm, image with one file carrying security.capability (xattrs served, every probe a request) / local disk",
		secs(median(wX)), secs(l), ratioD(median(wX), l))
	b.detail("- image with an xattr, warm: %s; requests of its mount (a cold and %d warm walks): %s", spread(wX), b.repeats, mixX)

	if b.apptainer != "" {
		if err := b.apptainerFind(ctx, im, cache, base.rootfs); err != nil {
			b.addError("P6o", "apptainer exec find", err)
		}
	}
	return nil
}

// overlayRuns mounts im, walks it once cold and warm more times under a new
// overlay each, unmounts, and returns the times and the mount's request mix.
func (b *bench) overlayRuns(ctx context.Context, im *benchImage, cache, name string, want, warmWalks int) (cold, warm []time.Duration, mix requestMix, err error) {
	m, _, err := b.mount(ctx, im.ref, cache, name, "--stats")
	if err != nil {
		return nil, nil, nil, err
	}
	n, d, walkErr := b.overlayWalk(ctx, m.dir)
	cold = append(cold, d)
	for j := 0; walkErr == nil && j < warmWalks; j++ {
		n, d, walkErr = b.overlayWalk(ctx, m.dir)
		warm = append(warm, d)
	}
	log, err := b.unmount(m)
	if err != nil {
		return nil, nil, nil, err
	}
	if walkErr != nil {
		return nil, nil, nil, walkErr
	}
	if n != want {
		return nil, nil, nil, fmt.Errorf("%s: the walk saw %d entries through the mount, %d on local disk", name, n, want)
	}
	// An imgfs without request counts (an older build) still gets timed.
	mix, _ = parseRequestMix(log)
	return cold, warm, mix, nil
}

// describeMixes writes the request mix of a cold walk (a mount that did
// only that) and of one warm walk (the difference of the first mount, which
// also did warm walks, divided by their number).
func (b *bench) describeMixes(mixes []requestMix, warmWalks int) {
	if len(mixes) < 2 || warmWalks == 0 || mixes[0] == nil {
		b.detail("- requests of the first mount (a cold and %d warm walks): %s", warmWalks, mixes[0])
		return
	}
	warm := requestMix{}
	for k, v := range mixes[0] {
		if d := (v - mixes[1][k]) / int64(warmWalks); d > 0 {
			warm[k] = d
		}
	}
	b.detail("- FUSE requests of a cold walk (mount, walk, unmount): %s", mixes[1])
	b.detail("- FUSE requests of one warm walk: %s", warm)
}

// requestMix is the "fuse requests:" line of `mount --stats`: count by
// request kind, "total" included.
type requestMix map[string]int64

var requestLineRE = regexp.MustCompile(`(?m)^fuse requests: (.*)$`)

func parseRequestMix(log string) (requestMix, error) {
	m := requestLineRE.FindStringSubmatch(log)
	if m == nil {
		return nil, fmt.Errorf("no \"fuse requests:\" line in the server log (imgfs too old?): %s", lastLines(log, 3))
	}
	mix := requestMix{}
	for _, part := range strings.Split(m[1], ", ") {
		name, num, ok := strings.Cut(strings.TrimSpace(part), " ")
		v, err := strconv.ParseInt(num, 10, 64)
		if !ok || err != nil {
			return nil, fmt.Errorf("request count %q in %q", part, m[0])
		}
		mix[name] = v
	}
	return mix, nil
}

// String lists the non-zero counts, largest first, then the total.
func (m requestMix) String() string {
	if m == nil {
		return "not counted (imgfs without request counts)"
	}
	names := make([]string, 0, len(m))
	for k, v := range m {
		if k != "total" && v != 0 {
			names = append(names, k)
		}
	}
	sort.Slice(names, func(i, j int) bool {
		if m[names[i]] != m[names[j]] {
			return m[names[i]] > m[names[j]]
		}
		return names[i] < names[j]
	})
	parts := make([]string, 0, len(names)+1)
	for _, k := range names {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	var total int64
	for k, v := range m {
		if k != "total" {
			total += v
		}
	}
	if t, ok := m["total"]; ok {
		total = t
	}
	return strings.Join(append(parts, fmt.Sprintf("total %d", total)), ", ")
}

// apptainerFind times `apptainer exec DIR find /small` on the mount and on
// the extracted tree used as a sandbox directory: the measurement the
// overlay walk stands for. Never part of make bench (Apptainer is not a
// test dependency); see -apptainer.
func (b *bench) apptainerFind(ctx context.Context, im *benchImage, cache, sandbox string) error {
	find := func(dir string) (int, time.Duration, error) {
		var args []string
		if b.apptainerUser != "" {
			args = append(args, "runuser", "-u", b.apptainerUser, "--", "env", "-u", "APPTAINER_DROP_CAPS", "-u", "APPTAINER_CACHEDIR")
		}
		args = append(args, b.apptainer, "exec", dir, "find", "/small")
		var c lineCounter
		cmd := exec.CommandContext(ctx, args[0], args[1:]...)
		cmd.Dir = "/tmp"
		cmd.Stdout = &c
		var stderr strings.Builder
		cmd.Stderr = &stderr
		start := time.Now()
		err := cmd.Run()
		d := time.Since(start)
		if err != nil {
			return 0, d, fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, lastLines(stderr.String(), 3))
		}
		return c.n, d, nil
	}
	who := "as root"
	if b.apptainerUser != "" {
		who = "as " + b.apptainerUser
	}
	var local []time.Duration
	for i := range b.repeats + 1 {
		_, d, err := find(sandbox)
		if err != nil {
			return err
		}
		if i > 0 {
			local = append(local, d)
		}
	}
	m, _, err := b.mount(ctx, im.ref, cache, "apptainer", "--stats")
	if err != nil {
		return err
	}
	var cold time.Duration
	var warm []time.Duration
	var findErr error
	for i := 0; findErr == nil && i < b.repeats+1; i++ {
		var d time.Duration
		_, d, findErr = find(m.dir)
		if i == 0 {
			cold = d
		} else {
			warm = append(warm, d)
		}
	}
	log, err := b.unmount(m)
	if err != nil {
		return err
	}
	if findErr != nil {
		return findErr
	}
	mix, _ := parseRequestMix(log)
	l := median(local)
	b.addRatio("P6o", fmt.Sprintf("`apptainer exec DIR find /small` %s, warm: the mount / a sandbox directory of the same tree", who),
		secs(median(warm)), secs(l), ratioD(median(warm), l), atMost(1.3))
	b.detail("- `%s exec DIR find /small` %s: sandbox %s; mount cold %s, warm %s; requests of that mount: %s",
		b.apptainer, who, spread(local), secs(cold), spread(warm), mix)
	return nil
}
