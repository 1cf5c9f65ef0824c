package integration

// Local sources: an OCI layout (oci:), an OCI archive (oci-archive:) and a
// docker archive (docker-archive:) made from it by skopeo, read in place by
// every command and compared with umoci's unpack of the same layout.

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// localLayers are two gzip layers with what extractors must get right: a
// whiteout, an opaque directory, hard links, symlinks, a setuid file, a
// device, and a file of several MiB.
func localLayers(big []byte) [][]Entry {
	return [][]Entry{
		{
			Dir("etc"), File("etc/os-release", "NAME=local\n"), File("etc/gone", "whited out\n"),
			Dir("usr"), Dir("usr/bin"), {Path: "usr/bin/tool", Type: TypeFile, Mode: 0o4755, Content: []byte("#!/bin/sh\n")},
			Symlink("usr/bin/alias", "tool"), Symlink("os-release", "/etc/os-release"),
			Dir("opaque"), File("opaque/old", "old\n"),
			Hardlink("usr/bin/hard", "usr/bin/tool"),
			{Path: "data.bin", Type: TypeFile, Mode: 0o600, UID: 1000, GID: 1000, Content: big},
			Dir("dev"), CharDev("dev/null", 1, 3),
		},
		{
			Whiteout("etc/gone"), OpaqueDir("opaque"), File("opaque/new", "new\n"),
			File("etc/motd", "from the top layer\n"),
		},
	}
}

// localSources writes the image as an OCI layout, then has skopeo copy it
// into an OCI archive and a docker archive; it returns the three references
// and umoci's unpack of the layout.
func localSources(t *testing.T, img *BuiltImage) (refs map[string]string, oracle string) {
	t.Helper()
	skopeo := RequireTool(t, "skopeo")
	dir := t.TempDir()
	layout := filepath.Join(dir, "layout")
	if err := WriteOCILayout(layout, "v1", img); err != nil {
		t.Fatal(err)
	}
	ociArchive := filepath.Join(dir, "image.oci.tar")
	dockerArchive := filepath.Join(dir, "image.docker.tar")
	for _, dest := range []string{"oci-archive:" + ociArchive + ":v1", "docker-archive:" + dockerArchive + ":example.com/local/img:v1"} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		out, err := exec.CommandContext(ctx, skopeo, "--insecure-policy", "copy", "--quiet", "oci:"+layout+":v1", dest).CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("skopeo copy to %s: %v\n%s", dest, err, out)
		}
	}
	return map[string]string{
		"oci":            "oci:" + layout + ":v1",
		"oci-archive":    "oci-archive:" + ociArchive + ":v1",
		"docker-archive": "docker-archive:" + dockerArchive,
	}, UmociUnpack(t, layout, "v1")
}

func TestLocalSources(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the umoci oracle needs root to unpack owners and devices")
	}
	big := conformanceRandom(3 << 20)
	entries := localLayers(big)
	var layers []*BuiltLayer
	for _, e := range entries {
		layers = append(layers, MustLayer(t, LayerSpec{Compression: Gzip, Entries: e}))
	}
	img := MustImage(t, ImageSpec{Kind: OCI, Layers: layers, Config: ocispec.ImageConfig{
		Env: []string{"PATH=/usr/bin", "GREETING=hello world"}, Cmd: []string{"/usr/bin/tool"}}})
	refs, oracleRoot := localSources(t, img)
	oracle, err := ScanTree(oracleRoot, ScanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	synth := synthesizedPaths(oracle)
	want := withSynthesizedRootLinks(oracle, synth)
	cmp := conformanceCompare(oracle, declaredPaths(entries...), emptyXattrs(entries...))
	wantTags := map[string][]string{"oci": {"v1"}, "oci-archive": {"v1"}, "docker-archive": {"example.com/local/img:v1"}}
	wantFormat := map[string]string{"oci": "gzip", "oci-archive": "gzip", "docker-archive": "tar"}

	for _, transport := range []string{"oci", "oci-archive", "docker-archive"} {
		ref := refs[transport]
		t.Run(transport, func(t *testing.T) {
			env := cliEnvFor(t.TempDir())

			res := mustCLI(t, env, "inspect", "--json", ref)
			var doc struct {
				Reference, Transport string
				Layers               []struct{ Format string }
				Config               struct{ Config struct{ Env []string } }
			}
			if err := json.Unmarshal([]byte(res.stdout), &doc); err != nil {
				t.Fatalf("inspect --json: %v\n%s", err, res.stdout)
			}
			if doc.Transport != transport || !strings.HasPrefix(doc.Reference, transport+":/") || len(doc.Layers) != 2 ||
				doc.Layers[0].Format != wantFormat[transport] || !slices.Contains(doc.Config.Config.Env, "GREETING=hello world") {
				t.Errorf("inspect: %+v", doc)
			}

			res = mustCLI(t, env, "tags", ref)
			if got := strings.Fields(res.stdout); !slices.Equal(got, wantTags[transport]) {
				t.Errorf("tags: %q, want %q", got, wantTags[transport])
			}

			res = mustCLI(t, env, "cat", ref, "/os-release")
			if res.stdout != "NAME=local\n" {
				t.Errorf("cat /os-release: %q", res.stdout)
			}
			res = mustCLI(t, env, "cat", ref, "/data.bin")
			if !bytes.Equal([]byte(res.stdout), big) {
				t.Errorf("cat /data.bin: %d bytes, content differs", len(res.stdout))
			}

			// ls -R of the whole tree names what umoci unpacked.
			res = mustCLI(t, env, "ls", "-R", "--json", ref, "/")
			var listed []struct{ Path, Type string }
			if err := json.Unmarshal([]byte(res.stdout), &listed); err != nil {
				t.Fatal(err)
			}
			var gotPaths, wantPaths []string
			for _, e := range listed {
				gotPaths = append(gotPaths, strings.TrimPrefix(e.Path, "/"))
			}
			for p := range oracle.Entries {
				if p != "." {
					wantPaths = append(wantPaths, p)
				}
			}
			slices.Sort(gotPaths)
			slices.Sort(wantPaths)
			if !slices.Equal(gotPaths, wantPaths) {
				t.Errorf("ls -R: %q\nwant %q", gotPaths, wantPaths)
			}

			res = mustCLI(t, env, "index", "--json", ref)
			var rows []struct {
				Format  string
				Entries int
			}
			if err := json.Unmarshal([]byte(res.stdout), &rows); err != nil || len(rows) != 2 || rows[0].Format != wantFormat[transport] || rows[0].Entries == 0 {
				t.Errorf("index --json: %v %s", err, res.stdout)
			}

			m := mountImage(t, ref, mountOptions{CacheDir: strings.TrimPrefix(env[0], "IMGFS_CACHE_DIR=")})
			assertSynthesized(t, m.Dir, oracle, synth)
			got, err := ScanTree(m.Dir, ScanOptions{Skip: skipSynthesized(synth)})
			if err != nil {
				t.Fatal(err)
			}
			if diffs := CompareTrees(want, got, cmp); len(diffs) > 0 {
				t.Errorf("%s mount differs from umoci's unpack of the layout:\n%s", transport, FormatDiffs(diffs, 20))
			}
			def, err := os.ReadFile(m.path(".singularity.d/Singularity"))
			if err != nil || !strings.HasPrefix(string(def), "bootstrap: "+transport+"\nfrom: /") {
				t.Errorf("/.singularity.d/Singularity: %q, %v", def, err)
			}
			m.unmount(t)
		})
	}
}
