package fs

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/imgfs/imgfs/index"
)

// apptainerLayout lists what Apptainer 1.5.3 adds to a test image (facts
// only: paths, types, modes, link targets, label keys).
const apptainerLayout = "testdata/apptainer-sandbox-layout.txt"

// layoutEntry is one path of the listing, or one synthesized node.
type layoutEntry struct {
	typ    string // dir, file, link
	perm   uint32
	target string
}

func (e layoutEntry) String() string {
	s := fmt.Sprintf("%s %04o", e.typ, e.perm)
	if e.target != "" {
		s += " -> " + e.target
	}
	return s
}

// readApptainerLayout parses the listing: the paths, and the label keys.
func readApptainerLayout(t *testing.T) (map[string]layoutEntry, []string) {
	t.Helper()
	f, err := os.Open(apptainerLayout)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	paths := map[string]layoutEntry{}
	var labels []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if key, ok := strings.CutPrefix(line, "label "); ok {
			labels = append(labels, key)
			continue
		}
		var e layoutEntry
		var p string
		if _, err := fmt.Sscanf(line, "%s %o %s", &e.typ, &e.perm, &p); err != nil {
			t.Fatalf("%s: %q: %v", apptainerLayout, line, err)
		}
		if _, target, ok := strings.Cut(line, " -> "); ok {
			e.target = target
		}
		paths[p] = e
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(paths) == 0 || len(labels) == 0 {
		t.Fatalf("%s: no paths or no labels", apptainerLayout)
	}
	return paths, labels
}

// apptainerDeviations are the documented differences from Apptainer's
// sandbox: /tmp and /var/tmp, which Apptainer creates 0755 in an image
// without them (and binds over at run time), are 1777 in the mount, as a
// chroot or another tool expects them.
var apptainerDeviations = map[string]layoutEntry{
	"tmp":     {typ: "dir", perm: 0o1777},
	"var/tmp": {typ: "dir", perm: 0o1777},
}

// labelsNotDerived are the build labels Apptainer writes that the mount
// leaves out: the Apptainer version that built the sandbox, and the build
// date when the image does not say when it was created (this one does
// not).
var labelsNotDerived = []string{"org.label-schema.usage.apptainer.version", "org.label-schema.build-date"}

// TestSynthesizeLayoutMatchesApptainer compares, path by path, what
// Synthesize adds to an image (type, mode, link target) with what
// 'apptainer build --sandbox' added to the same image, and the build
// labels of labels.json. What the scripts do is tested by running them
// (singularity_test.go, and integration's busybox chroot).
func TestSynthesizeLayoutMatchesApptainer(t *testing.T) {
	imageLabels := map[string]string{"org.example.a": "1", "maintainer": "me"}
	cfg := ocispec.Image{
		Platform: ocispec.Platform{Architecture: "amd64", OS: "linux"},
		Config: ocispec.ImageConfig{
			Env:        []string{"PATH=/usr/local/bin:/usr/bin:/bin", "FOO=bar baz"},
			Entrypoint: []string{"/bin/echo", "ep-arg"},
			Cmd:        []string{"cmd 1", "it's"},
			Labels:     imageLabels,
			WorkingDir: "/",
		},
	}
	// The image's own paths: /etc with group and passwd, /bin with busybox.
	tree := mustMerge(t, []index.Entry{
		dir(""), dir("etc"), reg("etc/group", 10), reg("etc/passwd", 30), dir("bin"), reg("bin/busybox", 100),
		sym("bin/sh", "busybox"), sym("bin/true", "busybox"),
	})
	prov := Provenance{Bootstrap: "oci", From: "/tmp/layout"}
	if err := Synthesize(tree, cfg, SynthOptions{Provenance: prov, Logger: quietLogger()}); err != nil {
		t.Fatal(err)
	}

	got := map[string]layoutEntry{}
	var labelsData []byte
	_ = tree.Walk(func(p string, n *Node) error {
		if !n.Synthetic() {
			return nil
		}
		rel := strings.TrimPrefix(p, "/")
		e := layoutEntry{perm: n.Perm()}
		switch n.Type() {
		case index.TypeDir:
			e.typ = "dir"
		case index.TypeReg:
			e.typ = "file"
		case index.TypeSymlink:
			e.typ, e.target = "link", n.Linkname()
		default:
			e.typ = fmt.Sprint(n.Type())
		}
		if rel == ".singularity.d/labels.json" {
			labelsData = n.Content()
		}
		got[rel] = e
		return nil
	})

	want, wantLabels := readApptainerLayout(t)
	maps.Copy(want, apptainerDeviations)
	for _, p := range slices.Sorted(maps.Keys(want)) {
		w := want[p]
		switch g, ok := got[p]; {
		case !ok:
			t.Errorf("/%s: Apptainer writes %s; not synthesized", p, w)
		case g != w:
			t.Errorf("/%s: synthesized %s, Apptainer writes %s", p, g, w)
		}
	}
	for _, p := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[p]; !ok {
			t.Errorf("/%s synthesized (%s); Apptainer writes nothing there", p, got[p])
		}
	}

	var labels map[string]string
	if err := json.Unmarshal(labelsData, &labels); err != nil {
		t.Fatalf("labels.json: %v\n%s", err, labelsData)
	}
	var gotLabels []string
	for k, v := range labels {
		if imageLabels[k] != v {
			gotLabels = append(gotLabels, k)
		}
	}
	slices.Sort(gotLabels)
	wantLabels = slices.DeleteFunc(wantLabels, func(k string) bool { return slices.Contains(labelsNotDerived, k) })
	slices.Sort(wantLabels)
	if !slices.Equal(gotLabels, wantLabels) {
		t.Errorf("build labels %q, Apptainer's (derivable) %q", gotLabels, wantLabels)
	}
	for k, v := range imageLabels {
		if labels[k] != v {
			t.Errorf("image label %s=%q, want %q", k, labels[k], v)
		}
	}
}

