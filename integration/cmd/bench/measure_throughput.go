package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// bigMemoryCache is the --memory-cache of the P4/P5 mount: well below the
// 400 MiB read through it, so that the RSS bound of P8 is tested.
const bigMemoryCache = 64 << 20

// measureThroughput: P4 (warm sequential read vs local disk), P5 (cold
// reads of an uncompressed and a gzip layer) and the P8 RSS bound.
func (b *bench) measureThroughput(ctx context.Context) {
	b.detail("### P4/P5: sequential reads of %s files (1 MiB reads, like dd bs=1M)\n", mib(int64(b.bigSize)))
	if err := b.throughput(ctx); err != nil {
		b.addError("P4/P5", "big-file reads", err)
	}
	b.detail("")
}

func (b *bench) throughput(ctx context.Context) error {
	im := b.images["big"]
	cache, err := freshDir(filepath.Join(b.work, "cache", "big"))
	if err != nil {
		return err
	}
	d, err := b.imgfs(ctx, nil, cache, "index", im.ref)
	if err != nil {
		return err
	}
	b.cacheDirs[im.name] = cache
	b.detail("- `imgfs index` (tar headers walked, %s gzip layer streamed once): %s", mib(im.layers[1].blobSize), secs(d))

	m, _, err := b.mount(ctx, im.ref, cache, "big", "--memory-cache", fmt.Sprint(bigMemoryCache))
	if err != nil {
		return err
	}
	raw, gz := filepath.Join(m.dir, "data/big-raw.bin"), filepath.Join(m.dir, "data/big-gz.bin")
	var reads []func() error
	var rawCold, gzCold time.Duration
	var rawWarm, gzWarm []time.Duration
	var rawCPU, gzCPU coldCPU
	timed := func(p string, into *time.Duration, list *[]time.Duration, cpu *coldCPU) func() error {
		return func() error {
			server, registry := processCPU(m.pid), processCPU(b.registryPID)
			n, d, reader, err := readFileCPU(p)
			if err == nil && n != int64(b.bigSize) {
				err = fmt.Errorf("%s: read %d bytes, want %d", p, n, b.bigSize)
			}
			if cpu != nil {
				*cpu = coldCPU{server: processCPU(m.pid) - server, registry: processCPU(b.registryPID) - registry, reader: reader}
			}
			if into != nil {
				*into = d
			} else {
				*list = append(*list, d)
			}
			return err
		}
	}
	reads = append(reads, timed(raw, &rawCold, nil, &rawCPU), timed(gz, &gzCold, nil, &gzCPU))
	for range b.repeats {
		reads = append(reads, timed(gz, nil, &gzWarm, nil), timed(raw, nil, &rawWarm, nil))
	}
	var readErr error
	for _, r := range reads {
		if readErr = r(); readErr != nil {
			break
		}
	}
	if readErr == nil {
		readErr = verifyFile(raw, b.bigRawSum)
	}
	if readErr == nil {
		readErr = verifyFile(gz, b.bigGzSum)
	}
	rss, hwm, memErr := memStatus(m.pid)
	_, unmountErr := b.unmount(m)
	if readErr != nil {
		return readErr
	}
	if unmountErr != nil {
		return unmountErr
	}

	// Local disk: the same bytes, page cache warm, same reader.
	local := filepath.Join(b.work, "local", "big-gz.bin")
	var localTimes []time.Duration
	for i := range b.repeats + 1 {
		_, d, err := readFile(local)
		if err != nil {
			return err
		}
		if i > 0 { // the first read only warms the page cache
			localTimes = append(localTimes, d)
		}
	}
	size := int64(b.bigSize)
	// For scale: a warm read through a mount whose server does nothing
	// (the file served from RAM, read twice per fresh mount): warm reads
	// are the kernel's page cache of the mount, whatever the server.
	var ceilingWarm []time.Duration
	for range b.repeats {
		rp, err := b.refRead(refRAM, size, true, "-size", fmt.Sprint(size))
		if err != nil {
			return err
		}
		ceilingWarm = append(ceilingWarm, rp.warm)
	}
	localMBps := mbps(size, median(localTimes))
	gzWarmMBps, rawWarmMBps := mbps(size, median(gzWarm)), mbps(size, median(rawWarm))
	ceilingMBps := mbps(size, median(ceilingWarm))
	b.addRatio("P4", "warm sequential read through the mount (gzip layer, 2nd+ read) / same file on local disk, page cache warm",
		fmt.Sprintf("%.0f MB/s", gzWarmMBps), fmt.Sprintf("%.0f MB/s", localMBps), gzWarmMBps/localMBps, atLeast(0.8))
	b.addInfo("P4", "warm sequential read through the mount (uncompressed layer) / local disk",
		fmt.Sprintf("%.0f MB/s", rawWarmMBps), fmt.Sprintf("%.0f MB/s", localMBps), rawWarmMBps/localMBps)
	b.addInfo("P4", "ceiling: 2nd read through a fresh mount of a file served from RAM (imgfs's FUSE layer) / local disk",
		fmt.Sprintf("%.0f MB/s", ceilingMBps), fmt.Sprintf("%.0f MB/s", localMBps), ceilingMBps/localMBps)

	rawColdMBps, gzColdMBps := mbps(size, rawCold), mbps(size, gzCold)
	b.addRatio("P5", "cold read, uncompressed tar layer from the loopback registry / 1 GB/s",
		fmt.Sprintf("%.0f MB/s", rawColdMBps), "1000 MB/s", rawColdMBps/1000, atLeast(1))

	goMBps, err := goGzipDecodeMBps(b.bigGzBlob, int(im.layers[1].tarSize), b.repeats)
	if err != nil {
		return err
	}
	b.addRatio("P5", fmt.Sprintf("cold read, gzip layer / one-core Go compress/gzip decode of the same blob (parallel inflate on %d cores)", runtime.NumCPU()),
		fmt.Sprintf("%.0f MB/s", gzColdMBps), fmt.Sprintf("%.0f MB/s", goMBps), gzColdMBps/goMBps, atLeast(1.7))
	// Why the cold ratios stop where they do: the CPU every process spent
	// on the pass, against the cores there are. With the registry on the
	// same machine, its share counts too.
	for _, c := range []struct {
		name string
		cpu  coldCPU
		took time.Duration
	}{{"uncompressed", rawCPU, rawCold}, {"gzip", gzCPU, gzCold}} {
		total := c.cpu.server + c.cpu.registry + c.cpu.reader
		floor := total / time.Duration(runtime.NumCPU())
		b.addInfo("P5", fmt.Sprintf("cold read, %s layer: CPU of server + registry + reader / wall time (%d cores: at most %d)", c.name, runtime.NumCPU(), runtime.NumCPU()),
			fmt.Sprintf("%s + %s + %s", secs(c.cpu.server), secs(c.cpu.registry), secs(c.cpu.reader)), secs(c.took), total.Seconds()/c.took.Seconds())
		b.detail("- cold %s pass: server CPU %s, registry CPU %s, reading thread %s; with every core busy the pass could take no less than %s (%.0f MB/s)",
			c.name, secs(c.cpu.server), secs(c.cpu.registry), secs(c.cpu.reader), secs(floor), mbps(size, floor))
	}

	budget := int64(bigMemoryCache + 100<<20)
	if memErr != nil {
		b.addError("P8", "server RSS after reading", memErr)
	} else {
		b.addRatio("P8", fmt.Sprintf("server RSS after reading 2 × %s with --memory-cache %s / (memory cache + 100 MiB)", mib(size), mib(bigMemoryCache)),
			mib(rss), mib(budget), float64(rss)/float64(budget), atMost(1))
	}
	b.detail("- cold: uncompressed layer %s (%.0f MB/s), gzip layer %s (%.0f MB/s); Go compress/gzip decode of the gzip blob in memory: %.0f MB/s",
		secs(rawCold), rawColdMBps, secs(gzCold), gzColdMBps, goMBps)
	b.detail("- warm through the mount: gzip-layer file %s, uncompressed-layer file %s; local disk %s; RAM-served reference mount %s",
		spread(gzWarm), spread(rawWarm), spread(localTimes), spread(ceilingWarm))
	b.detail("- mount server after the reads: RSS %s, peak RSS (VmHWM) %s, --memory-cache %s", mib(rss), mib(hwm), mib(bigMemoryCache))
	b.bigGzBlob = nil
	b.measureRegistryCeiling(ctx, im)
	return nil
}

