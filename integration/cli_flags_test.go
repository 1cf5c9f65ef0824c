package integration

// The new flags of inspect, ls and cache, and the version, completion and
// man page commands, end to end against the real registry.

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestCLIFlags(t *testing.T) {
	reg := StartRegistry(t, RegistryOptions{})
	img := MustImage(t, ImageSpec{Kind: OCI, Config: ocispec.ImageConfig{Env: []string{"A=1"}, Cmd: []string{"/bin/tool"}},
		Layers: []*BuiltLayer{MustLayer(t, LayerSpec{Entries: []Entry{
			Dir("bin"), File("bin/tool", "#!/bin/sh\n"), Symlink("bin/alias", "tool"), Dir("etc"), File("etc/motd", "hi\n"),
			Symlink("conf", "etc"),
		}})}})
	ref := reg.PushImage(t, "cli/flags", "v1", img)
	env := cliEnvFor(t.TempDir())
	cli := func(args ...string) string {
		return mustCLI(t, env, append([]string{"--plain-http"}, args...)...).stdout
	}

	// inspect: history in the text, --config, --format.
	if out := cli("inspect", ref); !strings.Contains(out, "History:\n") || !strings.Contains(out, "Cmd:            [\"/bin/tool\"]") {
		t.Errorf("inspect:\n%s", out)
	}
	var cfg ocispec.Image
	if err := json.Unmarshal([]byte(cli("inspect", "--config", ref)), &cfg); err != nil || cfg.Config.Env[0] != "A=1" {
		t.Errorf("inspect --config: %v %+v", err, cfg)
	}
	if out := cli("inspect", "--format", "{{.Transport}} {{.Digest}} {{json .Config.Config.Cmd}}", ref); out != "docker "+img.Digest.String()+" [\"/bin/tool\"]\n" {
		t.Errorf("inspect --format: %q", out)
	}

	// ls: links as links, -L, -d, several paths, --format.
	for args, want := range map[string]string{
		"/bin/alias":                   "/bin/alias\n",
		"-d /conf":                     "/conf\n",
		"/conf":                        "motd\n",
		"-dL --format {{.Type}} /conf": "dir\n",
		"--format {{.Type}}:{{.Linkname}} /bin/alias /conf": "symlink:tool\nfile:\n",
		"/etc /bin":      "/etc:\nmotd\n\n/bin:\nalias\ntool\n",
		"-lL /bin/alias": "",
	} {
		out := cli(append([]string{"ls", ref}, strings.Fields(args)...)...)
		if args == "-lL /bin/alias" {
			if !strings.HasPrefix(out, "-") || !strings.HasSuffix(out, " /bin/alias\n") {
				t.Errorf("ls -lL /bin/alias: %q", out)
			}
			continue
		}
		if out != want {
			t.Errorf("ls %s: %q, want %q", args, out, want)
		}
	}

	// cache prune with days.
	if out := cli("cache", "prune", "--older-than", "7d"); !strings.HasPrefix(out, "removed 0 files") {
		t.Errorf("cache prune --older-than 7d: %q", out)
	}

	// --version is imgfs version; completion and man pages.
	if v, vv := cli("version"), cli("--version"); v != vv || !strings.HasPrefix(v, "imgfs ") {
		t.Errorf("version %q, --version %q", v, vv)
	}
	for _, shell := range []string{"bash", "zsh", "fish"} {
		if out := cli("completion", shell); !strings.Contains(out, "imgfs") {
			t.Errorf("completion %s: %d bytes", shell, len(out))
		}
	}
	man := t.TempDir()
	cli("gen-man", man)
	for _, page := range []string{"imgfs.1", "imgfs-serve.1", "imgfs-ls.1", "imgfs-tags.1", "imgfs-mounts.1"} {
		if data, err := os.ReadFile(filepath.Join(man, page)); err != nil || !strings.Contains(string(data), ".TH ") {
			t.Errorf("man page %s: %v", page, err)
		}
	}
}
