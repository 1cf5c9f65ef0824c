package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// baselineTimes is the conventional way to run an image: download it all
// (skopeo copy to an OCI layout), unpack it (umoci), exec. tarTotal is the
// same with `tar -xf` of each layer instead of umoci (a quicker way to get a
// local copy of a tree; on this VM file creation dominates either way).
type baselineTimes struct {
	copy, unpack, exec, total time.Duration
	tarX, tarTotal            time.Duration
	rootfs                    string // umoci's rootfs, else the tar-extracted one
}

// baselineOptions say which baselines to run.
type baselineOptions struct {
	umoci bool // skopeo copy + umoci unpack (the P1/P2 baseline)
	tar   bool // skopeo copy + tar -xf of each layer
	exec  bool // chroot ROOTFS /bin/busybox true after unpacking
	keep  bool // leave the unpacked trees in place (the caller removes them)
}

// baseline copies im with skopeo into WORK/baseline/NAME and unpacks it.
func (b *bench) baseline(ctx context.Context, im *benchImage, o baselineOptions) (baselineTimes, error) {
	var t baselineTimes
	dir, err := freshDir(filepath.Join(b.work, "baseline", im.name))
	if err != nil {
		return t, err
	}
	if !o.keep {
		defer os.RemoveAll(dir)
	}
	oci := filepath.Join(dir, "oci")
	if t.copy, err = run(ctx, nil, "skopeo", "copy", "--quiet", "--src-tls-verify=false", "docker://"+im.ref, "oci:"+oci+":bench"); err != nil {
		return t, err
	}
	execIn := func(rootfs string) (time.Duration, error) {
		if !o.exec {
			return 0, nil
		}
		return run(ctx, nil, "chroot", rootfs, "/bin/busybox", "true")
	}
	var lines []string
	if o.tar {
		root := filepath.Join(dir, "tar-rootfs")
		if err := os.MkdirAll(root, 0o755); err != nil {
			return t, err
		}
		for _, l := range im.layers {
			d, err := run(ctx, nil, "tar", "-xf", filepath.Join(oci, "blobs", l.digest.Algorithm().String(), l.digest.Encoded()), "-C", root)
			if err != nil {
				return t, err
			}
			t.tarX += d
		}
		execD, err := execIn(root)
		if err != nil {
			return t, err
		}
		t.tarTotal = t.copy + t.tarX + execD
		t.rootfs = root
		lines = append(lines, fmt.Sprintf("skopeo copy %s + tar -xf of the layers %s + exec %s = **%s**", secs(t.copy), secs(t.tarX), secs(execD), secs(t.tarTotal)))
	}
	if o.umoci {
		bundle := filepath.Join(dir, "bundle")
		if t.unpack, err = run(ctx, nil, "umoci", "unpack", "--image", oci+":bench", bundle); err != nil {
			return t, err
		}
		t.rootfs = filepath.Join(bundle, "rootfs")
		if t.exec, err = execIn(t.rootfs); err != nil {
			return t, err
		}
		t.total = t.copy + t.unpack + t.exec
		lines = append(lines, fmt.Sprintf("skopeo copy %s + umoci unpack %s + exec %s = **%s**", secs(t.copy), secs(t.unpack), secs(t.exec), secs(t.total)))
	}
	b.detail("- baseline %s: %s", im.name, strings.Join(lines, "; "))
	return t, nil
}

// startOnce mounts im in the background and execs busybox in it: the time
// from nothing to the first command having run.
func (b *bench) startOnce(ctx context.Context, im *benchImage, cacheDir, name string) (total, mountD time.Duration, err error) {
	start := time.Now()
	m, mountD, err := b.mount(ctx, im.ref, cacheDir, name)
	if err != nil {
		return 0, 0, err
	}
	_, execErr := run(ctx, nil, "chroot", m.dir, "/bin/busybox", "true")
	total = time.Since(start)
	_, unmountErr := b.unmount(m)
	if execErr != nil {
		return 0, 0, execErr
	}
	return total, mountD, unmountErr
}

