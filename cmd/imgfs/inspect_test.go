package main

import (
	"bytes"
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/imgfs/imgfs/internal/registrytest"
	"github.com/imgfs/imgfs/manifest"
)

// memSource is an in-memory registry for the CLI tests; runCLI points
// references to 127.0.0.1:5000 at it.
type memSource struct {
	*registrytest.Registry
	manifests map[string][]byte // bodies by digest, for expectations
}

func newMemSource(t *testing.T) *memSource {
	return &memSource{Registry: registrytest.New(t), manifests: map[string][]byte{}}
}

func (m *memSource) put(mediaType string, body []byte, tags ...string) ocispec.Descriptor {
	d := m.PutManifest(mediaType, body, tags...)
	m.manifests[d.Digest.String()] = body
	return d
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var (
	gzipLayer    = digest.FromString("gzip layer")
	foreignLayer = digest.FromString("foreign layer")
)

// putImage stores a two-layer OCI image for arch and returns its descriptor.
func putImage(t *testing.T, src *memSource, arch string) ocispec.Descriptor {
	created := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	cfg := ocispec.Image{Created: &created, Platform: ocispec.Platform{OS: "linux", Architecture: arch}}
	cfg.Config = ocispec.ImageConfig{
		Env:          []string{"PATH=/usr/bin", "ARCH=" + arch},
		Entrypoint:   []string{"/entry point.sh"},
		Cmd:          []string{"serve", "--port", "80"},
		WorkingDir:   "/srv",
		User:         "app",
		Labels:       map[string]string{"b": "2", "a": "1"},
		ExposedPorts: map[string]struct{}{"80/tcp": {}, "443/tcp": {}},
		Volumes:      map[string]struct{}{"/data": {}},
	}
	cfg.RootFS = ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{digest.FromString("d1"), digest.FromString("d2")}}
	cfg.History = []ocispec.History{
		{Created: &created, CreatedBy: "/bin/sh -c #(nop) ADD file:abc in / "},
		{CreatedBy: "RUN apt-get   install\n  -y x", Comment: "buildkit"},
		{Created: &created, CreatedBy: "ENV A=1", EmptyLayer: true},
	}
	cfgBytes := mustJSON(t, cfg)
	cfgDigest := src.PutBlob(cfgBytes)
	m := ocispec.Manifest{
		MediaType: manifest.MediaTypeOCIManifest,
		Config:    ocispec.Descriptor{MediaType: manifest.MediaTypeOCIConfig, Digest: cfgDigest, Size: int64(len(cfgBytes))},
		Layers: []ocispec.Descriptor{
			{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: gzipLayer, Size: 30 << 20},
			{MediaType: "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", Digest: foreignLayer, Size: 1234,
				URLs: []string{"https://example.com/l.tgz"}},
		},
	}
	m.SchemaVersion = 2
	return src.put(manifest.MediaTypeOCIManifest, mustJSON(t, m))
}

func putIndex(t *testing.T, src *memSource) (index, amd64 ocispec.Descriptor) {
	amd64 = putImage(t, src, "amd64")
	arm64 := putImage(t, src, "arm64")
	amd64.Platform = &ocispec.Platform{OS: "linux", Architecture: "amd64"}
	arm64.Platform = &ocispec.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}
	idx := ocispec.Index{MediaType: manifest.MediaTypeOCIIndex, Manifests: []ocispec.Descriptor{amd64, arm64}}
	idx.SchemaVersion = 2
	return src.put(manifest.MediaTypeOCIIndex, mustJSON(t, idx), "latest"), amd64
}

