package integration

import (
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/imgfs/imgfs/internal/registrytest"
)

// putImage stores a built image in an in-process registry under tag and
// returns its reference.
func putImage(reg *registrytest.Registry, repo, tag string, img *BuiltImage) string {
	reg.PutBlob(img.Config)
	for _, l := range img.Layers {
		reg.PutBlob(l.Blob)
	}
	reg.PutManifest(img.MediaType, img.Manifest, tag)
	return reg.Host() + "/" + repo + ":" + tag
}

// TestKilledReaderCancelsItsFetch: a process reading a file whose bytes
// come from a registry that has stalled is killed; the fetch made for it
// ends (the registry sees its client give up) instead of hanging on for
// nobody. The stall is a fault the real registry cannot produce, hence the
// in-process one.
func TestKilledReaderCancelsItsFetch(t *testing.T) {
	reg := registrytest.New(t)
	fx := buildCLIFixture(t)
	ref := putImage(reg, "cancel/app", "v1", fx.img)
	env := cliEnvFor(t.TempDir())
	mustCLI(t, env, "--plain-http", "index", ref) // the one pass over the blob, before the stall

	dir, _, _, stderr := startForegroundMount(t, env, "--prefetch=none", ref)
	started, ended := reg.Stall(func(r *http.Request) bool {
		return r.Header.Get("Range") != "" && strings.Contains(r.URL.Path, "/blobs/")
	})
	reader := exec.Command("cat", filepath.Join(dir, "big/needle"))
	if err := reader.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- reader.Wait() }()
	select {
	case <-started:
	case err := <-exited:
		t.Fatalf("cat finished (%v) though the registry stalls", err)
	case <-time.After(30 * time.Second):
		t.Fatalf("no blob request reached the registry\n%s", stderr.String())
	}
	reader.Process.Signal(syscall.SIGKILL)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Fatal("cat did not die")
	}
	select {
	case uri := <-ended:
		t.Logf("fetch cancelled: %s", uri)
	case <-time.After(10 * time.Second):
		t.Fatalf("the fetch for the killed reader is still running\n%s", stderr.String())
	}
}

// TestStalledRegistryReadFailsWithinBound: a registry that stops sending
// makes a read fail with EIO within a few times --read-timeout (the
// kernel may retry a failed readahead page once, synchronously), the
// mount stays up, and once the registry sends again the same read works.
func TestStalledRegistryReadFailsWithinBound(t *testing.T) {
	reg := registrytest.New(t)
	fx := buildCLIFixture(t)
	ref := putImage(reg, "stall/app", "v1", fx.img)
	env := cliEnvFor(t.TempDir())
	mustCLI(t, env, "--plain-http", "index", ref)

	const timeout = 2 * time.Second
	dir, _, _, stderr := startForegroundMount(t, env, "--prefetch=none", "--read-timeout", timeout.String(), ref)
	reg.Stall(func(r *http.Request) bool { return strings.Contains(r.URL.Path, "/blobs/") })
	start := time.Now()
	_, err := os.ReadFile(filepath.Join(dir, "big/needle"))
	took := time.Since(start)
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("read from a stalled registry: %v, want EIO", err)
	}
	if took > 3*timeout+2*time.Second {
		t.Errorf("the failed read took %s; bound %s per FUSE read", took, timeout)
	}
	t.Logf("read failed after %s", took.Round(time.Millisecond))

	reg.Unstall()
	got, err := os.ReadFile(filepath.Join(dir, "big/needle"))
	if err != nil || string(got) != "needle in a haystack\n" {
		t.Fatalf("read after the registry recovered: %q, %v\n%s", got, err, stderr.String())
	}
}
