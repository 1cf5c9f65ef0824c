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
	"maps"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/imgfs/imgfs/integration"
)

type bench struct {
	registry string // 127.0.0.1:PORT
	// registryPID is the registry's process, for the CPU it uses serving a
	// cold read (P5); 0: not known.
	registryPID int
	imgfsBin    string
	work        string
	scale       float64
	bigSize     int // bytes of each P4/P5 file
	repeats     int
	command     string

	apptainer     string // -apptainer: also time the real client (P6o)
	apptainerUser string

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
	if len(os.Args) > 1 && os.Args[1] == refServerArg {
		if err := serveRef(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "bench ref-server:", err)
			os.Exit(1)
		}
		return
	}
	b := &bench{images: map[string]*benchImage{}, cacheDirs: map[string]string{}}
	flag.StringVar(&b.registry, "registry", "", "registry host:port to push to and mount from (required)")
	flag.IntVar(&b.registryPID, "registry-pid", 0, "the registry's pid: P5 reports the CPU it spends serving a cold read")
	flag.StringVar(&b.imgfsBin, "imgfs", "bin/imgfs", "imgfs binary")
	flag.StringVar(&b.work, "work", "", "scratch directory (required; mounts, caches, unpacked images)")
	flag.Float64Var(&b.scale, "scale", 0.8, "scale file counts and big files of the python-like image (1: ~30k files, ~420 MiB)")
	bigMiB := flag.Int("big-mib", 200, "size of each P4/P5 file in MiB")
	flag.IntVar(&b.repeats, "repeats", 3, "repeats of each imgfs timing (the median is reported)")
	report := flag.String("report", "bench-report.md", "markdown report to write")
	only := flag.String("only", "", "comma-separated measurements to run, of "+strings.Join(phaseKeys(), ", ")+" (default: all)")
	flag.StringVar(&b.apptainer, "apptainer", "", "apptainer binary: P6o also times `apptainer exec DIR find /small` on the mount and on a sandbox (by hand only)")
	flag.StringVar(&b.apptainerUser, "apptainer-user", "", "with -apptainer: run it as this user (runuser), not as root")
	flag.Parse()
	if b.registry == "" || b.work == "" {
		fmt.Fprintln(os.Stderr, "bench: -registry and -work are required (scripts/bench.sh sets them)")
		os.Exit(2)
	}
	b.bigSize = *bigMiB << 20
	b.command = fmt.Sprintf("integration/cmd/bench -scale %s -big-mib %d -repeats %d", trimFloat(b.scale), *bigMiB, b.repeats)
	selected, err := selectPhases(*only)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	if *only != "" {
		b.command += " -only " + *only
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})))
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

	needs := map[string]bool{}
	for _, p := range selected {
		for _, im := range p.images {
			needs[im] = true
		}
	}
	if err := b.setup(ctx, needs); err != nil {
		fatal(err)
	}
	b.phases = append(b.phases, fmt.Sprintf("setup (generate, encode, push): %s (load average after: %s)", secs(time.Since(started)), loadAverage()))
	for _, p := range selected {
		if ctx.Err() != nil {
			break
		}
		slog.Info("phase", "name", p.name)
		t := time.Now()
		p.run(b, ctx)
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

// phase is one measurement: its -only key, and the image groups setup
// must push for it.
type phase struct {
	key, name string
	images    []string
	run       func(*bench, context.Context)
}

var phases = []phase{
	{"startup", "P1/P2 mount + first exec", []string{"py"}, (*bench).measureStartup},
	{"fetched", "P3 bytes fetched", []string{"py"}, (*bench).measureFetched},
	{"throughput", "P4/P5 read throughput", []string{"big"}, (*bench).measureThroughput},
	{"readall", "P9/P10 cold read of every file", []string{"py"}, (*bench).measureReadAll},
	{"reread", "P4d rereads from the disk cache", []string{"big"}, (*bench).measureReread},
	{"walk", "P6 find + stat", []string{"tree50k"}, (*bench).measureWalk},
	{"overlay", "P6o find + stat under overlayfs", []string{"meta50k"}, (*bench).measureOverlay},
	{"index", "P7 index build", []string{"py"}, (*bench).measureIndexBuild},
	{"mount", "P8 mount ready, 100k files", []string{"tree100k"}, (*bench).measureMountReady},
	{"sizes", "index sizes", nil, (*bench).measureIndexSizes},
	{"cluster", "P11 cluster simulation", []string{"cluster"}, (*bench).measureCluster},
}

func phaseKeys() []string {
	keys := make([]string, len(phases))
	for i, p := range phases {
		keys[i] = p.key
	}
	return keys
}

// selectPhases returns the phases -only names (all when empty), in their
// run order.
func selectPhases(only string) ([]phase, error) {
	if only == "" {
		return phases, nil
	}
	want := map[string]bool{}
	for _, k := range strings.Split(only, ",") {
		want[strings.TrimSpace(k)] = true
	}
	var out []phase
	for _, p := range phases {
		if want[p.key] {
			out = append(out, p)
			delete(want, p.key)
		}
	}
	if len(want) > 0 {
		return nil, fmt.Errorf("-only: unknown measurement(s) %v; known: %s", slices.Sorted(maps.Keys(want)), strings.Join(phaseKeys(), ", "))
	}
	return out, nil
}

func fatal(err error) {
	slog.Error("bench failed", "err", err)
	os.Exit(1)
}

// setup generates and pushes the image groups the selected measurements
// need: "py" (py-gzip, py-biglayer, py-estargz), "tree50k", "tree100k",
// "big", "meta50k" (with meta50k-xattr). Images are built one at a time and
// their blobs dropped once pushed, to keep memory near 2 GiB at scale 1.
func (b *bench) setup(ctx context.Context, needs map[string]bool) error {
	start := time.Now()
	add := func(ims ...*benchImage) {
		for _, im := range ims {
			b.images[im.name] = im
			b.imageOrder = append(b.imageOrder, im.name)
		}
	}
	if needs["py"] {
		ims, err := b.setupPython(ctx)
		if err != nil {
			return err
		}
		add(ims...)
	}
	for _, t := range []struct {
		name, tag    string
		seed         uint64
		files, count int
	}{{"tree50k", "50k", 50, 50_000, 1}, {"tree100k", "100k", 100, 100_000, 2}} {
		if !needs[t.name] {
			continue
		}
		im, _, err := b.buildAndPush(ctx, imageRequest{name: t.name, repo: "bench/tree", tag: t.tag, layers: flatTreeLayers(t.seed, t.files, t.count), compressions: gzipAll})
		if err != nil {
			return err
		}
		add(im)
	}
	if needs["big"] {
		im, err := b.setupBigFiles(ctx)
		if err != nil {
			return err
		}
		add(im)
	}
	if needs["cluster"] {
		im, err := b.setupCluster(ctx)
		if err != nil {
			return err
		}
		add(im)
	}
	if needs["meta50k"] {
		for _, x := range []bool{false, true} {
			layers, err := metaTreeLayers(x)
			if err != nil {
				return err
			}
			name, tag := "meta50k", "plain"
			if x {
				name, tag = "meta50k-xattr", "xattr"
			}
			im, _, err := b.buildAndPush(ctx, imageRequest{name: name, repo: "bench/meta", tag: tag, layers: layers, compressions: gzipAll})
			if err != nil {
				return err
			}
			add(im)
		}
	}
	debug.FreeOSMemory()
	b.detail("### Setup\n\nImages generated (deterministic content) and pushed in %s.\n", secs(time.Since(start)))
	return nil
}

// setupPython pushes the python-like image as gzip and eStargz, and its
// largest gzip layer alone (P7).
func (b *bench) setupPython(ctx context.Context) ([]*benchImage, error) {
	py, err := pythonLikeLayers(b.scale)
	if err != nil {
		return nil, err
	}
	pyGz, builtGz, err := b.buildAndPush(ctx, imageRequest{name: "py-gzip", repo: "bench/py", tag: "gzip", layers: py, compressions: gzipAll})
	if err != nil {
		return nil, err
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
		return nil, err
	}
	builtGz = nil
	pyEs, _, err := b.buildAndPush(ctx, imageRequest{name: "py-estargz", repo: "bench/py", tag: "estargz", layers: py, compressions: []integration.Compression{integration.Estargz}})
	if err != nil {
		return nil, err
	}
	py = nil
	debug.FreeOSMemory()
	return []*benchImage{pyGz, pyEs, p7}, nil
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
