package integration

// End-to-end tests of tags, mounts, cache ls's images, the foreground
// mount's ready line and log file, and exit codes.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestCLITags(t *testing.T) {
	reg := StartRegistry(t, RegistryOptions{})
	img := smallImage(t, OCI)
	for _, tag := range []string{"v1", "v2", "latest"} {
		reg.PushImage(t, "cli/tags", tag, img)
	}
	res := mustCLI(t, nil, "--plain-http", "tags", reg.Host+"/cli/tags")
	got := strings.Fields(res.stdout)
	slices.Sort(got)
	if !slices.Equal(got, []string{"latest", "v1", "v2"}) {
		t.Errorf("tags: %q", got)
	}
	res = mustCLI(t, nil, "--plain-http", "tags", "--json", reg.Host+"/cli/tags:v1")
	var tags []string
	if err := json.Unmarshal([]byte(res.stdout), &tags); err != nil || len(tags) != 3 {
		t.Errorf("tags --json: %q, %v", res.stdout, err)
	}
	res = runCLI(t, mountCommandTimeout, nil, "--plain-http", "tags", reg.Host+"/cli/none")
	if code := exitCode(res.err); code != 3 {
		t.Errorf("tags of a missing repository: exit %d (%v), want 3: %s", code, res.err, res.stderr)
	}
}

// exitCode is the exit status of a finished command (-1: not run).
func exitCode(err error) int {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	}
	return -1
}

// TestCLIForegroundMountStateAndLog: a foreground mount prints one line
// when ready, logs to --log-file, is listed by `imgfs mounts` with its
// pid, and its layers' images are named by `cache ls`; SIGTERM ends it all.
func TestCLIForegroundMountStateAndLog(t *testing.T) {
	reg := StartRegistry(t, RegistryOptions{})
	img := smallImage(t, OCI)
	ref := reg.PushImage(t, "cli/state", "v1", img)
	cacheDir := t.TempDir()
	env := cliEnvFor(cacheDir)
	dir := filepath.Join(t.TempDir(), "mnt") // missing: created
	logFile := filepath.Join(t.TempDir(), "mount.log")

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, imgfsBinary(t), "--plain-http", "-v", "mount", "--log-file", logFile, ref, dir)
	cmd.Env = cliEnviron(t, env)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	liveMounts.Store(dir, t.Name())
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if IsMounted(dir) {
			ForceUnmount(dir)
		}
		cmd.Process.Kill()
		cmd.Wait()
		liveMounts.Delete(dir)
	})
	lines := make(chan string, 4)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var ready string
	select {
	case ready = <-lines:
	case <-time.After(time.Minute):
		t.Fatal("no ready line within a minute")
	}
	want := "imgfs: " + ref + " mounted at " + dir + " (pid " + strconv.Itoa(cmd.Process.Pid) + ")"
	if !strings.HasPrefix(ready, want) || !IsMounted(dir) {
		t.Fatalf("ready line %q, want it to start with %q (mounted: %v)", ready, want, IsMounted(dir))
	}

	res := mustCLI(t, env, "mounts", "--json")
	var mounts []struct {
		Dir, Kind, Image, Digest, Log string
		PID                           int
	}
	if err := json.Unmarshal([]byte(res.stdout), &mounts); err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(mounts, func(m struct {
		Dir, Kind, Image, Digest, Log string
		PID                           int
	}) bool {
		return m.Dir == dir
	})
	if i < 0 || mounts[i].PID != cmd.Process.Pid || mounts[i].Image != ref || mounts[i].Kind != "mount" ||
		mounts[i].Digest != img.Digest.String() || mounts[i].Log != logFile {
		t.Errorf("imgfs mounts: %+v", mounts)
	}

	res = mustCLI(t, env, "cache", "ls", "--json")
	var listing struct {
		Indexes []struct {
			Digest string
			Images []string
		}
	}
	if err := json.Unmarshal([]byte(res.stdout), &listing); err != nil || len(listing.Indexes) != len(img.Layers) {
		t.Fatalf("cache ls --json: %v\n%s", err, res.stdout)
	}
	for _, ix := range listing.Indexes {
		if !slices.Contains(ix.Images, ref) {
			t.Errorf("cache ls: layer %s names %q, not %s", ix.Digest, ix.Images, ref)
		}
	}
	if res := mustCLI(t, env, "cache", "ls"); !strings.Contains(res.stdout, ref) || !strings.Contains(res.stdout, "IMAGES") {
		t.Errorf("cache ls:\n%s", res.stdout)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("mount exited with %v on SIGTERM", err)
	}
	if IsMounted(dir) {
		t.Error("still mounted after SIGTERM")
	}
	if log, err := os.ReadFile(logFile); err != nil || !strings.Contains(string(log), `msg=mounted`) || !strings.Contains(string(log), "unmounting") {
		t.Errorf("--log-file in the foreground: %v\n%s", err, log)
	}
	if entries, _ := os.ReadDir(filepath.Join(cacheDir, "mounts")); len(entries) != 0 {
		t.Errorf("state files left after the mount ended: %v", entries)
	}
	if res := mustCLI(t, env, "mounts"); strings.Contains(res.stdout, dir) {
		t.Errorf("imgfs mounts still lists %s:\n%s", dir, res.stdout)
	}
	// Pruning everything forgets the layers' images too.
	mustCLI(t, env, "cache", "prune", "--all")
	if entries, _ := os.ReadDir(filepath.Join(cacheDir, "refs", "sha256")); len(entries) != 0 {
		t.Errorf("image records left after prune --all: %v", entries)
	}
}

// TestCLIExitCodes: the exit status tells failures apart, end to end.
func TestCLIExitCodes(t *testing.T) {
	reg := StartRegistry(t, RegistryOptions{Auth: AuthHtpasswd})
	for _, c := range []struct {
		args []string
		code int
	}{
		{[]string{"inspect", "--nope", "x"}, 2},
		{[]string{"--plain-http", "inspect", reg.Host + "/cli/x:v1"}, 4}, // no credentials
		{[]string{"inspect", "oci:" + t.TempDir() + "/missing"}, 3},
		{[]string{"inspect", "127.0.0.1:1/cli/x:v1"}, 5},
		{[]string{"--plain-http", "mount", "--background", "127.0.0.1:1/cli/x:v1", filepath.Join(t.TempDir(), "m")}, 5},
	} {
		res := runCLI(t, mountCommandTimeout, nil, c.args...)
		if got := exitCode(res.err); got != c.code {
			t.Errorf("imgfs %q: exit %d, want %d: %s", c.args, got, c.code, res.stderr)
		}
	}
}
