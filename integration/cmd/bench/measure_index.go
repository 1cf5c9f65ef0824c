package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	kgzip "github.com/klauspost/compress/gzip"
	digest "github.com/opencontainers/go-digest"
)

// measureIndexBuild: P7, `imgfs index` of the python-like image's largest
// gzip layer (streamed from the registry, digest and spans hashed) against
// decoding the same blob with gzip -dc and with Go's compress/gzip.
func (b *bench) measureIndexBuild(ctx context.Context) {
	b.detail("### P7: gzip index build\n")
	if err := b.indexBuild(ctx); err != nil {
		b.addError("P7", "gzip index build", err)
	}
	b.p7Blob = nil
	b.detail("")
}

func (b *bench) indexBuild(ctx context.Context) error {
	im := b.images["py-biglayer"]
	l := b.p7Layer
	var builds, buildCPU []time.Duration
	for i := range b.repeats {
		cache, err := freshDir(filepath.Join(b.work, "cache", fmt.Sprintf("p7-%d", i)))
		if err != nil {
			return err
		}
		d, cpu, err := runCPU(ctx, nil, b.imgfsBin, "--plain-http", "--cache-dir", cache, "index", im.ref)
		if err != nil {
			return err
		}
		builds, buildCPU = append(builds, d), append(buildCPU, cpu)
		b.cacheDirs[im.name] = cache
	}
	local := filepath.Join(b.work, "local", "p7-layer.gz")
	if err := os.WriteFile(local, b.p7Blob, 0o644); err != nil {
		return err
	}
	var gzipDc, gzipCPU []time.Duration
	for range b.repeats {
		d, cpu, err := runCPU(ctx, io.Discard, "gzip", "-dc", local)
		if err != nil {
			return err
		}
		gzipDc, gzipCPU = append(gzipDc, d), append(gzipCPU, cpu)
	}
	cpuStart := selfCPU()
	goMBps, err := goGzipDecodeMBps(b.p7Blob, int(l.tarSize), b.repeats)
	if err != nil {
		return err
	}
	goCPU := (selfCPU() - cpuStart) / time.Duration(b.repeats)
	kMBps, err := klauspostDecodeMBps(b.p7Blob, l.tarSize, b.repeats)
	if err != nil {
		return err
	}
	imgfsMBps := mbps(l.tarSize, median(builds))
	gzipMBps := mbps(l.tarSize, median(gzipDc))
	what := fmt.Sprintf("`imgfs index` of a %s gzip layer (%d entries, from the registry) / Go compress/gzip decode of the blob in memory", mib(l.tarSize), l.entries)
	b.addRatio("P7", what, fmt.Sprintf("%.0f MB/s", imgfsMBps), fmt.Sprintf("%.0f MB/s", goMBps), imgfsMBps/goMBps, atLeast(0.8))
	b.addInfo("P7", "same / `gzip -dc blob > /dev/null` (GNU gzip 1.12)", fmt.Sprintf("%.0f MB/s", imgfsMBps), fmt.Sprintf("%.0f MB/s", gzipMBps), imgfsMBps/gzipMBps)
	// CPU time per output byte is steadier than wall time when other work
	// shares the cores; the index build is also spread over several threads.
	imgfsCPUMBps, goCPUMBps := mbps(l.tarSize, median(buildCPU)), mbps(l.tarSize, goCPU)
	b.addInfo("P7", "same in CPU time: index build MB per CPU-second / Go compress/gzip MB per CPU-second",
		fmt.Sprintf("%.0f MB/cpu-s", imgfsCPUMBps), fmt.Sprintf("%.0f MB/cpu-s", goCPUMBps), imgfsCPUMBps/goCPUMBps)
	b.detail("- layer %s: %s compressed, %s uncompressed; `imgfs index` runs (process start, manifest, stream, index written): %s",
		shortDigest(l.digest.String()), mib(l.blobSize), mib(l.tarSize), spread(builds))
	b.detail("- CPU time of `imgfs index`: %s; of `gzip -dc`: %s; of one Go compress/gzip decode: %s",
		spread(buildCPU), spread(gzipCPU), secs(goCPU))
	b.detail("- `gzip -dc`: %s; Go compress/gzip (best of %d): %.0f MB/s; klauspost/compress gzip (best of %d): %.0f MB/s (output bytes per second)",
		spread(gzipDc), b.repeats, goMBps, b.repeats, kMBps)
	return nil
}

// klauspostDecodeMBps is goGzipDecodeMBps with klauspost/compress's gzip.
func klauspostDecodeMBps(blob []byte, usize int64, repeats int) (float64, error) {
	return bestDecodeMBps(blob, usize, repeats, func(r io.Reader) (io.Reader, error) { return kgzip.NewReader(r) })
}

// measureIndexSizes: the P7 size bound, index file ≤ 1% of the layer's
// uncompressed size + 128 B per entry, for every index this run built.
func (b *bench) measureIndexSizes(ctx context.Context) {
	b.detail("### Index sizes (P7 bound: ≤ 1%% of uncompressed + 128 B per entry)\n")
	b.detail("| image | layer | format | entries | uncompressed | index file | %% of uncompressed | index B/entry | budget | |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	names := make([]string, 0, len(b.cacheDirs))
	for name := range b.cacheDirs {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		im := b.images[name]
		var size, budget, tarSize int64
		var missing []string
		for i, l := range im.layers {
			st, err := os.Stat(indexPath(b.cacheDirs[name], l.digest))
			if err != nil {
				missing = append(missing, fmt.Sprintf("layer %d: no index file", i+1))
				continue
			}
			lb := l.tarSize/100 + 128*int64(l.entries)
			size += st.Size()
			budget += lb
			tarSize += l.tarSize
			b.detail("| %s | %d %s | %s | %d | %s | %.1f KiB | %.3f%% | %.1f | %.1f KiB | %s |", name, i+1, shortDigest(l.digest.String()), l.compression,
				l.entries, mib(l.tarSize), float64(st.Size())/1024, 100*float64(st.Size())/float64(l.tarSize),
				float64(st.Size())/float64(l.entries), float64(lb)/1024, atMost(1).status(float64(st.Size())/float64(lb)))
		}
		if len(missing) > 0 {
			b.addError("P7", name+" index size", fmt.Errorf("%v", missing))
			continue
		}
		b.addRatio("P7", name+": index files / (1% of uncompressed + 128 B × entries)",
			fmt.Sprintf("%.1f KiB", float64(size)/1024), fmt.Sprintf("%.1f KiB", float64(budget)/1024), float64(size)/float64(budget), atMost(1))
		// The performance issue's bound with checkpoints placed by content.
		b.addRatio("P7", name+": index files / 3% of uncompressed",
			fmt.Sprintf("%.1f KiB", float64(size)/1024), fmt.Sprintf("%.1f KiB", float64(tarSize)*0.03/1024), float64(size)/(float64(tarSize)*0.03), atMost(1))
	}
	b.detail("")
}

func shortDigest(d string) string {
	if len(d) > 19 {
		return d[:19]
	}
	return d
}

// indexPath is where imgfs keeps a layer's index: <hex>.<format>[...] under
// index/<algorithm>/ (see README "Cache"); spelled out here so that the
// bench does not link the index package. Lock files start with a dot.
func indexPath(cacheDir string, d digest.Digest) string {
	matches, _ := filepath.Glob(filepath.Join(cacheDir, "index", d.Algorithm().String(), d.Encoded()+".*"))
	for _, m := range matches {
		if !strings.HasSuffix(m, ".tmp") {
			return m
		}
	}
	return filepath.Join(cacheDir, "index", d.Algorithm().String(), d.Encoded())
}
