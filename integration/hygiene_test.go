package integration

import (
	"errors"
	"fmt"
	iofs "io/fs"
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

// TestMountHygiene: a directory that is already a mount point, or that has
// files, is refused with a message (--nonempty allows the latter); a
// missing mount point is created.
func TestMountHygiene(t *testing.T) {
	reg := StartRegistry(t, RegistryOptions{})
	ref := reg.PushImage(t, "hygiene/small", "v1", smallImage(t, OCI))
	first := mountImage(t, ref, mountOptions{})

	res := runCLI(t, mountCommandTimeout, first.Env, "--plain-http", "mount", "--background", ref, first.Dir)
	if res.err == nil || !strings.Contains(res.stderr, "already a mount point") {
		t.Errorf("second mount on a mount point: %v\n%s", res.err, res.stderr)
	}

	full := filepath.Join(t.TempDir(), "full")
	os.Mkdir(full, 0o755)
	os.WriteFile(filepath.Join(full, "mine"), []byte("x"), 0o644)
	_, res = startMount(t, ref, mountOptions{Dir: full})
	if res.err == nil || !strings.Contains(res.stderr, "not empty") {
		t.Errorf("mount over a non-empty dir: %v\n%s", res.err, res.stderr)
	}
	m := mountImage(t, ref, mountOptions{Dir: full, Args: []string{"--nonempty"}})
	if _, err := os.Stat(m.path("etc/motd")); err != nil {
		t.Errorf("--nonempty mount: %v", err)
	}
	m.unmount(t)
	if data, err := os.ReadFile(filepath.Join(full, "mine")); err != nil || string(data) != "x" {
		t.Errorf("the dir's own file after the unmount: %q %v", data, err)
	}

	missing := filepath.Join(t.TempDir(), "new")
	created := mountImage(t, ref, mountOptions{Dir: missing})
	if _, err := os.Stat(created.path("etc/motd")); err != nil {
		t.Errorf("mount on a missing dir: %v", err)
	}
}

// TestMountSignalsUnmount: SIGHUP (a closed terminal), like SIGTERM and
// SIGINT, makes a foreground mount unmount cleanly and exit.
func TestMountSignalsUnmount(t *testing.T) {
	reg := StartRegistry(t, RegistryOptions{})
	ref := reg.PushImage(t, "hygiene/signals", "v1", smallImage(t, OCI))
	env := cliEnvFor(t.TempDir())
	for _, sig := range []syscall.Signal{syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			dir, cmd, exited, stderr := startForegroundMount(t, env, ref)
			cmd.Process.Signal(sig)
			select {
			case err := <-exited:
				exited <- err
				if err != nil {
					t.Errorf("exit after %s: %v\n%s", sig, err, stderr.String())
				}
			case <-time.After(serverExitTimeout):
				t.Fatalf("still running %s after %s", serverExitTimeout, sig)
			}
			if IsMounted(dir) {
				t.Errorf("%s left the mount behind", sig)
			}
		})
	}
}

// TestMountReadOnlyCacheDir: a cache dir the server cannot write (a site's
// shared read-only cache, or a full disk) still mounts: indexes are built
// in memory and data is cached in memory, with one warning each.
func TestMountReadOnlyCacheDir(t *testing.T) {
	reg := StartRegistry(t, RegistryOptions{})
	img := smallImage(t, OCI)
	ref := reg.PushImage(t, "hygiene/rocache", "v1", img)
	cache := t.TempDir()
	// A read-only bind mount: root ignores mode bits.
	if out, err := exec.Command("mount", "--bind", "-o", "ro", cache, cache).CombinedOutput(); err != nil {
		t.Skipf("read-only bind mount: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", cache).Run() })
	exec.Command("mount", "-o", "remount,bind,ro", cache).Run()
	if err := os.WriteFile(filepath.Join(cache, "probe"), nil, 0o644); !errors.Is(err, syscall.EROFS) {
		t.Fatalf("the cache dir is writable (%v)", err)
	}
	m := mountImage(t, ref, mountOptions{CacheDir: cache, Args: []string{"--log-file", filepath.Join(t.TempDir(), "log")}})
	if data, err := os.ReadFile(m.path("etc/motd")); err != nil || string(data) != "hello from the top layer\n" {
		t.Fatalf("read through a mount with a read-only cache dir: %q %v", data, err)
	}
}