// measureRegistryCeiling reads the uncompressed blob straight from the
// registry with range requests of several sizes, for scale: the FUSE reads
// imgfs receives are 128 KiB (the kernel's readahead window).
func (b *bench) measureRegistryCeiling(ctx context.Context, im *benchImage) {
	blob := im.layers[0]
	var ceiling []string
	best := 0.0
	for _, plan := range []rangePlan{{chunk: 128 << 10, parallel: 1, limit: 32 << 20}, {chunk: 1 << 20, parallel: 1, limit: 64 << 20},
		{chunk: 4 << 20, parallel: 2, limit: blob.blobSize}, {chunk: 16 << 20, parallel: 2, limit: blob.blobSize}} {
		plan.limit = min(plan.limit, blob.blobSize)
		r, err := b.registryRangeMBps(ctx, "bench/big", blob.digest, plan)
		if err != nil {
			b.addError("P5", "registry range-read ceiling", err)
			return
		}
		best = max(best, r)
		ceiling = append(ceiling, fmt.Sprintf("%d KiB × %d in flight: %.0f MB/s", plan.chunk>>10, plan.parallel, r))
	}
	b.addInfo("P5", "registry ceiling: best plain HTTP range-read rate of the uncompressed blob (no imgfs) / 1 GB/s",
		fmt.Sprintf("%.0f MB/s", best), "1000 MB/s", best/1000)
	b.detail("- the registry alone, range reads of the uncompressed blob: %s", strings.Join(ceiling, "; "))
}

