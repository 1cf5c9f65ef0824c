package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"
)

// measureReread: P4d, rereads served from the disk cache after a remount
// (the kernel's page cache of the mount is gone) / the same file read from
// local disk with its page cache warm; with, for scale, the same first read
// through a fresh mount of a RAM-served file (the most any cache tier can
// reach through imgfs's FUSE layer) and through FUSE passthrough of the
// local file (what bypassing the FUSE READ path would reach).
func (b *bench) measureReread(ctx context.Context) {
	b.detail("### P4d: rereads from the disk cache after a remount\n")
	if err := b.reread(ctx); err != nil {
		b.addError("P4d", "disk cache rereads", err)
	}
	b.detail("")
}

func (b *bench) reread(ctx context.Context) error {
	im := b.images["big"]
	cache, err := freshDir(filepath.Join(b.work, "cache", "p4d"))
	if err != nil {
		return err
	}
	const file = "data/big-gz.bin"
	m, _, err := b.mount(ctx, im.ref, cache, "p4d")
	if err != nil {
		return err
	}
	if _, _, err := readFile(filepath.Join(m.dir, file)); err != nil { // fills the disk cache
		b.unmount(m)
		return err
	}
	if _, err := b.unmount(m); err != nil {
		return err
	}
	local := filepath.Join(b.work, "local", "big-gz.bin")
	readFile(local) // warm its page cache
	var mountDs, localDs, ceilingDs, passDs []time.Duration
	var serverCPU, readerCPU, localCPU, ceilingServerCPU, ceilingReaderCPU []time.Duration
	var passErr error
	var size int64
	var fetched []string
	// Each repeat takes every measurement once, so that a busy spell of the
	// machine weighs on all of them alike.
	for i := 0; i < b.repeats; i++ {
		m, _, err := b.mount(ctx, im.ref, cache, "p4d", "--stats")
		if err != nil {
			return err
		}
		cpu := processCPU(m.pid)
		n, d, rcpu, err := readFileCPU(filepath.Join(m.dir, file))
		serverCPU, readerCPU = append(serverCPU, processCPU(m.pid)-cpu), append(readerCPU, rcpu)
		log, uerr := b.unmount(m)
		if err == nil {
			err = uerr
		}
		if err != nil {
			return err
		}
		if st, err := parseStats(log); err == nil {
			fetched = append(fetched, mib(st.bytes))
		}
		size = n
		mountDs = append(mountDs, d)
		_, ld, lcpu, err := readFileCPU(local)
		if err != nil {
			return err
		}
		localDs, localCPU = append(localDs, ld), append(localCPU, lcpu)
		rp, err := b.refRead(refRAM, size, false, "-size", fmt.Sprint(size))
		if err != nil {
			return err
		}
		ceilingDs = append(ceilingDs, rp.cold)
		ceilingServerCPU, ceilingReaderCPU = append(ceilingServerCPU, rp.serverCPU), append(ceilingReaderCPU, rp.readerCPU)
		if passErr == nil {
			rp, err := b.refRead(refPassthrough, size, false, "-file", local)
			switch {
			case err != nil:
				passErr = err
			case rp.reads != 0:
				passErr = errNoPassthrough
			default:
				passDs = append(passDs, rp.cold)
			}
		}
	}
	lt := median(localDs)
	rate := func(ds []time.Duration) (string, float64) {
		v := mbps(size, median(ds))
		return fmt.Sprintf("%.0f MB/s", v), v / mbps(size, lt)
	}
	localRate, _ := rate(localDs)
	v, ratio := rate(mountDs)
	b.addRatio("P4d", "first read after a remount (from the file copy as root on Linux 6.9+, else the disk cache; kernel page cache of the mount gone) / local disk, page cache warm",
		v, localRate, ratio, atLeast(0.5))
	v, ratio = rate(ceilingDs)
	b.addInfo("P4d", "ceiling: same first read through a fresh mount of a file served from RAM (imgfs's FUSE layer, one copy per READ, no cache) / local disk",
		v, localRate, ratio)
	b.detail("- %s of a gzip-layer file: through a fresh mount %s (fetched from the registry: %s), local %s", mib(size), spread(mountDs), strings.Join(fetched, ", "), spread(localDs))
	b.detail("- the same size served from RAM through a fresh mount with imgfs's FUSE layer (the ceiling; a server process of its own): %s", spread(ceilingDs))
	b.detail("- CPU per pass (medians): imgfs server %s + reader %s; RAM-served reference server %s + reader %s; local reader %s",
		medianCPU(serverCPU), medianCPU(readerCPU), medianCPU(ceilingServerCPU), medianCPU(ceilingReaderCPU), medianCPU(localCPU))
	switch {
	case errors.Is(passErr, errNoPassthrough):
		b.detail("- FUSE passthrough: %v", passErr)
	case passErr != nil:
		b.addError("P4d", "FUSE passthrough of the local file", passErr)
	default:
		v, ratio = rate(passDs)
		b.addInfo("P4d", "bypass: same first read through a fresh FUSE passthrough mount of the local file (the kernel reads it, no READ reaches a server) / local disk",
			v, localRate, ratio)
		b.detail("- the local file through a fresh FUSE passthrough mount (a go-fuse server process of its own): %s", spread(passDs))
	}
	return nil
}
