package integration

// The mount helper every end-to-end mount test uses, and tests of mounting
// and unmounting themselves.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Bounds of the mount helper's waits.
const (
	mountCommandTimeout = 90 * time.Second // resolve + index + mount of a fixture
	unmountTimeout      = 30 * time.Second
	serverExitTimeout   = 15 * time.Second
)

// liveMounts records every mount point the helpers created and not yet
// saw unmounted; TestMain fails the run if one is still mounted at the end.
var liveMounts sync.Map // dir -> test name

// leftoverMounts detaches, and names, mounts of this run still present.
func leftoverMounts() []string {
	var left []string
	liveMounts.Range(func(k, v any) bool {
		dir := k.(string)
		if IsMounted(dir) {
			left = append(left, fmt.Sprintf("%s (from %s)", dir, v))
			_ = ForceUnmount(dir)
		}
		return true
	})
	slices.Sort(left)
	return left
}

// checkNoMountsLeft is TestMain's final check: no mount of this run remains
// in /proc/mounts. It returns the exit code to use.
func checkNoMountsLeft() int {
	if left := leftoverMounts(); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: mounts left behind by the tests (now detached):\n  %s\n", strings.Join(left, "\n  "))
		return 1
	}
	return 0
}

// runCLI runs the imgfs binary as runImgfs does (clean environment, fixed
// platform), bounded by timeout.
func runCLI(t testing.TB, timeout time.Duration, env []string, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, imgfsBinary(t), args...)
	cmd.Env = cliEnviron(t, env)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("imgfs %s: timed out after %s (%v)", strings.Join(args, " "), timeout, err)
	}
	return cliResult{stdout: stdout.String(), stderr: stderr.String(), err: err}
}

func cliEnviron(t testing.TB, env []string) []string {
	return append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "IMGFS_PLATFORM=linux/amd64"}, env...)
}

// mountOptions configure mountImage.
type mountOptions struct {
	CacheDir string   // IMGFS_CACHE_DIR; "": a new temporary directory
	Args     []string // extra flags for `imgfs mount`
	Env      []string // extra environment
	Dir      string   // mount point; "": a new temporary directory
}

// mountedImage is a background mount that the test's cleanup unmounts.
type mountedImage struct {
	Dir      string
	PID      int // the mount server
	CacheDir string
	LogPath  string // the server's log
	Env      []string
}

// mountImage runs `imgfs --plain-http mount --background REF DIR` and
// registers a cleanup that always unmounts (imgfs unmount, then
// fusermount3 -uz / umount -l), waits for the server to exit (killing it by
// pid if it does not) and fails the test if the mount is still there.
func mountImage(t testing.TB, ref string, o mountOptions) *mountedImage {
	t.Helper()
	m, res := startMount(t, ref, o)
	if res.err != nil {
		t.Fatalf("imgfs mount --background %s: %v\nstdout: %s\nstderr: %s", ref, res.err, res.stdout, res.stderr)
	}
	return m
}

