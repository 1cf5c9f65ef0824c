package integration

// End-to-end tests of the imgfs binary's inspect command.

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/imgfs/imgfs/manifest"
)

// cliResult is one run of the imgfs binary.
type cliResult struct {
	stdout, stderr string
	err            error
}

// runImgfs runs the binary with a clean environment: only PATH, an empty
// HOME and the given variables, so no credentials leak in from the host.
func runImgfs(t *testing.T, env []string, args ...string) cliResult {
	t.Helper()
	bin := imgfsBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "IMGFS_PLATFORM=linux/amd64"}, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return cliResult{stdout: stdout.String(), stderr: stderr.String(), err: err}
}

// inspectJSON runs `imgfs inspect --plain-http --json` and decodes the
// image (the JSON form of manifest.Image).
func inspectJSON(t *testing.T, env []string, ref string, extra ...string) *manifest.Image {
	t.Helper()
	args := append([]string{"inspect", "--plain-http", "--json"}, extra...)
	res := runImgfs(t, env, append(args, ref)...)
	if res.err != nil {
		t.Fatalf("imgfs %v %s: %v\nstderr: %s", args, ref, res.err, res.stderr)
	}
	var img manifest.Image
	if err := json.Unmarshal([]byte(res.stdout), &img); err != nil {
		t.Fatalf("inspect --json output is not an image: %v\n%s", err, res.stdout)
	}
	return &img
}

func TestInspectCLIAnonymous(t *testing.T) {
	reg := StartRegistry(t, RegistryOptions{})
	img := mixedFormatImage(t, OCI)
	ref := reg.Ref("cli/mixed", "v1")
	reg.PushImage(t, "cli/mixed", "v1", img)

	got := inspectJSON(t, nil, ref)
	assertResolved(t, got, img)
	var formats []manifest.Format
	for _, l := range got.Layers {
		formats = append(formats, l.Format)
	}
	if !slices.Equal(formats, wantFormats) {
		t.Errorf("formats %v, want %v", formats, wantFormats)
	}
	cfg := got.Config.Config
	if !slices.Equal(cfg.Env, []string{"PATH=/usr/local/bin:/usr/bin", "LANG=C.UTF-8"}) ||
		!slices.Equal(cfg.Entrypoint, []string{"/entry", "--serve"}) || cfg.Labels["org.opencontainers.image.title"] != "mixed" {
		t.Errorf("config %+v", cfg)
	}

	// The human form shows the same facts.
	res := runImgfs(t, nil, "inspect", "--plain-http", ref)
	if res.err != nil {
		t.Fatalf("imgfs inspect: %v\n%s", res.err, res.stderr)
	}
	// Layer digests may be abbreviated (algorithm + 12 hex digits, as docker does).
	for _, want := range []string{img.Digest.String(), "LANG=C.UTF-8", "/entry", "org.opencontainers.image.title", "mixed",
		img.Layers[3].Digest.String()[:len("sha256:")+12], string(manifest.FormatEstargz)} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("inspect output lacks %q:\n%s", want, res.stdout)
		}
	}
}

func TestInspectCLIHtpasswd(t *testing.T) {
	reg := StartRegistry(t, RegistryOptions{Auth: AuthHtpasswd})
	img := smallImage(t, DockerSchema2)
	ref := reg.Ref("cli/private", "v1")
	reg.PushImage(t, "cli/private", "v1", img)

	t.Run("env", func(t *testing.T) {
		assertResolved(t, inspectJSON(t, []string{"IMGFS_USERNAME=" + reg.Username, "IMGFS_PASSWORD=" + reg.Password}, ref), img)
	})
	t.Run("docker-config", func(t *testing.T) {
		dir := reg.WriteDockerConfig(t, reg.Username, reg.Password)
		assertResolved(t, inspectJSON(t, []string{"DOCKER_CONFIG=" + dir}, ref), img)
	})
	t.Run("wrong-password", func(t *testing.T) {
		const wrong = "cli-Wrong-Password"
		res := runImgfs(t, []string{"IMGFS_USERNAME=" + reg.Username, "IMGFS_PASSWORD=" + wrong}, "inspect", "--plain-http", ref)
		assertCLIUnauthorized(t, res, wrong)
	})
	t.Run("no-credentials", func(t *testing.T) {
		assertCLIUnauthorized(t, runImgfs(t, nil, "inspect", "--plain-http", ref), "")
	})
}

func assertCLIUnauthorized(t *testing.T, res cliResult, secret string) {
	t.Helper()
	if res.err == nil {
		t.Fatalf("inspect succeeded without valid credentials:\n%s", res.stdout)
	}
	if !strings.Contains(strings.ToLower(res.stderr), "unauthorized") {
		t.Errorf("error does not say unauthorized:\n%s", res.stderr)
	}
	if secret != "" && strings.Contains(res.stdout+res.stderr, secret) {
		t.Errorf("output leaks the password:\n%s", res.stderr)
	}
	if strings.Count(strings.TrimSpace(res.stderr), "\n") > 5 {
		t.Errorf("error is not one clear message:\n%s", res.stderr)
	}
}

func TestInspectCLIToken(t *testing.T) {
	reg := StartRegistry(t, RegistryOptions{Auth: AuthToken})
	img := smallImage(t, OCI)
	ref := reg.Ref("cli/token", "v1")
	reg.PushImage(t, "cli/token", "v1", img)
	before := reg.Tokens.Issued()
	assertResolved(t, inspectJSON(t, []string{"IMGFS_USERNAME=" + reg.Username, "IMGFS_PASSWORD=" + reg.Password}, ref), img)
	if reg.Tokens.Issued() == before {
		t.Error("inspect got no token")
	}
	const wrong = "cli-Token-Wrong"
	assertCLIUnauthorized(t, runImgfs(t, []string{"IMGFS_USERNAME=" + reg.Username, "IMGFS_PASSWORD=" + wrong},
		"inspect", "--plain-http", ref), wrong)
}

func TestInspectCLIPlatforms(t *testing.T) {
	reg := StartRegistry(t, RegistryOptions{})
	for _, kind := range []ManifestKind{OCI, DockerSchema2} {
		idx := multiPlatformIndex(t, kind)
		ref := reg.Ref("cli/multi", kind.String())
		reg.PushIndex(t, "cli/multi", kind.String(), idx)
		for _, want := range idx.Images {
			p := platformString(want.Platform)
			got := inspectJSON(t, nil, ref, "--platform", p)
			assertResolved(t, got, want)
			if got.IndexDigest != idx.Digest || len(got.Platforms) != 3 || got.Config.Config.Labels["platform"] != p {
				t.Errorf("%s %s: index %s platforms %v labels %v", kind, p, got.IndexDigest, got.Platforms, got.Config.Config.Labels)
			}
		}
		res := runImgfs(t, nil, "inspect", "--plain-http", "--platform", "linux/s390x", ref)
		if res.err == nil {
			t.Fatalf("%s: linux/s390x inspected:\n%s", kind, res.stdout)
		}
		for _, p := range []string{"linux/amd64", "linux/arm64", "linux/arm/v7"} {
			if !strings.Contains(res.stderr, p) {
				t.Errorf("%s: no-match error does not list %s:\n%s", kind, p, res.stderr)
			}
		}
	}
}