func TestInspectJSONShape(t *testing.T) {
	src := newMemSource(t)
	indexDesc, amd64 := putIndex(t, src)
	code, stdout, stderr := runCLI(t, nil, src, "inspect", "--platform", "linux/amd64", "--json", "127.0.0.1:5000/team/app")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}

	var doc map[string]any
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, stdout)
	}
	keys := func(m any) []string { return slices.Sorted(maps.Keys(m.(map[string]any))) }
	wantTop := []string{"config", "configDigest", "digest", "indexDigest", "indexMediaType", "layers", "mediaType", "platform",
		"platforms", "reference", "registry", "repository", "schemaVersion", "tag", "totalSize", "transport"}
	if got := keys(doc); !slices.Equal(got, wantTop) {
		t.Errorf("top-level keys %v\nwant %v", got, wantTop)
	}
	if got := keys(doc["platform"]); !slices.Equal(got, []string{"architecture", "os", "variant"}) {
		t.Errorf("platform keys %v", got)
	}
	if got := keys(doc["config"]); !slices.Equal(got, []string{"author", "config", "created", "history"}) {
		t.Errorf("config keys %v", got)
	}
	wantRuntime := []string{"Cmd", "Entrypoint", "Env", "ExposedPorts", "Labels", "StopSignal", "User", "Volumes", "WorkingDir"}
	if got := keys(doc["config"].(map[string]any)["config"]); !slices.Equal(got, wantRuntime) {
		t.Errorf("config.config keys %v\nwant %v", got, wantRuntime)
	}
	layers := doc["layers"].([]any)
	wantLayer := []string{"annotations", "diffID", "digest", "format", "mediaType", "size", "uncompressedSize", "urls"}
	if len(layers) != 2 || !slices.Equal(keys(layers[0]), wantLayer) {
		t.Errorf("layers %v", layers)
	}

	var out InspectOutput
	if err := json.Unmarshal([]byte(stdout), &out); err != nil {
		t.Fatal(err)
	}
	if out.Reference != "127.0.0.1:5000/team/app:latest" || out.Registry != "127.0.0.1:5000" || out.Repository != "team/app" || out.Tag != "latest" {
		t.Errorf("reference parts %+v", out)
	}
	if out.Digest != amd64.Digest.String() || out.IndexDigest != indexDesc.Digest.String() || out.Platform.String() != "linux/amd64" ||
		out.IndexMediaType != manifest.MediaTypeOCIIndex {
		t.Errorf("digests %s %s platform %s", out.Digest, out.IndexDigest, out.Platform)
	}
	if len(out.Platforms) != 2 || out.Platforms[0].String() != "linux/amd64" || out.Platforms[1].String() != "linux/arm64" {
		t.Errorf("platforms %v", out.Platforms)
	}
	rc := out.Config.Config
	if out.Config.Created == nil || *out.Config.Created != "2024-05-06T07:08:09Z" || len(rc.ExposedPorts) != 2 ||
		len(rc.Volumes) != 1 || rc.Labels["a"] != "1" || rc.WorkingDir != "/srv" {
		t.Errorf("config %+v", out.Config)
	}
	if l := out.Layers[1]; l.Format != "foreign" || !slices.Equal(l.URLs, []string{"https://example.com/l.tgz"}) || l.UncompressedSize != nil {
		t.Errorf("foreign layer %+v", l)
	}
	if out.Layers[0].DiffID != digest.FromString("d1").String() || out.Layers[0].Size != 30<<20 {
		t.Errorf("layer 0 %+v", out.Layers[0])
	}
	if out.TotalSize <= 30<<20 {
		t.Errorf("total size %d", out.TotalSize)
	}

	// The document also reads as a manifest.Image (integration tests rely on it).
	var img manifest.Image
	if err := json.Unmarshal([]byte(stdout), &img); err != nil {
		t.Fatalf("does not decode into manifest.Image: %v", err)
	}
	if img.Digest != amd64.Digest || img.IndexDigest != indexDesc.Digest || len(img.Platforms) != 2 || img.Platform.Architecture != "amd64" ||
		img.Config.Config.Env[1] != "ARCH=amd64" || img.Layers[1].Format != manifest.FormatForeign || img.Config.Created == nil {
		t.Errorf("as manifest.Image: %+v", img)
	}
}

