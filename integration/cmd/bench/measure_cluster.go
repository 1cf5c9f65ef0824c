package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/imgfs/imgfs/integration"
)

// The cluster simulation (P11): N "nodes" (separate imgfs processes, each
// with its own cache dir unless the case shares one) read a file of the
// same never-seen gzip image at once, behind a counting proxy in front of
// the origin registry, in four cases: no sharing; an index artifact in the
// registry; a pull-through cache (docker-registry in proxy mode, cold) as
// mirror; one shared cache dir. A node's "first command" is `imgfs cat
// IMAGE FILE`: resolve, index (or fetch the index), read one file: what a
// mount does before the first exec, without FUSE.

// clusterNeedle is the file every node reads: a small file in the middle
// of the big layer.
const clusterNeedle = "srv/data/needle.txt"

var clusterSizes = []int{8, 32}

// setupCluster pushes the cluster image: a 48 MiB layer of mixed content
// (gzip about 2x) with the needle in the middle, and a small layer.
func (b *bench) setupCluster(ctx context.Context) (*benchImage, error) {
	g := newContentGen(1100)
	big := newLayerTree()
	for i := range 24 {
		kind := []contentKind{kindBinary, kindText, kindRandom}[i%3]
		big.file(fmt.Sprintf("srv/data/part-%02d.bin", i), 0o644, g.content(kind, 2<<20))
		if i == 12 {
			big.file(clusterNeedle, 0o644, []byte("needle in a cluster\n"))
		}
	}
	small := newLayerTree()
	small.file("etc/motd", 0o644, []byte("cluster bench\n"))
	im, _, err := b.buildAndPush(ctx, imageRequest{name: "cluster", repo: "bench/cluster", tag: "v1",
		layers: [][]integration.Entry{big.sorted(), small.sorted()}, compressions: gzipAll})
	return im, err
}

// clusterRun is one case at one N.
type clusterRun struct {
	name           string
	nodes          int
	originBytes    int64 // body bytes the origin sent (blobs, manifests, the rest)
	originRequests int
	manifestGETs   int
	times          []time.Duration // of the nodes that succeeded
	failed         int
	builds         map[string]int // layer digest -> index builds, cluster-wide
	firstErr       string
}

// node runs one node's command and returns its wall time and stderr.
func (b *bench) clusterNode(ctx context.Context, args ...string) (time.Duration, string, error) {
	cmd := exec.CommandContext(ctx, b.imgfsBin, args...)
	cmd.Env = append(os.Environ(), "IMGFS_PLATFORM=linux/amd64")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	d := time.Since(start)
	if err == nil && stdout.String() != "needle in a cluster\n" {
		err = fmt.Errorf("read %q", stdout.String())
	}
	if err != nil {
		err = fmt.Errorf("%w: %s", err, lastLines(stderr.String(), 3))
	}
	return d, stderr.String(), err
}

var builtRE = regexp.MustCompile(`msg="layer index" layer=(\S+) how=built\b`)

// runCluster starts n nodes at once; nodeArgs gives node i's arguments
// (before "cat IMAGE FILE").
func (b *bench) runCluster(ctx context.Context, name string, n int, origin *integration.CountingProxy, ref string, nodeArgs func(i int) []string) clusterRun {
	origin.Reset()
	run := clusterRun{name: name, nodes: n, builds: map[string]int{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			args := append([]string{"--plain-http", "-v", "--registries-conf", "/dev/null"}, nodeArgs(i)...)
			args = append(args, "cat", ref, "/"+clusterNeedle)
			d, stderr, err := b.clusterNode(ctx, args...)
			mu.Lock()
			defer mu.Unlock()
			for _, m := range builtRE.FindAllStringSubmatch(stderr, -1) {
				run.builds[m[1]]++
			}
			if err != nil {
				run.failed++
				if run.firstErr == "" {
					run.firstErr = err.Error()
				}
				return
			}
			run.times = append(run.times, d)
		})
	}
	wg.Wait()
	_, _, run.originBytes = origin.Bytes()
	run.originRequests = origin.Requests()
	run.manifestGETs = origin.Count("GET", "manifest")
	return run
}

