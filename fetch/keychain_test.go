package fetch

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
)

// isolateCredentialEnv points every credential source at an empty temp dir.
func isolateCredentialEnv(t *testing.T) string {
	dir := t.TempDir()
	t.Setenv("HOME", filepath.Join(dir, "home"))
	t.Setenv("DOCKER_CONFIG", filepath.Join(dir, "docker"))
	t.Setenv("XDG_RUNTIME_DIR", filepath.Join(dir, "run"))
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config"))
	t.Setenv("REGISTRY_AUTH_FILE", "")
	t.Setenv("DOCKER_AUTH_CONFIG", "")
	for _, pair := range envCredentialVars() {
		t.Setenv(pair[0], "")
		t.Setenv(pair[1], "")
	}
	return dir
}

func writeAuthFile(t *testing.T, path, key, user, pass string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
	body := fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, key, auth)
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

func resolveCreds(t *testing.T, repo string) (string, string) {
	t.Helper()
	r, err := name.NewRepository(repo)
	if err != nil {
		t.Fatal(err)
	}
	a, err := authn.Resolve(context.Background(), DefaultKeychain(), r)
	if err != nil {
		t.Fatalf("resolve: %v", err)
	}
	cfg, err := authn.Authorization(context.Background(), a)
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Username, cfg.Password
}

func TestKeychainPrecedence(t *testing.T) {
	dir := isolateCredentialEnv(t)
	const repo = "reg.example:5000/team/app"

	if u, _ := resolveCreds(t, repo); u != "" {
		t.Fatalf("empty environment gave user %q", u)
	}

	writeAuthFile(t, filepath.Join(dir, "docker", "config.json"), "reg.example:5000", "docker", "dpass")
	if u, p := resolveCreds(t, repo); u != "docker" || p != "dpass" {
		t.Errorf("docker config: %q %q", u, p)
	}

	// REGISTRY_AUTH_FILE, when set, wins over the Docker config.
	authFile := filepath.Join(dir, "podman", "auth.json")
	writeAuthFile(t, authFile, "reg.example:5000", "podman", "ppass")
	t.Setenv("REGISTRY_AUTH_FILE", authFile)
	if u, p := resolveCreds(t, repo); u != "podman" || p != "ppass" {
		t.Errorf("REGISTRY_AUTH_FILE: %q %q", u, p)
	}
	// ... but not for a registry it has no entry for.
	writeAuthFile(t, filepath.Join(dir, "docker", "config.json"), "other.example", "docker", "dpass")
	if u, _ := resolveCreds(t, "other.example/x"); u != "docker" {
		t.Errorf("fallback to the Docker config: %q", u)
	}

	// Environment wins over files; a user without a password does not count.
	t.Setenv("SINGULARITY_DOCKER_USERNAME", "sing")
	if u, _ := resolveCreds(t, repo); u != "podman" {
		t.Errorf("incomplete env pair used: %q", u)
	}
	t.Setenv("SINGULARITY_DOCKER_PASSWORD", "spass")
	if u, p := resolveCreds(t, repo); u != "sing" || p != "spass" {
		t.Errorf("SINGULARITY_DOCKER_*: %q %q", u, p)
	}
	t.Setenv("APPTAINER_DOCKER_USERNAME", "appt")
	t.Setenv("APPTAINER_DOCKER_PASSWORD", "apass")
	if u, _ := resolveCreds(t, repo); u != "appt" {
		t.Errorf("APPTAINER_DOCKER_* should win over SINGULARITY_DOCKER_*: %q", u)
	}
	t.Setenv("IMGFS_USERNAME", "imgfs")
	t.Setenv("IMGFS_PASSWORD", "ipass")
	if u, _ := resolveCreds(t, repo); u != "imgfs" {
		t.Errorf("IMGFS_* should win: %q", u)
	}
	if u, _ := resolveCreds(t, "anything.example/x/y"); u != "imgfs" {
		t.Errorf("env credentials apply to every registry: %q", u)
	}
}

func TestKeychainPodmanLocations(t *testing.T) {
	dir := isolateCredentialEnv(t)
	// No Docker config: ggcr's keychain reads $XDG_RUNTIME_DIR/containers/auth.json.
	writeAuthFile(t, filepath.Join(dir, "run", "containers", "auth.json"), "reg.example", "runtime", "rpass")
	if u, p := resolveCreds(t, "reg.example/a"); u != "runtime" || p != "rpass" {
		t.Errorf("XDG_RUNTIME_DIR auth.json: %q %q", u, p)
	}
	// A per-repository entry in REGISTRY_AUTH_FILE (podman allows them).
	authFile := filepath.Join(dir, "auth.json")
	writeAuthFile(t, authFile, "reg.example/team/app", "repo", "repopass")
	t.Setenv("REGISTRY_AUTH_FILE", authFile)
	if u, _ := resolveCreds(t, "reg.example/team/app"); u != "repo" {
		t.Errorf("per-repository entry: %q", u)
	}
	// (docker/cli's lookup also lets that entry match other repositories of
	// the registry by its host name, as ggcr's keychain does.)
	// A missing REGISTRY_AUTH_FILE is not an error; a malformed one is.
	t.Setenv("REGISTRY_AUTH_FILE", filepath.Join(dir, "missing.json"))
	resolveCreds(t, "reg.example/a")
	os.WriteFile(authFile, []byte("{not json"), 0o600)
	t.Setenv("REGISTRY_AUTH_FILE", authFile)
	r, _ := name.NewRepository("reg.example/a")
	if _, err := authn.Resolve(context.Background(), DefaultKeychain(), r); err == nil {
		t.Error("malformed REGISTRY_AUTH_FILE accepted")
	}
}