func TestLabelsJSONDerivedLabels(t *testing.T) {
	created := time.Date(2024, 3, 5, 7, 8, 9, 0, time.FixedZone("CET", 3600))
	data, err := labelsJSON(map[string]string{"a": "1", "org.label-schema.schema-version": "image's"}, "arm64", &created,
		Provenance{Bootstrap: "docker", From: "alpine:3.20", BaseName: "docker.io/library/alpine:3.20", BaseDigest: "sha256:abc"})
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]string
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"a":                                                    "1",
		"org.label-schema.schema-version":                      "1.0", // build labels win, as in Apptainer
		"org.label-schema.build-arch":                          "arm64",
		"org.label-schema.build-date":                          "Tuesday_5_March_2024_6:8:9_UTC",
		"org.opencontainers.image.base.name":                   "docker.io/library/alpine:3.20",
		"org.opencontainers.image.base.digest":                 "sha256:abc",
		"org.label-schema.usage.singularity.deffile.bootstrap": "docker",
		"org.label-schema.usage.singularity.deffile.from":      "alpine:3.20",
	}
	if !maps.Equal(got, want) {
		t.Errorf("labels %v\nwant %v", got, want)
	}
	if bytes.HasSuffix(data, []byte("\n")) || !bytes.Contains(data, []byte("{\n\t\"a\": \"1\",\n")) {
		t.Errorf("not Apptainer's layout (tab indent, sorted, no final newline):\n%s", data)
	}
}

func TestSynthesizeRootTime(t *testing.T) {
	cfg := ocispec.Image{Created: &testTime}
	tree := mustMerge(t, []index.Entry{dir("etc")})
	if err := Synthesize(tree, cfg, SynthOptions{Logger: quietLogger()}); err != nil {
		t.Fatal(err)
	}
	if got := tree.Root().ModTime(); !got.Equal(testTime) {
		t.Errorf("implied root: mtime %v, want the image's creation time", got)
	}
	if etc, _ := tree.Lookup("etc"); etc.ModTime().Equal(testTime) {
		t.Error("a declared directory's time changed")
	}
	declared := dir("")
	declared.ModTime = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	tree = mustMerge(t, []index.Entry{declared})
	if err := Synthesize(tree, cfg, SynthOptions{Logger: quietLogger()}); err != nil {
		t.Fatal(err)
	}
	if got := tree.Root().ModTime(); !got.Equal(declared.ModTime) {
		t.Errorf("declared root: mtime %v, want the layer's %v", got, declared.ModTime)
	}
}
