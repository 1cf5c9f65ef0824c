// Command bench measures imgfs against its performance targets (P1-P8 of
// DESIGN.md) in one run, every figure as a ratio against a baseline taken
// on the same machine in the same run, and writes a markdown report.
//
// It expects a running registry and a built imgfs; scripts/bench.sh starts
// the registry, builds both programs, and cleans everything up:
//
//	scripts/bench.sh                      (or: make bench)
//	go run ./integration/cmd/bench -registry 127.0.0.1:5000 -imgfs bin/imgfs -work /tmp/w -report r.md
//
// It generates deterministic images (python-like gzip and eStargz, a 50k
// and a 100k file tree, a 200 MiB file in an uncompressed and in a gzip
// layer), pushes them, and compares imgfs with skopeo copy + umoci unpack,
// local disk, gzip -dc and Go's compress/gzip. Exec measurements chroot,
// so run it as root (it says so otherwise).
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/imgfs/imgfs/integration"
)

type bench struct {
	registry string // 127.0.0.1:PORT
	imgfsBin string
	work     string
	scale    float64
	bigSize  int // bytes of each P4/P5 file
	repeats  int
	command  string

	images     map[string]*benchImage
	imageOrder []string
	cacheDirs  map[string]string // image name -> a cache dir holding its indexes

	bigRawSum, bigGzSum [32]byte // sha256 of the P4/P5 files
	p7Blob              []byte   // the big gzip layer indexed in P7
	p7Layer             layerInfo
	bigGzBlob           []byte // the P4/P5 gzip layer, for the one-core decode baseline

	phases    []string // how long each phase took, and the load then
	results   []result
	details   []string
	facts     []string
	loadStart string
}