// startRuns repeats startOnce; prepare gives the cache dir of run i.
func (b *bench) startRuns(ctx context.Context, im *benchImage, label string, prepare func(i int) (string, error)) ([]time.Duration, error) {
	var totals []time.Duration
	var lines []string
	for i := range b.repeats {
		cacheDir, err := prepare(i)
		if err != nil {
			return nil, err
		}
		total, mountD, err := b.startOnce(ctx, im, cacheDir, fmt.Sprintf("%s-%d", label, i))
		if err != nil {
			return nil, err
		}
		totals = append(totals, total)
		lines = append(lines, fmt.Sprintf("%s (mount %s)", secs(total), secs(mountD)))
	}
	b.detail("- imgfs %s: mount + exec per run: %v", label, lines)
	return totals, nil
}

// measureStartup: P1 and P2, time to the first exec, against skopeo copy +
// umoci unpack of the same image.
func (b *bench) measureStartup(ctx context.Context) {
	b.detail("### P1/P2: mount + first exec (`chroot MNT /bin/busybox true`)\n")
	gz, es := b.images["py-gzip"], b.images["py-estargz"]
	cacheRoot := filepath.Join(b.work, "cache")

	baseEs, errEs := b.baseline(ctx, es, baselineOptions{umoci: true, exec: true})
	coldCache := func(label string) func(int) (string, error) {
		return func(i int) (string, error) { return freshDir(filepath.Join(cacheRoot, fmt.Sprintf("%s-%d", label, i))) }
	}
	esTimes, err := b.startRuns(ctx, es, "estargz-cold", coldCache("estargz-cold"))
	const p1What = "eStargz image, cold cache: mount + first exec / skopeo copy + umoci unpack"
	switch {
	case errEs != nil:
		b.addError("P1", p1What, fmt.Errorf("baseline: %w", errEs))
	case err != nil:
		b.addError("P1", p1What, err)
	default:
		b.addRatio("P1", p1What, secs(median(esTimes)), secs(baseEs.total), ratioD(median(esTimes), baseEs.total), atMost(0.10))
		b.cacheDirs[es.name] = filepath.Join(cacheRoot, fmt.Sprintf("estargz-cold-%d", b.repeats-1))
	}

	baseGz, errGz := b.baseline(ctx, gz, baselineOptions{umoci: true, exec: true})
	if errGz != nil {
		b.addError("P2", "gzip image (skopeo copy + umoci unpack baseline)", errGz)
		return
	}
	gzTimes, err := b.startRuns(ctx, gz, "gzip-cold", coldCache("gzip-cold"))
	const p2What = "gzip image never seen (indexes built on the way): mount + first exec / skopeo + umoci"
	if err != nil {
		b.addError("P2", p2What, err)
		return
	}
	b.addRatio("P2", p2What, secs(median(gzTimes)), secs(baseGz.total), ratioD(median(gzTimes), baseGz.total), atMost(0.60))

	// The second mount reuses the indexes of the last cold run; only the
	// decoded-span cache is cleared, so data is fetched again.
	cache := filepath.Join(cacheRoot, fmt.Sprintf("gzip-cold-%d", b.repeats-1))
	b.cacheDirs[gz.name] = cache
	secondTimes, err := b.startRuns(ctx, gz, "gzip-second", func(int) (string, error) {
		return cache, os.RemoveAll(filepath.Join(cache, "spans"))
	})
	const secondWhat = "gzip image, second mount (indexes cached, span cache empty) / skopeo + umoci"
	if err != nil {
		b.addError("P1/P2", secondWhat, err)
		return
	}
	b.addRatio("P1/P2", secondWhat, secs(median(secondTimes)), secs(baseGz.total), ratioD(median(secondTimes), baseGz.total), atMost(0.10))
	b.detail("")
}

func ratioD(a, base time.Duration) float64 { return float64(a) / float64(base) }
