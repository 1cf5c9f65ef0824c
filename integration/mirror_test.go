package integration

// End-to-end tests of mirrors (containers-registries.conf and
// --registry-mirror), a real pull-through cache (docker-registry in proxy
// mode), shared and read-only cache dirs, the manifest cache, and HTTP
// proxies from the environment.

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// writeRegistriesConf writes a registries.conf and returns the env
// selecting it.
func writeRegistriesConf(t *testing.T, body string) []string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "registries.conf")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return []string{"IMGFS_REGISTRIES_CONF=" + p}
}

// pullThroughCache starts docker-registry in proxy mode in front of
// upstream (a URL), behind a counting proxy.
func pullThroughCache(t *testing.T, upstream string) *CountingProxy {
	t.Helper()
	p := StartRegistry(t, RegistryOptions{ProxyRemoteURL: upstream})
	return StartCountingProxy(t, p.Host)
}

func TestMirrorsConfig(t *testing.T) {
	reg := StartRegistry(t, RegistryOptions{})
	img := clusterImage(t)
	reg.PushImage(t, "mirror/app", "v1", img)
	origin := StartCountingProxy(t, reg.Host)
	ref := origin.Host + "/mirror/app:v1"
	cache := pullThroughCache(t, origin.URL)
	empty := StartCountingProxy(t, StartRegistry(t, RegistryOptions{}).Host)
	dead, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	reset := func() { origin.Reset(); cache.Reset(); empty.Reset() }
	cat := func(t *testing.T, env []string, args ...string) cliResult {
		t.Helper()
		full := append(append([]string{"--plain-http"}, args...), "cat", ref, "/big/needle")
		return runCLI(t, mountCommandTimeout, append(cliEnvFor(t.TempDir()), env...), full...)
	}

	t.Run("order-and-fallback", func(t *testing.T) {
		reset()
		env := writeRegistriesConf(t, fmt.Sprintf(`
[[registry]]
location = "%s"
[[registry.mirror]]
location = "127.0.0.1:%d"
insecure = true
[[registry.mirror]]
location = "%s"
insecure = true
[[registry.mirror]]
location = "%s"
insecure = true
`, origin.Host, dead, empty.Host, cache.Host))
		res := cat(t, env)
		if res.err != nil || res.stdout != "needle in a haystack\n" {
			t.Fatalf("cat through mirrors: %v %q\n%s", res.err, res.stdout, res.stderr)
		}
		if !strings.Contains(res.stderr, "mirror unreachable") {
			t.Errorf("no warning about the dead mirror:\n%s", res.stderr)
		}
		if empty.Count("GET", "manifest") == 0 || cache.Count("GET", "manifest") == 0 {
			t.Errorf("mirrors not asked in order: empty %d, cache %d manifest GETs", empty.Count("GET", "manifest"), cache.Count("GET", "manifest"))
		}
		if b, _, _ := cache.Bytes(); b < int64(len(img.Layers[0].Blob)) {
			t.Errorf("the pull-through cache served %d blob bytes; the layer is %d", b, len(img.Layers[0].Blob))
		}
		if n := origin.Count("GET", "manifest"); n > 1 {
			t.Errorf("%d manifest GETs at the origin behind a mirror, want at most 1", n)
		}
	})

	t.Run("insecure", func(t *testing.T) {
		// A mirror on https with a certificate nobody signed: used only
		// when registries.conf says insecure = true.
		var tlsRequests atomic.Int64
		rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: cache.Host})
		tlsMirror := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			tlsRequests.Add(1)
			rp.ServeHTTP(w, r)
		}))
		tlsMirror.Config.ErrorLog = log.New(io.Discard, "", 0)
		defer tlsMirror.Close()
		host := strings.TrimPrefix(tlsMirror.URL, "https://")
		for _, insecure := range []bool{false, true} {
			reset()
			tlsRequests.Store(0)
			env := writeRegistriesConf(t, fmt.Sprintf("[[registry]]\nlocation = %q\n[[registry.mirror]]\nlocation = %q\ninsecure = %v\n", origin.Host, host, insecure))
			res := cat(t, env)
			if res.err != nil || res.stdout != "needle in a haystack\n" {
				t.Fatalf("insecure=%v: cat: %v %q\n%s", insecure, res.err, res.stdout, res.stderr)
			}
			used := tlsRequests.Load() > 0 && cache.Count("GET", "blob") > 0
			if used != insecure {
				t.Errorf("insecure=%v: the TLS mirror was used: %v (%d requests)\n%s", insecure, used, tlsRequests.Load(), res.stderr)
			}
			if !insecure && !strings.Contains(res.stderr, "mirror unreachable") {
				t.Errorf("no warning about the mirror whose certificate is not trusted:\n%s", res.stderr)
			}
		}
	})

	t.Run("blocked", func(t *testing.T) {
		env := writeRegistriesConf(t, fmt.Sprintf("[[registry]]\nlocation = %q\nblocked = true\n", origin.Host))
		res := cat(t, env)
		if res.err == nil || !strings.Contains(res.stderr, "blocked") {
			t.Errorf("a blocked registry: %v\n%s", res.err, res.stderr)
		}
	})

	t.Run("registry-mirror-flag", func(t *testing.T) {
		reset()
		res := cat(t, writeRegistriesConf(t, ""), "--registry-mirror", origin.Host+"=http://"+cache.Host)
		if res.err != nil || res.stdout != "needle in a haystack\n" || cache.Count("GET", "blob") == 0 {
			t.Fatalf("--registry-mirror: %v %q (%d blob GETs at the mirror)\n%s", res.err, res.stdout, cache.Count("GET", "blob"), res.stderr)
		}
	})
}