func main() {
	b := &bench{images: map[string]*benchImage{}, cacheDirs: map[string]string{}}
	flag.StringVar(&b.registry, "registry", "", "registry host:port to push to and mount from (required)")
	flag.StringVar(&b.imgfsBin, "imgfs", "bin/imgfs", "imgfs binary")
	flag.StringVar(&b.work, "work", "", "scratch directory (required; mounts, caches, unpacked images)")
	flag.Float64Var(&b.scale, "scale", 0.8, "scale file counts and big files of the python-like image (1: ~30k files, ~420 MiB)")
	bigMiB := flag.Int("big-mib", 200, "size of each P4/P5 file in MiB")
	flag.IntVar(&b.repeats, "repeats", 3, "repeats of each imgfs timing (the median is reported)")
	report := flag.String("report", "bench-report.md", "markdown report to write")
	flag.Parse()
	if b.registry == "" || b.work == "" {
		fmt.Fprintln(os.Stderr, "bench: -registry and -work are required (scripts/bench.sh sets them)")
		os.Exit(2)
	}
	b.bigSize = *bigMiB << 20
	b.command = fmt.Sprintf("integration/cmd/bench -scale %s -big-mib %d -repeats %d", trimFloat(b.scale), *bigMiB, b.repeats)
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})))
	var err error
	if b.imgfsBin, err = filepath.Abs(b.imgfsBin); err != nil {
		fatal(err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	started := time.Now()
	b.loadStart = loadAverage()
	b.facts = machineFacts(b.imgfsBin)
	if os.Geteuid() != 0 {
		fatal(fmt.Errorf("run as root: the exec measurements chroot into the mount and unpacked bundles"))
	}

	if err := b.setup(ctx); err != nil {
		fatal(err)
	}
	b.phases = append(b.phases, fmt.Sprintf("setup (generate, encode, push): %s (load average after: %s)", secs(time.Since(started)), loadAverage()))
	phases := []struct {
		name string
		run  func(context.Context)
	}{
		{"P1/P2 mount + first exec", b.measureStartup},
		{"P3 bytes fetched", b.measureFetched},
		{"P4/P5 read throughput", b.measureThroughput},
		{"P6 find + stat", b.measureWalk},
		{"P7 index build", b.measureIndexBuild},
		{"P8 mount ready, 100k files", b.measureMountReady},
		{"index sizes", b.measureIndexSizes},
	}
	for _, p := range phases {
		if ctx.Err() != nil {
			break
		}
		slog.Info("phase", "name", p.name)
		t := time.Now()
		p.run(ctx)
		slog.Info("phase done", "name", p.name, "took", time.Since(t).Round(time.Millisecond))
		b.phases = append(b.phases, fmt.Sprintf("%s: %s (load average after: %s)", p.name, secs(time.Since(t)), loadAverage()))
	}
	if err := b.writeReport(*report, started); err != nil {
		fatal(err)
	}
	slog.Info("report written", "path", *report, "took", time.Since(started).Round(time.Second))
	if ctx.Err() != nil {
		os.Exit(130)
	}
}

func fatal(err error) {
	slog.Error("bench failed", "err", err)
	os.Exit(1)
}

// setup generates and pushes every image. Images are built one at a time
// and their blobs dropped once pushed, to keep memory near 2 GiB at scale 1.
func (b *bench) setup(ctx context.Context) error {
	start := time.Now()
	py, err := pythonLikeLayers(b.scale)
	if err != nil {
		return err
	}
	pyGz, builtGz, err := b.buildAndPush(ctx, imageRequest{name: "py-gzip", repo: "bench/py", tag: "gzip", layers: py, compressions: gzipAll})
	if err != nil {
		return err
	}
	// P7 indexes the largest layer of the gzip image alone: same blob, own image.
	big := 0
	for i, l := range pyGz.layers {
		if l.tarSize > pyGz.layers[big].tarSize {
			big = i
		}
	}
	b.p7Blob, b.p7Layer = builtGz[big].Blob, pyGz.layers[big]
	p7, _, err := b.pushBuilt(ctx, "py-biglayer", "bench/py", "biglayer", py[big:big+1], builtGz[big:big+1])
	if err != nil {
		return err
	}
	builtGz = nil
	pyEs, _, err := b.buildAndPush(ctx, imageRequest{name: "py-estargz", repo: "bench/py", tag: "estargz", layers: py, compressions: []integration.Compression{integration.Estargz}})
	if err != nil {
		return err
	}
	py = nil
	debug.FreeOSMemory()

	tree50, _, err := b.buildAndPush(ctx, imageRequest{name: "tree50k", repo: "bench/tree", tag: "50k", layers: flatTreeLayers(50, 50_000, 1), compressions: gzipAll})
	if err != nil {
		return err
	}
	tree100, _, err := b.buildAndPush(ctx, imageRequest{name: "tree100k", repo: "bench/tree", tag: "100k", layers: flatTreeLayers(100, 100_000, 2), compressions: gzipAll})
	if err != nil {
		return err
	}
	bigImg, err := b.setupBigFiles(ctx)
	if err != nil {
		return err
	}
	for _, im := range []*benchImage{pyGz, pyEs, p7, tree50, tree100, bigImg} {
		b.images[im.name] = im
		b.imageOrder = append(b.imageOrder, im.name)
	}
	debug.FreeOSMemory()
	b.detail("### Setup\n\nImages generated (deterministic content) and pushed in %s.\n", secs(time.Since(start)))
	return nil
}

// machineFacts describes where the figures come from.
func machineFacts(imgfsBin string) []string {
	facts := []string{fmt.Sprintf("CPUs (nproc): %d, GOMAXPROCS %d", runtime.NumCPU(), runtime.GOMAXPROCS(0))}
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(line, "model name") {
				facts = append(facts, "CPU: "+strings.TrimSpace(strings.SplitN(line, ":", 2)[1]))
				break
			}
		}
	}
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(line, "MemTotal:") {
				facts = append(facts, "memory: "+strings.Join(strings.Fields(line)[1:], " "))
			}
		}
	}
	for _, c := range [][]string{{"uname", "-srm"}, {"go", "version"}, {imgfsBin, "version"}, {"skopeo", "--version"}, {"umoci", "--version"}, {"gzip", "--version"}} {
		out, err := exec.Command(c[0], c[1:]...).Output()
		if err != nil {
			continue
		}
		first := strings.SplitN(strings.TrimSpace(string(out)), "\n", 2)[0]
		facts = append(facts, fmt.Sprintf("`%s`: %s", strings.Join(c, " "), first))
	}
	facts = append(facts, "registry: Debian docker-registry on 127.0.0.1 (loopback), filesystem storage on the same disk, blobs in the page cache")
	return facts
}