// verifyFile checks a file read through the mount against the generated
// content: throughput of wrong bytes would be worthless.
func verifyFile(p string, want [32]byte) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyBuffer(h, f, make([]byte, 1<<20)); err != nil {
		return fmt.Errorf("verify %s: %w", p, err)
	}
	if !bytes.Equal(h.Sum(nil), want[:]) {
		return fmt.Errorf("verify %s: content differs from what was pushed", p)
	}
	return nil
}

// goGzipDecodeMBps decodes blob with compress/gzip (one core) and returns
// the best output rate of the repeats.
func goGzipDecodeMBps(blob []byte, usize, repeats int) (float64, error) {
	if blob == nil {
		return 0, fmt.Errorf("gzip blob not kept")
	}
	return bestDecodeMBps(blob, int64(usize), repeats, func(r io.Reader) (io.Reader, error) { return gzip.NewReader(r) })
}

// bestDecodeMBps decodes blob repeats times with the reader newReader makes
// and returns the best rate of usize output bytes.
func bestDecodeMBps(blob []byte, usize int64, repeats int, newReader func(io.Reader) (io.Reader, error)) (float64, error) {
	var best time.Duration
	for range repeats {
		start := time.Now()
		zr, err := newReader(bytes.NewReader(blob))
		if err != nil {
			return 0, err
		}
		if _, err := io.Copy(io.Discard, zr); err != nil {
			return 0, err
		}
		if d := time.Since(start); best == 0 || d < best {
			best = d
		}
	}
	return mbps(usize, best), nil
}

// coldCPU is the CPU a cold pass cost each process involved.
type coldCPU struct{ server, registry, reader time.Duration }