// TestInterruptedIndexBuild: Ctrl-C while an index is being built says
// "interrupted" and exits 130, not an internal error. The in-process
// registry holds the blob stream so the signal surely comes mid-build.
func TestInterruptedIndexBuild(t *testing.T) {
	reg := registrytest.New(t)
	fx := buildCLIFixture(t)
	ref := putImage(reg, "hygiene/interrupt", "v1", fx.img)
	started, _ := reg.Stall(func(r *http.Request) bool {
		return strings.Contains(r.URL.Path, "/blobs/") && r.Header.Get("Range") == ""
	})
	cmd := exec.Command(imgfsBinary(t), "--plain-http", "index", ref)
	cmd.Env = cliEnviron(t, cliEnvFor(t.TempDir()))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-started:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("no blob stream started\n%s", stderr.String())
	}
	cmd.Process.Signal(syscall.SIGINT)
	err := cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 130 || strings.TrimSpace(stderr.String()) != "imgfs: interrupted" {
		t.Errorf("exit %v, stderr %q; want 130 and \"imgfs: interrupted\"", err, stderr.String())
	}
}

// TestOtherUserSeesTheImagesPermissions: a root mount (allow_other) lets
// another user run the image's programs but not read what the image keeps
// from them (a root-owned 0600 file), as in an unpacked copy with the
// image's owners. The busybox chroot stands for Apptainer run as that user.
func TestOtherUserSeesTheImagesPermissions(t *testing.T) {
	requireRoot(t)
	bb := requireStaticBusybox(t)
	layer := MustLayer(t, LayerSpec{Entries: []Entry{
		Dir("bin"), {Path: "bin/busybox", Type: TypeFile, Mode: 0o755, Content: bb},
		Dir("etc"), {Path: "etc/secret", Type: TypeFile, Mode: 0o600, Content: []byte("root only\n")},
		{Path: "etc/public", Type: TypeFile, Mode: 0o644, Content: []byte("everyone\n")},
	}})
	reg := StartRegistry(t, RegistryOptions{})
	ref := reg.PushImage(t, "hygiene/perms", "v1", MustImage(t, ImageSpec{Kind: OCI, Layers: []*BuiltLayer{layer}}))
	// The mount point's parents must be reachable by the other user.
	base, err := os.MkdirTemp("", "imgfs-perms-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	os.Chmod(base, 0o755)
	m := mountImage(t, ref, mountOptions{Dir: filepath.Join(base, "mnt")})
	asNobody := func(argv ...string) (string, error) {
		cmd := exec.Command("chroot", append([]string{"--userspec=65534:65534", m.Dir}, argv...)...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := asNobody("/bin/busybox", "cat", "/etc/public"); err != nil || out != "everyone\n" {
		t.Errorf("another user runs the image's busybox and reads a 0644 file: %q %v", out, err)
	}
	if out, err := asNobody("/bin/busybox", "cat", "/etc/secret"); err == nil || !strings.Contains(out, "Permission denied") {
		t.Errorf("another user read a root-owned 0600 file: %q %v", out, err)
	}
	if data, err := os.ReadFile(m.path("etc/secret")); err != nil || string(data) != "root only\n" {
		t.Errorf("root reads it: %q %v", data, err)
	}
}

// TestNoCachePoisoningAcrossRegistries: a hostile registry names a popular
// gzip layer's digest in its manifest and serves, under that digest, an
// uncompressed tar of its own (a setuid file, a fake /etc/passwd), or
// declares it with size 0. Using the same cache dir afterwards, the real
// image from the real registry mounts with its own tree and bytes.
func TestNoCachePoisoningAcrossRegistries(t *testing.T) {
	real := MustLayer(t, LayerSpec{Compression: Gzip, Entries: []Entry{
		Dir("etc"), File("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"), File("etc/os-release", "NAME=real\n"),
	}})
	realImg := MustImage(t, ImageSpec{Kind: OCI, Layers: []*BuiltLayer{real}})
	reg := StartRegistry(t, RegistryOptions{})
	realRef := reg.PushImage(t, "victim/app", "v1", realImg)

	evilTar, err := BuildTar([]Entry{
		Dir("etc"), File("etc/passwd", "root::0:0:owned:/root:/bin/sh\n"),
		{Path: "bin/evil", Type: TypeFile, Mode: 0o4755, Content: []byte("#!/bin/sh\n")},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, lie := range []struct {
		name string
		blob []byte
		size int64
	}{{"tar under the gzip digest", evilTar, int64(len(evilTar))}, {"size 0", nil, 0}} {
		t.Run(lie.name, func(t *testing.T) {
			hostile := registrytest.New(t)
			hostile.PutBlobAs(real.Digest, lie.blob)
			cfg := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["` + real.DiffID.String() + `"]}}`)
			m := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"` +
				hostile.PutBlob(cfg).String() + `","size":` + fmt.Sprint(len(cfg)) + `},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"` +
				real.Digest.String() + `","size":` + fmt.Sprint(lie.size) + `}]}`)
			hostile.PutManifest("application/vnd.oci.image.manifest.v1+json", m, "v1")
			cacheDir := t.TempDir()
			env := cliEnvFor(cacheDir)
			// Whatever the hostile image does (served unverified, or refused),
			// it must leave nothing the real image would use.
			res := runCLI(t, mountCommandTimeout, env, "--plain-http", "ls", hostile.Host()+"/evil/app:v1", "/")
			t.Logf("hostile ls: err %v\n%s%s", res.err, res.stdout, res.stderr)

			mnt := mountImage(t, realRef, mountOptions{CacheDir: cacheDir})
			if got, err := os.ReadFile(mnt.path("etc/passwd")); err != nil || string(got) != "root:x:0:0:root:/root:/bin/sh\n" {
				t.Errorf("the real image's /etc/passwd: %q %v", got, err)
			}
			if _, err := os.Lstat(mnt.path("bin/evil")); err == nil {
				t.Error("the hostile layer's setuid file is in the real image")
			}
			if got, err := os.ReadFile(mnt.path("etc/os-release")); err != nil || string(got) != "NAME=real\n" {
				t.Errorf("/etc/os-release: %q %v", got, err)
			}
		})
	}
}

// TestSwappedSpanFilesAreNeverServed: span files of the disk cache swapped
// between names (equal sizes, so only their content tells them apart) are
// detected and refetched when the next mount reads them: no wrong byte.
func TestSwappedSpanFilesAreNeverServed(t *testing.T) {
	files := faultFiles()
	entries := []Entry{Dir("data")}
	for p, c := range files {
		entries = append(entries, Entry{Path: p, Type: TypeFile, Mode: 0o644, Content: c})
	}
	layer := MustLayer(t, LayerSpec{Compression: Estargz, EstargzChunkSize: 64 << 10, Entries: entries})
	reg := StartRegistry(t, RegistryOptions{})
	ref := reg.PushImage(t, "swap/app", "v1", MustImage(t, ImageSpec{Kind: OCI, Layers: []*BuiltLayer{layer}}))
	cacheDir := t.TempDir()
	m := mountImage(t, ref, mountOptions{CacheDir: cacheDir, Args: []string{"--prefetch=none"}})
	if failed := readAllExpecting(t, m, files); len(failed) > 0 {
		t.Fatalf("first read: %v", failed)
	}
	m.unmount(t) // flushes the disk tier

	bySize := map[int64][]string{}
	filepath.WalkDir(filepath.Join(cacheDir, "spans"), func(p string, de iofs.DirEntry, err error) error {
		if err == nil && de.Type().IsRegular() {
			info, _ := de.Info()
			bySize[info.Size()] = append(bySize[info.Size()], p)
		}
		return nil
	})
	swapped := 0
	for _, paths := range bySize {
		for i := 0; i+1 < len(paths); i += 2 {
			a, _ := os.ReadFile(paths[i])
			b, _ := os.ReadFile(paths[i+1])
			os.WriteFile(paths[i], b, 0o600)
			os.WriteFile(paths[i+1], a, 0o600)
			swapped += 2
		}
	}
	if swapped < 10 {
		t.Fatalf("only %d span files of equal size to swap", swapped)
	}
	t.Logf("swapped %d span files", swapped)
	m = mountImage(t, ref, mountOptions{CacheDir: cacheDir, Args: []string{"--prefetch=none"}})
	if failed := readAllExpecting(t, m, files); len(failed) > 0 {
		t.Fatalf("reads failed: %v", failed)
	}
}