func (b *bench) measureCluster(ctx context.Context) {
	im := b.images["cluster"]
	if im == nil {
		b.addError("P11", "cluster simulation", fmt.Errorf("cluster image missing"))
		return
	}
	origin, err := integration.NewCountingProxy(b.registry)
	if err != nil {
		b.addError("P11", "cluster simulation", err)
		return
	}
	defer origin.Close()
	ref := strings.Replace(im.ref, b.registry, origin.Host, 1)
	imageBytes := im.compressed()
	dir := filepath.Join(b.work, "cluster")
	cacheDir := func(parts ...string) string {
		d := filepath.Join(append([]string{dir}, parts...)...)
		os.RemoveAll(d)
		os.MkdirAll(d, 0o755)
		return d
	}
	var runs []clusterRun

	// Single nodes: a node with the index artifact against a node whose
	// cache dir holds the index (the target's baseline), 3 times each.
	warm := cacheDir("warm")
	if _, err := b.imgfs(ctx, nil, warm, "--index-source", "local", "index", ref); err != nil {
		b.addError("P11", "cluster: warm index", err)
		return
	}
	if _, err := b.imgfs(ctx, nil, cacheDir("pusher"), "--index-source", "local", "index", "--push", ref); err != nil {
		b.addError("P11", "cluster: push the index artifact", err)
		return
	}
	var artTimes, warmTimes []time.Duration
	var artBytes []int64
	for i := range 9 {
		origin.Reset()
		d, _, err := b.clusterNode(ctx, "--plain-http", "--registries-conf", "/dev/null", "--cache-dir", cacheDir("art1", fmt.Sprint(i)), "cat", ref, "/"+clusterNeedle)
		if err != nil {
			b.addError("P11", "cluster: artifact node", err)
			return
		}
		artTimes = append(artTimes, d)
		_, _, total := origin.Bytes()
		artBytes = append(artBytes, total)
		d, _, err = b.clusterNode(ctx, "--plain-http", "--registries-conf", "/dev/null", "--cache-dir", warm, "cat", ref, "/"+clusterNeedle)
		if err != nil {
			b.addError("P11", "cluster: cached-index node", err)
			return
		}
		warmTimes = append(warmTimes, d)
	}
	sort.Slice(artBytes, func(i, j int) bool { return artBytes[i] < artBytes[j] })
	artBytes = artBytes[3:6] // the middle three: artBytes[1] is the median
	artMed, warmMed := median(artTimes), median(warmTimes)
	b.addRatio("P11a", "index artifact: a node's first command on a never-seen gzip image / a node with the index cached", secs(artMed), secs(warmMed),
		float64(artMed)/float64(warmMed), atMost(1.2))
	b.addRatio("P11b", "index artifact: bytes a node fetches (manifest, config, index, spans read) / the image's blobs", mib(artBytes[1]), mib(imageBytes),
		float64(artBytes[1])/float64(imageBytes), atMost(0.10))

	for _, n := range clusterSizes {
		if ctx.Err() != nil {
			return
		}
		runs = append(runs, b.runCluster(ctx, "no sharing", n, origin, ref, func(i int) []string {
			return []string{"--index-source", "local", "--cache-dir", cacheDir("none", fmt.Sprint(n), fmt.Sprint(i))}
		}))
		runs = append(runs, b.runCluster(ctx, "index artifact", n, origin, ref, func(i int) []string {
			return []string{"--cache-dir", cacheDir("artifact", fmt.Sprint(n), fmt.Sprint(i))}
		}))
		mirror, stop, err := startPullThroughCache(ctx, filepath.Join(dir, fmt.Sprintf("ptc-%d", n)), origin.URL)
		if err != nil {
			b.addError("P11", "cluster: pull-through cache", err)
			return
		}
		runs = append(runs, b.runCluster(ctx, "pull-through cache", n, origin, ref, func(i int) []string {
			return []string{"--index-source", "local", "--registry-mirror", origin.Host + "=http://" + mirror,
				"--cache-dir", cacheDir("ptc", fmt.Sprint(n), fmt.Sprint(i))}
		}))
		stop()
		shared := cacheDir("shared", fmt.Sprint(n))
		runs = append(runs, b.runCluster(ctx, "shared cache dir", n, origin, ref, func(int) []string {
			return []string{"--index-source", "local", "--cache-layers", "--cache-dir", shared}
		}))
	}

	var w strings.Builder
	fmt.Fprintf(&w, "### P11 cluster simulation\n\n")
	fmt.Fprintf(&w, "Image: %d gzip layers, %s of blobs (%s uncompressed). Each node is one `imgfs cat IMAGE /%s` process with its own cache dir (one for all in the shared case), all started at once; the origin is the bench registry behind a counting proxy; the pull-through cache is a fresh docker-registry in proxy mode (cold) per N. Origin bytes are body bytes the origin sent through the proxy.\n\n",
		len(im.layers), mib(imageBytes), mib(im.uncompressed()), clusterNeedle)
	fmt.Fprintf(&w, "Single node, 9 runs each: with the index artifact %s (fetched %s), with the index in its cache dir %s.\n\n", spread(artTimes), mib(artBytes[1]), spread(warmTimes))
	fmt.Fprintf(&w, "| case | N | origin bytes | / image | origin requests | manifest GETs | first command median | max | failed | index builds per layer |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, r := range runs {
		med, mx := "—", "—"
		if len(r.times) > 0 {
			med = secs(median(r.times))
			s := append([]time.Duration(nil), r.times...)
			sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
			mx = secs(s[len(s)-1])
		}
		var builds []string
		for _, l := range im.layers {
			builds = append(builds, fmt.Sprint(r.builds[l.digest.String()]))
		}
		fmt.Fprintf(&w, "| %s | %d | %s | %.2f | %d | %d | %s | %s | %d | %s |\n", r.name, r.nodes, mib(r.originBytes),
			float64(r.originBytes)/float64(imageBytes), r.originRequests, r.manifestGETs, med, mx, r.failed, strings.Join(builds, ", "))
		if r.firstErr != "" {
			fmt.Fprintf(&w, "\n%s N=%d, first failure: %s\n\n", r.name, r.nodes, strings.ReplaceAll(r.firstErr, "|", "\\|"))
		}
	}
	b.detail("%s", w.String())

	for _, r := range runs {
		ratio := float64(r.originBytes) / float64(imageBytes)
		switch r.name {
		case "pull-through cache":
			b.addRatio("P11c", fmt.Sprintf("pull-through cache, %d nodes: origin bytes / one image's blobs", r.nodes), mib(r.originBytes), mib(imageBytes), ratio, atMost(1.1))
			b.addRatio("P11e", fmt.Sprintf("pull-through cache, %d nodes: manifest GETs at the origin (one image)", r.nodes), fmt.Sprint(r.manifestGETs), "", float64(r.manifestGETs), atMost(1))
		case "shared cache dir":
			b.addRatio("P11d", fmt.Sprintf("shared cache dir, %d nodes: origin bytes / one image's blobs", r.nodes), mib(r.originBytes), mib(imageBytes), ratio, atMost(1.1))
			most := 0
			for _, l := range im.layers {
				most = max(most, r.builds[l.digest.String()])
			}
			b.addRatio("P11f", fmt.Sprintf("shared cache dir, %d nodes: most index builds of one layer, cluster-wide", r.nodes), fmt.Sprint(most), "", float64(most), atMost(1))
		}
		b.addRatio("P11g", fmt.Sprintf("%s, %d nodes: nodes failed", r.name, r.nodes), fmt.Sprint(r.failed), "", float64(r.failed), atMost(0))
	}
}

// startPullThroughCache runs docker-registry in proxy mode on a free port
// of 127.0.0.1 with storage under dir, in front of upstream (a URL), and
// returns its host:port and a function that stops it.
func startPullThroughCache(ctx context.Context, dir, upstream string) (string, func(), error) {
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		return "", nil, err
	}
	os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", nil, err
	}
	port, err := integration.FreePort()
	if err != nil {
		return "", nil, err
	}
	host := fmt.Sprintf("127.0.0.1:%d", port)
	config := fmt.Sprintf("version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n  secret: imgfs-bench\nproxy:\n  remoteurl: %s\n",
		filepath.Join(dir, "storage"), host, upstream)
	cfg := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfg, []byte(config), 0o600); err != nil {
		return "", nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "registry.log"))
	if err != nil {
		return "", nil, err
	}
	cmd := exec.Command(bin, "serve", cfg)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return "", nil, err
	}
	stop := func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(3 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		logf.Close()
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get("http://" + host + "/v2/")
		if err == nil {
			resp.Body.Close()
			return host, stop, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			stop()
			return "", nil, fmt.Errorf("pull-through cache did not start: %w", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
