package integration

// imgfs serve: any image by path from one mount, against the real registry.

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// servedDir is a running `imgfs serve --background` that the test's
// cleanup stops.
type servedDir struct {
	*mountedImage
}

// startServe runs `imgfs serve --background` with args on a new directory.
func startServe(t *testing.T, env []string, args ...string) *servedDir {
	t.Helper()
	RequireTool(t, "fusermount3")
	m := &mountedImage{Dir: filepath.Join(t.TempDir(), "images"), CacheDir: t.TempDir(), LogPath: filepath.Join(t.TempDir(), "serve.log")}
	m.Env = append([]string{"IMGFS_CACHE_DIR=" + m.CacheDir}, env...)
	liveMounts.Store(m.Dir, t.Name())
	t.Cleanup(func() { m.cleanup(t) })
	res := runCLI(t, mountCommandTimeout, m.Env, append(append([]string{"serve", "--background", "--log-file", m.LogPath}, args...), m.Dir)...)
	if res.err != nil {
		t.Fatalf("imgfs serve --background: %v\n%s%s", res.err, res.stdout, res.stderr)
	}
	pid, err := ServerPID(res.stdout)
	if err != nil {
		t.Fatal(err)
	}
	m.PID = pid
	if !IsMounted(m.Dir) {
		t.Fatalf("serve returned, but %s is not mounted", m.Dir)
	}
	return &servedDir{m}
}

func readServed(t *testing.T, p string) string {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("read %s: %v", p, err)
	}
	return string(data)
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: still not so after %s", what, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestServe(t *testing.T) {
	reg := StartRegistry(t, RegistryOptions{})
	shared := MustLayer(t, LayerSpec{Compression: Gzip, Entries: []Entry{
		Dir("shared"), {Path: "shared/big", Type: TypeFile, Mode: 0o644, Content: conformanceRandom(6 << 20)},
		File("shared/hello", "from the shared layer\n"),
	}})
	own := func(name string) *BuiltLayer {
		return MustLayer(t, LayerSpec{Compression: Gzip, Entries: []Entry{Dir("etc"), File("etc/name", name+"\n")}})
	}
	imgA := MustImage(t, ImageSpec{Kind: OCI, Layers: []*BuiltLayer{shared, own("a")}, Config: ocispec.ImageConfig{Env: []string{"IMAGE=a"}}})
	imgB := MustImage(t, ImageSpec{Kind: OCI, Layers: []*BuiltLayer{shared, own("b")}, Config: ocispec.ImageConfig{Env: []string{"IMAGE=b"}}})
	imgB2 := MustImage(t, ImageSpec{Kind: OCI, Layers: []*BuiltLayer{own("b2")}})
	reg.PushImage(t, "serve/a", "v1", imgA)
	reg.PushImage(t, "serve/b", "v1", imgB)

	s := startServe(t, nil, "--plain-http-registry", reg.Host, "--tag-ttl", "2s", "--idle-timeout", "3s")
	host := filepath.Join(s.Dir, reg.Host)
	pathA := filepath.Join(host, "serve", "a@"+imgA.Digest.String())
	tagB := filepath.Join(host, "serve", "b:v1")

	// A digest path is the image; a tag path links to its digest.
	if got := readServed(t, filepath.Join(pathA, "etc/name")); got != "a\n" {
		t.Errorf("digest path: etc/name %q", got)
	}
	target, err := os.Readlink(tagB)
	if err != nil || target != "b@"+imgB.Digest.String() {
		t.Fatalf("tag path: readlink %q, %v; want b@%s", target, err, imgB.Digest)
	}
	if got := readServed(t, filepath.Join(tagB, "etc/name")); got != "b\n" {
		t.Errorf("tag path: etc/name %q", got)
	}
	if got := readServed(t, filepath.Join(tagB, ".singularity.d/env/10-docker2singularity.sh")); !strings.Contains(got, `IMAGE="${IMAGE:-"b"}"`) {
		t.Errorf("synthesized env of b: %q", got)
	}

	// The layer both images share is fetched once: reading its big file
	// through the second image fetches nothing more.
	big := readServed(t, filepath.Join(pathA, "shared/big"))
	sharedOnly := &BuiltImage{Layers: []*BuiltLayer{shared}}
	afterA := layerBlobGETs(t, reg, sharedOnly)
	if got := readServed(t, filepath.Join(tagB, "shared/big")); got != big {
		t.Error("shared/big differs between the images")
	}
	if after := layerBlobGETs(t, reg, sharedOnly); after != afterA {
		t.Errorf("the shared layer was fetched again for the second image: %d GETs, %d after the first", after, afterA)
	}
	// Read whole, shared/big is copied for FUSE passthrough (where the
	// kernel has it), once for both images: one store for the server.
	if passthroughAvailable() {
		waitFor(t, 10*time.Second, "a file copy of shared/big", func() bool { return len(fileCopies(s.CacheDir)) == 1 })
	}
	if n, _ := filepath.Glob(filepath.Join(s.CacheDir, "index", "sha256", shared.Digest.Encoded()+".*")); len(n) != 1 {
		t.Errorf("index files of the shared layer: %v", n)
	}

	// Status files.
	images := readServed(t, filepath.Join(s.Dir, ".imgfs/images"))
	for _, want := range []string{"/" + reg.Host + "/serve/a@" + imgA.Digest.String(), "/" + reg.Host + "/serve/b@" + imgB.Digest.String(),
		"/" + reg.Host + "/serve/b:v1"} {
		if !strings.Contains(images, want) {
			t.Errorf(".imgfs/images lacks %s:\n%s", want, images)
		}
	}
	if stats := readServed(t, filepath.Join(s.Dir, ".imgfs/stats")); !strings.Contains(stats, shared.Digest.String()) || !strings.Contains(stats, "fuse requests:") {
		t.Errorf(".imgfs/stats:\n%s", stats)
	}
	if _, err := os.Stat(filepath.Join(host, "serve", "a:nope")); !os.IsNotExist(err) {
		t.Errorf("a missing tag: %v, want ENOENT", err)
	}
	if errs := readServed(t, filepath.Join(s.Dir, ".imgfs/errors")); !strings.Contains(errs, "/serve/a:nope") {
		t.Errorf(".imgfs/errors lacks the missing tag:\n%s", errs)
	}
	if names, err := os.ReadDir(filepath.Join(host, "serve")); err != nil || len(names) < 3 {
		t.Errorf("listing of a repository directory: %v, %v", names, err)
	}
	res := runCLI(t, mountCommandTimeout, s.Env, "mounts")
	if !strings.Contains(res.stdout, s.Dir) || !strings.Contains(res.stdout, "serve") {
		t.Errorf("imgfs mounts:\n%s%s", res.stdout, res.stderr)
	}

	// The tag moves: within the TTL the link stays, after it it follows.
	reg.PushImage(t, "serve/b", "v1", imgB2)
	if target, _ := os.Readlink(tagB); target != "b@"+imgB.Digest.String() {
		t.Errorf("within the TTL the tag already points at %s", target)
	}
	waitFor(t, 10*time.Second, "tag resolved again after its TTL", func() bool {
		target, _ := os.Readlink(tagB)
		return target == "b@"+imgB2.Digest.String()
	})
	if got := readServed(t, filepath.Join(tagB, "etc/name")); got != "b2\n" {
		t.Errorf("after the tag moved: etc/name %q", got)
	}

	// Idle images are released, and opened again on use.
	waitFor(t, 15*time.Second, "image a released after the idle timeout", func() bool {
		return !strings.Contains(readServed(t, filepath.Join(s.Dir, ".imgfs/images")), "/serve/a@")
	})
	if got := readServed(t, filepath.Join(pathA, "etc/name")); got != "a\n" {
		t.Errorf("after release: etc/name %q", got)
	}
	if !strings.Contains(readServed(t, filepath.Join(s.Dir, ".imgfs/images")), "/serve/a@") {
		t.Error("image a not opened again")
	}

	// SIGTERM: unmounted, server gone.
	if err := syscall.Kill(s.PID, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if !WaitProcessExit(s.PID, serverExitTimeout) {
		t.Fatal("serve did not exit on SIGTERM")
	}
	if IsMounted(s.Dir) {
		t.Error("still mounted after SIGTERM")
	}
	if log, _ := os.ReadFile(s.LogPath); !bytes.Contains(log, []byte("imgfs: terminated: unmounting")) {
		t.Errorf("log:\n%s", log)
	}
}