func TestInspectJSONEmptyValuesAreStable(t *testing.T) {
	img := &manifest.Image{Name: "r/x:y", Digest: digest.FromString("m"), SchemaVersion: 2}
	b, err := json.Marshal(newInspectOutput(img, nil))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"transport":"docker"`, `"history":[]`, `"indexDigest":""`, `"platforms":[]`, `"layers":[]`, `"created":null`, `"Env":[]`, `"Entrypoint":[]`,
		`"Cmd":[]`, `"Labels":{}`, `"ExposedPorts":{}`, `"Volumes":{}`, `"tag":""`, `"configDigest":""`} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("JSON lacks %s:\n%s", want, b)
		}
	}
	var back manifest.Image
	if err := json.Unmarshal(b, &back); err != nil {
		t.Errorf("empty document does not decode into manifest.Image: %v", err)
	}
}

func TestInspectText(t *testing.T) {
	src := newMemSource(t)
	indexDesc, amd64 := putIndex(t, src)
	code, stdout, stderr := runCLI(t, map[string]string{"IMGFS_PLATFORM": "linux/amd64"}, src, "inspect", "docker://127.0.0.1:5000/team/app")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{
		"Reference:      127.0.0.1:5000/team/app:latest\n",
		"Repository:     team/app\n",
		"Digest:         " + amd64.Digest.String() + "\n",
		"Index:          " + indexDesc.Digest.String() + " (application/vnd.oci.image.index.v1+json)\n",
		"Platforms:      linux/amd64 *, linux/arm64\n",
		"Created:        2024-05-06T07:08:09Z\n",
		`Entrypoint:     ["/entry point.sh"]` + "\n",
		`Cmd:            ["serve","--port","80"]` + "\n",
		"Exposed ports:  443/tcp, 80/tcp\n",
		"Env:\n  PATH=/usr/bin\n  ARCH=amd64\n",
		"Labels:\n  a=1\n  b=2\n",
		"History:\n  2024-05-06T07:08:09Z  /bin/sh -c #(nop) ADD file:abc in /\n  -  RUN apt-get install -y x  # buildkit\n  2024-05-06T07:08:09Z  ENV A=1  (no layer)\n",
		"Layers (2, base first):\n",
		"sha256:" + gzipLayer.Encoded()[:12],
		"30.0 MiB (31457280 bytes)",
		"note: layer 2 is non-distributable (foreign, https://example.com/l.tgz): imgfs reads layers from the registry only and will not mount this image\n",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
	if stderr != "" {
		t.Errorf("stderr at default level: %s", stderr)
	}
}

func TestInspectVerboseLogs(t *testing.T) {
	src := newMemSource(t)
	putIndex(t, src)
	code, _, stderr := runCLI(t, nil, src, "-v", "inspect", "--platform", "linux/arm64", "127.0.0.1:5000/team/app")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"level=INFO", `msg="image reference" registry=127.0.0.1:5000 repository=team/app tag=latest`,
		`msg="OCI index found"`, `msg="platform chosen" platform=linux/arm64`, `msg="config GET"`} {
		if !strings.Contains(stderr, want) {
			t.Errorf("logs lack %q:\n%s", want, stderr)
		}
	}
	if strings.Contains(stderr, "level=DEBUG") {
		t.Error("debug records at -v")
	}
}

func TestInspectRaw(t *testing.T) {
	src := newMemSource(t)
	indexDesc, amd64 := putIndex(t, src)
	code, stdout, _ := runCLI(t, nil, src, "inspect", "--raw", "--platform", "linux/amd64", "127.0.0.1:5000/team/app")
	if code != 0 || stdout != string(src.manifests[indexDesc.Digest.String()]) {
		t.Errorf("raw index: %d %q", code, stdout)
	}
	code, stdout, _ = runCLI(t, nil, src, "inspect", "--raw", "127.0.0.1:5000/team/app@"+amd64.Digest.String())
	if code != 0 || stdout != string(src.manifests[amd64.Digest.String()]) {
		t.Errorf("raw manifest: %d %q", code, stdout)
	}
}

func TestInspectUncompressedSize(t *testing.T) {
	img := &manifest.Image{Layers: []manifest.Layer{{Digest: gzipLayer, Size: 10}, {Digest: foreignLayer, Size: 20}}}
	doc := newInspectOutput(img, func(l manifest.Layer) (int64, bool) {
		return 99, l.Digest == gzipLayer
	})
	if doc.Layers[0].UncompressedSize == nil || *doc.Layers[0].UncompressedSize != 99 || doc.Layers[1].UncompressedSize != nil {
		t.Errorf("layers %+v", doc.Layers)
	}
	var buf bytes.Buffer
	if err := writeInspectText(&buf, doc); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "99 B (99 bytes)") {
		t.Errorf("text lacks the uncompressed size:\n%s", buf.String())
	}
}

func TestInspectTextSchema1Sizes(t *testing.T) {
	doc := newInspectOutput(&manifest.Image{
		SchemaVersion: 1,
		Layers:        []manifest.Layer{{Digest: gzipLayer, Size: -1, Format: manifest.FormatGzip}},
	}, nil)
	var buf bytes.Buffer
	if err := writeInspectText(&buf, doc); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "Total size:     unknown (schema 1") || !strings.Contains(buf.String(), "gzip    unknown") {
		t.Errorf("output:\n%s", buf.String())
	}
}

func TestHumanSize(t *testing.T) {
	tests := map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.00 KiB", 1536: "1.50 KiB", 10 << 20: "10.0 MiB",
		30 << 20: "30.0 MiB", 150 << 20: "150 MiB", 5 << 30: "5.00 GiB", 1 << 40: "1.00 TiB"}
	for n, want := range tests {
		if got := humanSize(n); got != want {
			t.Errorf("humanSize(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestInspectConfigAndFormat(t *testing.T) {
	src := newMemSource(t)
	desc := putImage(t, src, "amd64")
	ref := "127.0.0.1:5000/team/app@" + desc.Digest.String()
	code, stdout, stderr := runCLI(t, nil, src, "inspect", "--config", ref)
	var cfg ocispec.Image
	if code != 0 || json.Unmarshal([]byte(stdout), &cfg) != nil || len(cfg.History) != 3 || cfg.Config.User != "app" {
		t.Fatalf("--config: exit %d, %q, %s", code, stdout, stderr)
	}
	code, stdout, stderr = runCLI(t, nil, src, "inspect", "--format", `{{.Digest}} {{.Platform}} {{len .Layers}} {{json .Config.Config.Cmd}} {{(index .Config.History 2).CreatedBy}}`, ref)
	if want := desc.Digest.String() + " linux/amd64 2 [\"serve\",\"--port\",\"80\"] ENV A=1\n"; code != 0 || stdout != want {
		t.Errorf("--format: exit %d, %q (%s), want %q", code, stdout, stderr, want)
	}
	for _, args := range [][]string{{"--format", "{{.Nope", ref}, {"--json", "--config", ref}, {"--format", "x", "--raw", ref}} {
		if code, _, stderr := runCLI(t, nil, src, append([]string{"inspect"}, args...)...); code != exitUsage {
			t.Errorf("inspect %q: exit %d, want %d: %s", args, code, exitUsage, stderr)
		}
	}
	if code, _, stderr := runCLI(t, nil, src, "inspect", "--format", "{{.Nope}}", ref); code != exitFailure || !strings.Contains(stderr, "Nope") {
		t.Errorf("template on a missing field: exit %d: %s", code, stderr)
	}
}