// TestPullThroughCache: docker-registry in proxy mode answers a Range
// request for a blob it does not hold with 200 and the whole blob, and
// 206 once it has cached it. Nodes starting at once behind it cost the
// origin about one copy of the image.
func TestPullThroughCache(t *testing.T) {
	reg := StartRegistry(t, RegistryOptions{})
	img := clusterImage(t)
	reg.PushImage(t, "ptc/app", "v1", img)
	origin := StartCountingProxy(t, reg.Host)
	cache := pullThroughCache(t, origin.URL)

	rangeStatus := func(d string) int {
		req, _ := http.NewRequest(http.MethodGet, cache.URL+"/v2/ptc/app/blobs/"+d, nil)
		req.Header.Set("Range", "bytes=0-9")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	small := img.Layers[1].Digest.String()
	if got := rangeStatus(small); got != http.StatusOK {
		t.Errorf("proxy mode, uncached blob, Range request: HTTP %d, want 200", got)
	}
	deadline := time.Now().Add(10 * time.Second)
	for rangeStatus(small) != http.StatusPartialContent {
		if time.Now().After(deadline) {
			t.Fatal("the pull-through cache never answered 206 for a blob it fetched")
		}
		time.Sleep(100 * time.Millisecond)
	}

	origin.Reset()
	const nodes = 4
	var wg sync.WaitGroup
	results := make([]cliResult, nodes)
	for i := range nodes {
		wg.Go(func() {
			results[i] = runCLI(t, mountCommandTimeout, cliEnvFor(t.TempDir()), "--plain-http", "--registries-conf", "/dev/null",
				"--registry-mirror", origin.Host+"=http://"+cache.Host, "cat", origin.Host+"/ptc/app:v1", "/big/needle")
		})
	}
	wg.Wait()
	for i, r := range results {
		if r.err != nil || r.stdout != "needle in a haystack\n" {
			t.Fatalf("node %d: %v %q\n%s", i, r.err, r.stdout, r.stderr)
		}
	}
	// Each node that finds the image new to the cache starts its caching
	// with a request it drops at once; the cache still fetches a little
	// from upstream for each such request (docker-registry 2.8 does not
	// coalesce them): far less than streaming through it, as a plain
	// client would, (nodes + 1) copies. How much depends on how soon each
	// cut reaches the origin: 1.06-2.03 x the layers over 7 runs of this
	// test alone on 2 cores (2026-11-30), so the bound sits between that
	// and streaming through.
	blobs, _, _ := origin.Bytes()
	if limit := layerBytes(img) * 3; blobs > limit {
		t.Errorf("%d nodes behind the pull-through cache cost the origin %d blob bytes, more than 3 x the layers (%d; streaming through costs %d x)", nodes, blobs, layerBytes(img), nodes+1)
	}
	if n := origin.Count("GET", "manifest"); n > nodes {
		t.Errorf("%d manifest GETs at the origin for %d nodes", n, nodes)
	}
	t.Logf("cold cache, %d nodes at once: origin sent %d blob bytes for %d layer bytes, %d requests, %d manifest GETs, %d manifest HEADs",
		nodes, blobs, layerBytes(img), origin.Requests(), origin.Count("GET", "manifest"), origin.Count("HEAD", "manifest"))

	// Once the cache holds the image, nodes cost the origin no blob byte
	// and no manifest GET.
	origin.Reset()
	res := mustCLI(t, cliEnvFor(t.TempDir()), "--plain-http", "--registries-conf", "/dev/null",
		"--registry-mirror", origin.Host+"=http://"+cache.Host, "cat", origin.Host+"/ptc/app:v1", "/big/needle")
	if res.stdout != "needle in a haystack\n" {
		t.Fatalf("cat: %q", res.stdout)
	}
	if blobs, _, _ := origin.Bytes(); blobs != 0 || origin.Count("GET", "manifest") != 0 {
		t.Errorf("a node behind a warm cache: origin sent %d blob bytes, %d manifest GETs", blobs, origin.Count("GET", "manifest"))
	}
}

// TestSharedCacheDir: processes sharing one cache dir index a layer once
// and, with --cache-layers, read it from the copy the builder kept; no
// temporary or lock file is left.
func TestSharedCacheDir(t *testing.T) {
	reg := StartRegistry(t, RegistryOptions{})
	img := clusterImage(t)
	reg.PushImage(t, "shared/app", "v1", img)
	origin := StartCountingProxy(t, reg.Host)
	ref := origin.Host + "/shared/app:v1"
	shared := t.TempDir()
	const nodes = 4
	var wg sync.WaitGroup
	results := make([]cliResult, nodes)
	for i := range nodes {
		wg.Go(func() {
			results[i] = runCLI(t, mountCommandTimeout, cliEnvFor(shared), "--plain-http", "--index-source", "local", "--cache-layers", "cat", ref, "/big/needle")
		})
	}
	wg.Wait()
	for i, r := range results {
		if r.err != nil || r.stdout != "needle in a haystack\n" {
			t.Fatalf("node %d: %v %q\n%s", i, r.err, r.stdout, r.stderr)
		}
	}
	if blobs, _, _ := origin.Bytes(); blobs > layerBytes(img)*11/10 {
		t.Errorf("%d processes on one cache dir fetched %d blob bytes for %d layer bytes: more than one build", nodes, blobs, layerBytes(img))
	}
	files, _ := filepath.Glob(filepath.Join(shared, "index", "sha256", "*"))
	hidden, _ := filepath.Glob(filepath.Join(shared, "index", "sha256", ".*"))
	if len(files) != 2 || len(hidden) != 0 {
		t.Errorf("index dir: %v, hidden %v", files, hidden)
	}
	if kept, _ := filepath.Glob(filepath.Join(shared, "blobs", "sha256", "*")); len(kept) != 2 {
		t.Errorf("kept layers: %v", kept)
	}
	origin.Reset()
	mustCLI(t, cliEnvFor(shared), "--plain-http", "--cache-layers", "cat", ref, "/big/needle")
	if blobs, _, _ := origin.Bytes(); blobs > 64<<10 {
		t.Errorf("a node on the shared dir fetched %d blob bytes though the layers are kept there", blobs)
	}
	res := mustCLI(t, cliEnvFor(shared), "--plain-http", "index", ref)
	if cliCount(res.stdout, "cached") != 2 {
		t.Errorf("indexes unusable after concurrent builds:\n%s", res.stdout)
	}
}

// TestReadOnlyCacheDir: indexes in a --cache-dir-ro are used, not copied,
// and not touched.
func TestReadOnlyCacheDir(t *testing.T) {
	reg := StartRegistry(t, RegistryOptions{})
	img := clusterImage(t)
	reg.PushImage(t, "ro/app", "v1", img)
	origin := StartCountingProxy(t, reg.Host)
	ref := origin.Host + "/ro/app:v1"
	site := t.TempDir()
	mustCLI(t, cliEnvFor(site), "--plain-http", "index", ref)
	files, _ := filepath.Glob(filepath.Join(site, "index", "sha256", "*"))
	old := time.Now().Add(-time.Hour)
	for _, f := range files {
		os.Chtimes(f, old, old)
	}
	origin.Reset()
	private := t.TempDir()
	res := mustCLI(t, cliEnvFor(private), "--plain-http", "--cache-dir-ro", site, "cat", ref, "/big/needle")
	if res.stdout != "needle in a haystack\n" {
		t.Fatalf("cat: %q", res.stdout)
	}
	if blobs, _, _ := origin.Bytes(); blobs > 64<<10 {
		t.Errorf("with the indexes in a read-only dir, %d blob bytes were fetched", blobs)
	}
	if mine, _ := filepath.Glob(filepath.Join(private, "index", "sha256", "*")); len(mine) != 0 {
		t.Errorf("indexes copied to the private dir: %v", mine)
	}
	for _, f := range files {
		if st, err := os.Stat(f); err != nil || st.ModTime().After(old.Add(time.Minute)) {
			t.Errorf("%s touched in the read-only dir", f)
		}
	}
}

// TestManifestCache: a second look at a tag is a HEAD, and the manifest
// comes from the cache dir; -v says so.
func TestManifestCache(t *testing.T) {
	reg := StartRegistry(t, RegistryOptions{})
	img := clusterImage(t)
	reg.PushImage(t, "mc/app", "v1", img)
	origin := StartCountingProxy(t, reg.Host)
	ref := origin.Host + "/mc/app:v1"
	env := cliEnvFor(t.TempDir())
	mustCLI(t, env, "--plain-http", "ls", ref)
	if origin.Count("GET", "manifest") != 1 {
		t.Fatalf("first ls: %d manifest GETs", origin.Count("GET", "manifest"))
	}
	origin.Reset()
	res := mustCLI(t, env, "--plain-http", "-v", "ls", ref)
	if n := origin.Count("GET", "manifest"); n != 0 || origin.Count("HEAD", "manifest") == 0 {
		t.Errorf("second ls: %d manifest GETs, %d HEADs", n, origin.Count("HEAD", "manifest"))
	}
	if !strings.Contains(res.stderr, "manifest from the manifest cache") {
		t.Errorf("-v does not say the manifest came from the cache:\n%s", res.stderr)
	}
	// By digest: no request for the manifest at all.
	origin.Reset()
	mustCLI(t, env, "--plain-http", "ls", origin.Host+"/mc/app@"+img.Digest.String())
	if n := origin.Count("GET", "manifest") + origin.Count("HEAD", "manifest"); n != 0 {
		t.Errorf("ls by digest asked the registry for the manifest %d times", n)
	}
}

// TestHTTPProxyFromEnvironment: HTTP_PROXY carries registry traffic, and
// NO_PROXY exempts a host. The registry is named by a host only the proxy
// knows (Go never proxies requests to loopback addresses), so a request
// that skips the proxy cannot reach it.
func TestHTTPProxyFromEnvironment(t *testing.T) {
	reg := StartRegistry(t, RegistryOptions{})
	img := clusterImage(t)
	reg.PushImage(t, "px/app", "v1", img)
	const host = "registry.imgfs.test:5000"
	proxy := StartForwardProxy(t, map[string]string{host: reg.Host})
	ref := host + "/px/app:v1"
	env := append(cliEnvFor(t.TempDir()), "HTTP_PROXY="+proxy.URL, "HTTPS_PROXY="+proxy.URL)
	res := mustCLI(t, env, "--plain-http", "cat", ref, "/etc/motd")
	if res.stdout != "hello cluster\n" || proxy.Requests() == 0 {
		t.Fatalf("cat through HTTP_PROXY: %q, %d proxied requests", res.stdout, proxy.Requests())
	}
	before := proxy.Requests()
	res = runCLI(t, mountCommandTimeout, append(env, "NO_PROXY=registry.imgfs.test"), "--plain-http", "cat", ref, "/etc/motd")
	if res.err == nil || proxy.Requests() != before {
		t.Errorf("NO_PROXY: %v, %d more proxied requests", res.err, proxy.Requests()-before)
	}
	_ = context.Background
}