func TestServeSIGHUPWhileBusy(t *testing.T) {
	reg := StartRegistry(t, RegistryOptions{})
	img := smallImage(t, OCI)
	reg.PushImage(t, "serve/small", "v1", img)
	s := startServe(t, nil, "--plain-http-registry", reg.Host)
	f, err := os.Open(filepath.Join(s.Dir, reg.Host, "serve/small:v1", "etc/motd"))
	if err != nil {
		t.Fatal(err)
	}
	// A hangup with a file open: the mount is detached (nothing left in
	// /proc/mounts), and the server exits once it has let go.
	if err := syscall.Kill(s.PID, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "detached after SIGHUP", func() bool { return !IsMounted(s.Dir) })
	f.Close()
	if !WaitProcessExit(s.PID, serverExitTimeout) {
		t.Error("serve did not exit after SIGHUP")
	}
}

func TestServeClusterOptions(t *testing.T) {
	// The images serve opens honour the global cluster flags as a mount
	// does: the index comes from the index artifact (--index-source
	// registry would fail without it) and blobs through the mirror.
	reg := StartRegistry(t, RegistryOptions{})
	img := clusterImage(t)
	reg.PushImage(t, "cluster/serve", "v1", img)
	origin := StartCountingProxy(t, reg.Host)
	mirror := StartCountingProxy(t, reg.Host)
	mustCLI(t, cliEnvFor(t.TempDir()), "--plain-http", "index", "--push", origin.Host+"/cluster/serve:v1")
	origin.Reset()

	s := startServe(t, nil, "--plain-http-registry", origin.Host, "--index-source", "registry",
		"--registry-mirror", origin.Host+"="+"http://"+mirror.Host)
	p := filepath.Join(s.Dir, origin.Host, "cluster", "serve@"+img.Digest.String())
	if got := readServed(t, filepath.Join(p, "big/needle")); got != "needle in a haystack\n" {
		t.Fatalf("big/needle: %q", got)
	}
	originBlobs, _, _ := origin.Bytes()
	mirrorBlobs, _, _ := mirror.Bytes()
	if originBlobs != 0 || mirrorBlobs == 0 {
		t.Errorf("blob bytes: %d from the origin, %d from the mirror; want all from the mirror", originBlobs, mirrorBlobs)
	}
	if limit := layerBytes(img) / 10; mirrorBlobs > limit {
		t.Errorf("served with the index artifact, %d blob bytes fetched, more than 10%% of the layers (%d)", mirrorBlobs, limit)
	}
}