// startMount is mountImage that returns the command's result instead of
// failing (m.PID is 0 when the mount failed).
func startMount(t testing.TB, ref string, o mountOptions) (*mountedImage, cliResult) {
	t.Helper()
	RequireTool(t, "fusermount3")
	m := &mountedImage{Dir: o.Dir, CacheDir: o.CacheDir}
	if m.Dir == "" {
		m.Dir = filepath.Join(t.TempDir(), "mnt")
		if err := os.Mkdir(m.Dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if m.CacheDir == "" {
		m.CacheDir = t.TempDir()
	}
	m.LogPath = filepath.Join(t.TempDir(), "mount-server.log")
	m.Env = append([]string{"IMGFS_CACHE_DIR=" + m.CacheDir}, o.Env...)
	args := append([]string{"--plain-http", "mount", "--background", "--log-file", m.LogPath}, o.Args...)
	args = append(args, ref, m.Dir)

	liveMounts.Store(m.Dir, t.Name())
	t.Cleanup(func() { m.cleanup(t) })
	res := runCLI(t, mountCommandTimeout, m.Env, args...)
	if res.err != nil {
		return m, res
	}
	pid, err := ServerPID(res.stdout)
	if err != nil {
		t.Fatalf("mount --background output: %v", err)
	}
	m.PID = pid
	if !IsMounted(m.Dir) {
		t.Fatalf("mount --background returned, but %s is not in /proc/self/mountinfo\n%s", m.Dir, res.stdout)
	}
	return m, res
}

// cleanup unmounts whatever happened in the test.
func (m *mountedImage) cleanup(t testing.TB) {
	if IsMounted(m.Dir) {
		res := runCLI(t, unmountTimeout, m.Env, "unmount", m.Dir)
		if res.err != nil {
			t.Logf("imgfs unmount %s: %v: %s; forcing", m.Dir, res.err, strings.TrimSpace(res.stderr))
			if err := ForceUnmount(m.Dir); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
	}
	if m.PID > 0 && !WaitProcessExit(m.PID, serverExitTimeout) {
		t.Errorf("mount server %d still running %s after the unmount; killing it", m.PID, serverExitTimeout)
		_ = syscall.Kill(m.PID, syscall.SIGKILL)
		WaitProcessExit(m.PID, 5*time.Second)
	}
	if IsMounted(m.Dir) {
		t.Errorf("cleanup: %s is still mounted", m.Dir)
		_ = ForceUnmount(m.Dir)
	} else {
		liveMounts.Delete(m.Dir)
	}
	if t.Failed() {
		t.Logf("mount server log %s:\n%s", m.LogPath, tailFile(m.LogPath, 40))
	}
}

// unmount runs `imgfs unmount` now and waits for the server to exit.
func (m *mountedImage) unmount(t testing.TB) {
	t.Helper()
	res := runCLI(t, unmountTimeout, m.Env, "unmount", m.Dir)
	if res.err != nil {
		t.Fatalf("imgfs unmount %s: %v\n%s", m.Dir, res.err, res.stderr)
	}
	if IsMounted(m.Dir) {
		t.Fatalf("%s still mounted after imgfs unmount", m.Dir)
	}
	if !WaitProcessExit(m.PID, serverExitTimeout) {
		t.Fatalf("mount server %d did not exit within %s of the unmount", m.PID, serverExitTimeout)
	}
}

// path joins the mount point and an image path.
func (m *mountedImage) path(p string) string { return filepath.Join(m.Dir, p) }

// TestMountBackgroundAndUnmount: a background mount serves the image, shows
// up in /proc/mounts as fuse.imgfs, refuses writes, and `imgfs unmount`
// removes it and stops the server.
func TestMountBackgroundAndUnmount(t *testing.T) {
	reg := StartRegistry(t, RegistryOptions{})
	img := smallImage(t, OCI)
	ref := reg.PushImage(t, "mount/small", "v1", img)
	m := mountImage(t, ref, mountOptions{})

	if got, err := os.ReadFile(m.path("etc/motd")); err != nil || string(got) != "hello from the top layer\n" {
		t.Errorf("etc/motd: %q, %v", got, err)
	}
	mounts, err := MountPoints()
	if err != nil {
		t.Fatal(err)
	}
	if typ := mounts[m.Dir]; !strings.HasPrefix(typ, "fuse") {
		t.Errorf("%s has type %q in mountinfo, want fuse.*", m.Dir, typ)
	}
	if !ProcessAlive(m.PID) {
		t.Errorf("server pid %d is not running", m.PID)
	}
	err = os.WriteFile(m.path("etc/new"), []byte("x"), 0o644)
	if !errors.Is(err, syscall.EROFS) {
		t.Errorf("creating a file: %v, want EROFS", err)
	}
	if err := os.Remove(m.path("etc/motd")); !errors.Is(err, syscall.EROFS) {
		t.Errorf("removing a file: %v, want EROFS", err)
	}
	m.unmount(t)
	if _, err := os.Stat(m.path("etc/motd")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after unmount, etc/motd: %v; want the empty mount point", err)
	}
}

// TestMountBackgroundBadReference: a reference that does not resolve fails
// with the reason, and leaves neither a mount nor a server.
func TestMountBackgroundBadReference(t *testing.T) {
	reg := StartRegistry(t, RegistryOptions{})
	ref := reg.Ref("mount/absent", "nope")
	m, res := startMount(t, ref, mountOptions{})
	if res.err == nil {
		t.Fatalf("mount of a missing image succeeded: %s", res.stdout)
	}
	t.Logf("imgfs said: %s", strings.TrimSpace(res.stderr))
	msg := strings.ToLower(res.stderr)
	if !strings.Contains(msg, "background mount failed") || !(strings.Contains(msg, "not found") || strings.Contains(msg, "unknown")) {
		t.Errorf("error does not give the reason (manifest unknown/not found):\n%s", res.stderr)
	}
	if strings.Count(strings.TrimSpace(res.stderr), "\n") > 3 {
		t.Errorf("error is not a short message:\n%s", res.stderr)
	}
	if IsMounted(m.Dir) {
		t.Errorf("%s is mounted after a failed mount", m.Dir)
	}
	// The server is started with the mount point on its command line.
	deadline := time.Now().Add(5 * time.Second)
	for pids := ProcessesMentioning(m.Dir); len(pids) > 0; pids = ProcessesMentioning(m.Dir) {
		if time.Now().After(deadline) {
			t.Errorf("processes still running for %s after the failed mount: %v", m.Dir, pids)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
}
