package integration

// The README's quick start, run as written.

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// readmeQuickStart extracts the shell block that follows the quickstart
// marker of README.md.
func readmeQuickStart(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(data), "<!-- quickstart:")
	if !ok {
		t.Fatal("README.md has no <!-- quickstart: marker")
	}
	_, rest, ok = strings.Cut(rest, "```sh\n")
	block, _, closed := strings.Cut(rest, "```\n")
	if !ok || !closed || !strings.Contains(rest, "<!-- quickstart end -->") {
		t.Fatal("no ```sh block after the quickstart marker")
	}
	return block
}

// TestReadmeQuickStart runs the README's quick start with bash, exactly as
// written, against a loopback registry: the only differences from a user's
// run are the environment variables the README documents (IMAGE, and
// IMGFS_PLAIN_HTTP for the loopback registry) and a HOME of its own.
func TestReadmeQuickStart(t *testing.T) {
	script := readmeQuickStart(t)
	reg := StartRegistry(t, RegistryOptions{})
	img := MustImage(t, ImageSpec{Kind: OCI, Layers: []*BuiltLayer{MustLayer(t, LayerSpec{Entries: []Entry{
		Dir("etc"), File("etc/os-release", "PRETTY_NAME=\"imgfs quick start\"\n"),
	}})}})
	ref := reg.PushImage(t, "readme/quickstart", "v1", img)

	// imgfs on PATH as `make install` puts it there.
	binDir := filepath.Join(t.TempDir(), "bin")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(imgfsBinary(t), filepath.Join(binDir, "imgfs")); err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	mnt := filepath.Join(home, "imgfs-demo")
	liveMounts.Store(mnt, t.Name())
	t.Cleanup(func() {
		if IsMounted(mnt) {
			t.Errorf("the quick start left %s mounted", mnt)
			ForceUnmount(mnt)
		}
		liveMounts.Delete(mnt)
	})

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, RequireTool(t, "bash"), "-e", "-c", script)
	cmd.Env = []string{"PATH=" + binDir + ":" + os.Getenv("PATH"), "HOME=" + home, "IMAGE=" + ref, "IMGFS_PLAIN_HTTP=1", "IMGFS_PLATFORM=linux/amd64"}
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		t.Fatalf("the README's quick start failed: %v\nscript:\n%s\nstdout:\n%s\nstderr:\n%s", err, script, out.String(), stderr.String())
	}
	for _, want := range []string{
		"mounted at " + mnt,                       // mount --background
		`PRETTY_NAME="imgfs quick start"`,         // cat through the mount
		"actions\nenv\nlabels.json\nlibs\n",       // ls .singularity.d
		"-rw-r--r--   1     0     0           32", // imgfs ls -l
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("quick start output lacks %q:\n%s", want, out.String())
		}
	}
	if !regexp.MustCompile(regexp.QuoteMeta(mnt) + `\s+mount\s+` + regexp.QuoteMeta(ref) + `\s+\d+`).MatchString(out.String()) {
		t.Errorf("imgfs mounts does not list the mount with its image and pid:\n%s", out.String())
	}
	if IsMounted(mnt) {
		t.Error("still mounted after the quick start's unmount")
	}
}
