package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/imgfs/imgfs/fetch"
	"github.com/imgfs/imgfs/index"
	"github.com/imgfs/imgfs/manifest"
)

// localImage is an image as blobs: a config and gzip layers.
type localImage struct {
	config   []byte
	manifest []byte
	layers   [][]byte
	tars     [][]byte // the uncompressed layers
}

func plainTar(t *testing.T, entries []tarEntry) []byte {
	t.Helper()
	var gz bytes.Buffer
	gz.Write(gzipTar(t, entries))
	zr, err := gzip.NewReader(&gz)
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func newLocalImage(t *testing.T, motd string) *localImage {
	t.Helper()
	entries := [][]tarEntry{
		{{name: "etc/", typ: tar.TypeDir}, {name: "etc/motd", typ: tar.TypeReg, content: "base\n"}},
		{{name: "etc/motd", typ: tar.TypeReg, content: motd}, {name: "link", typ: tar.TypeSymlink, link: "etc/motd"}},
	}
	img := &localImage{}
	cfg := ocispec.Image{Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"}}
	cfg.Config.Env = []string{"PATH=/bin"}
	cfg.RootFS.Type = "layers"
	m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest}
	m.SchemaVersion = 2
	for _, e := range entries {
		blob := gzipTar(t, e)
		img.layers = append(img.layers, blob)
		img.tars = append(img.tars, plainTar(t, e))
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, digest.FromBytes(img.tars[len(img.tars)-1]))
		m.Layers = append(m.Layers, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: digest.FromBytes(blob), Size: int64(len(blob))})
	}
	img.config, _ = json.Marshal(cfg)
	m.Config = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(img.config), Size: int64(len(img.config))}
	img.manifest, _ = json.Marshal(m)
	return img
}

func writeFile(t *testing.T, p string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// writeLayout writes an OCI layout holding the images under their tags.
func writeLayout(t *testing.T, dir string, tags []string, imgs ...*localImage) {
	t.Helper()
	idx := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex}
	idx.SchemaVersion = 2
	for i, img := range imgs {
		for _, b := range append([][]byte{img.config, img.manifest}, img.layers...) {
			d := digest.FromBytes(b)
			writeFile(t, filepath.Join(dir, "blobs", "sha256", d.Encoded()), b)
		}
		desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(img.manifest), Size: int64(len(img.manifest))}
		if tags != nil {
			desc.Annotations = map[string]string{ocispec.AnnotationRefName: tags[i]}
		}
		idx.Manifests = append(idx.Manifests, desc)
	}
	data, _ := json.Marshal(idx)
	writeFile(t, filepath.Join(dir, "index.json"), data)
	writeFile(t, filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`))
}

// tarDir writes an uncompressed tar of dir's files (PAX names for long
// ones, as skopeo's archives have).
func tarDir(t *testing.T, dir, out string, extra map[string][]byte) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(name string, data []byte) {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
			t.Fatal(err)
		}
		tw.Write(data)
	}
	if dir != "" {
		filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			rel, _ := filepath.Rel(dir, p)
			data, _ := os.ReadFile(p)
			add(filepath.ToSlash(rel), data)
			return nil
		})
	}
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for k := range extra {
			if !yield(k) {
				return
			}
		}
	}) {
		add(name, extra[name])
	}
	tw.Close()
	writeFile(t, out, buf.Bytes())
}

func readPath(t *testing.T, img *Image, p string) string {
	t.Helper()
	f, err := img.Open(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if _, err := f.WriteTo(&out); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

func TestLocalSources(t *testing.T) {
	a, b := newLocalImage(t, "from a\n"), newLocalImage(t, "from b\n")
	root := t.TempDir()
	single := filepath.Join(root, "single")
	writeLayout(t, single, []string{"v1"}, a)
	multi := filepath.Join(root, "multi")
	writeLayout(t, multi, []string{"a", "b"}, a, b)
	archive := filepath.Join(root, "multi.tar")
	tarDir(t, multi, archive, nil)
	// A docker archive as skopeo writes one: uncompressed layers, named
	// by the manifest.json, config by its digest.
	dockerArchive := filepath.Join(root, "docker.tar")
	dm, _ := json.Marshal([]dockerArchiveImage{{Config: digest.FromBytes(b.config).Encoded() + ".json",
		RepoTags: []string{"example.com/b:latest"}, Layers: []string{"l1/layer.tar", "l2/layer.tar"}}})
	tarDir(t, "", dockerArchive, map[string][]byte{
		"manifest.json": dm, digest.FromBytes(b.config).Encoded() + ".json": b.config,
		"l1/layer.tar": b.tars[0], "l2/layer.tar": b.tars[1],
	})

	for _, c := range []struct {
		ref, motd, scope string
	}{
		{"oci:" + single, "from a\n", "oci:" + single},
		{"oci:" + single + ":v1", "from a\n", "oci:" + single},
		{"oci:" + multi + ":b", "from b\n", "oci:" + multi},
		{"oci:" + multi + "@" + digest.FromBytes(a.manifest).String(), "from a\n", "oci:" + multi},
		{"oci-archive:" + archive + ":a", "from a\n", "oci-archive:" + archive},
		{"oci-archive:" + archive + ":b", "from b\n", "oci-archive:" + archive},
		{"docker-archive:" + dockerArchive, "from b\n", "docker-archive:" + dockerArchive},
		{"docker-archive:" + dockerArchive + ":example.com/b:latest", "from b\n", "docker-archive:" + dockerArchive},
		{"docker-archive:" + dockerArchive + ":@0", "from b\n", "docker-archive:" + dockerArchive},
	} {
		t.Run(c.ref, func(t *testing.T) {
			opts := testOptions(t)
			opts.Synthesize = true
			img, err := Open(context.Background(), c.ref, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer img.Close()
			if got := readPath(t, img, "/link"); got != c.motd {
				t.Errorf("/link: %q, want %q", got, c.motd)
			}
			if got := Scope(img.Manifest); got != c.scope {
				t.Errorf("scope %q, want %q", got, c.scope)
			}
			if !strings.HasPrefix(img.Manifest.Name, img.Reference.Transport+":/") {
				t.Errorf("name %q", img.Manifest.Name)
			}
			def := readPath(t, img, "/.singularity.d/Singularity")
			if !strings.HasPrefix(def, "bootstrap: "+img.Reference.Transport+"\nfrom: /") {
				t.Errorf("Singularity: %q", def)
			}
			st := img.Stats()
			if st.Layers[1].Requests == 0 || st.Layers[1].Fetched == 0 {
				t.Errorf("stats of a local blob: %+v", st.Layers[1])
			}
		})
	}

	for ref, wantErr := range map[string]string{
		"oci:" + multi:                    "holds 2 images: name one",
		"oci:" + multi + ":c":             `no image tagged "c" (it has a, b)`,
		"oci:" + filepath.Join(root, "x"): "no such file or directory",
		"oci:" + archive:                  "is not a directory",
		"oci-archive:" + single:           "not a regular file",
		"docker-archive:" + dockerArchive + ":example.com/c:latest": "no image tagged",
	} {
		_, err := Resolve(context.Background(), ref, testOptions(t))
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("%s: err %v, want %q", ref, err, wantErr)
		}
		if strings.Contains(wantErr, "tagged") && !errors.Is(err, fetch.ErrNotFound) {
			t.Errorf("%s: %v is not ErrNotFound", ref, err)
		}
	}

	tags, err := Tags(context.Background(), "oci-archive:"+archive, testOptions(t))
	if err != nil || !slices.Equal(tags, []string{"a", "b"}) {
		t.Errorf("tags: %q, %v", tags, err)
	}

	// A gzip-compressed archive is refused: it cannot be read in place.
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	data, _ := os.ReadFile(archive)
	zw.Write(data)
	zw.Close()
	writeFile(t, archive+".gz", gz.Bytes())
	if _, err := Resolve(context.Background(), "oci-archive:"+archive+".gz", testOptions(t)); err == nil || !strings.Contains(err.Error(), "gzip-compressed") {
		t.Errorf("gzip archive: %v", err)
	}
}

func TestLocalLayoutMultiPlatform(t *testing.T) {
	// index.json listing one image per platform and no names: it is the
	// image's index, and the platform is chosen from it.
	a, b := newLocalImage(t, "amd64\n"), newLocalImage(t, "arm64\n")
	dir := t.TempDir()
	writeLayout(t, dir, nil, a, b)
	var idx ocispec.Index
	data, _ := os.ReadFile(filepath.Join(dir, "index.json"))
	json.Unmarshal(data, &idx)
	idx.Manifests[0].Platform = &ocispec.Platform{OS: "linux", Architecture: "amd64"}
	idx.Manifests[1].Platform = &ocispec.Platform{OS: "linux", Architecture: "arm64"}
	data, _ = json.Marshal(idx)
	writeFile(t, filepath.Join(dir, "index.json"), data)
	opts := testOptions(t)
	opts.Platform = ocispec.Platform{OS: "linux", Architecture: "arm64"}
	img, err := Open(context.Background(), "oci:"+dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	if got := readPath(t, img, "/etc/motd"); got != "arm64\n" {
		t.Errorf("chose %q", got)
	}
}

func TestTarFilesOffsets(t *testing.T) {
	long := strings.Repeat("d/", 80) + "file" // needs a PAX or GNU long name
	p := filepath.Join(t.TempDir(), "a.tar")
	tarDir(t, "", p, map[string][]byte{"a": []byte("first"), long: []byte("second, after a long name"), "./b": bytes.Repeat([]byte("x"), 1000)})
	tf, err := openTarFiles(p)
	if err != nil {
		t.Fatal(err)
	}
	defer tf.close()
	for name, want := range map[string]string{"a": "first", long: "second, after a long name", "b": strings.Repeat("x", 1000)} {
		got, err := readLocal(tf, name, 1<<20)
		if err != nil || string(got) != want {
			t.Errorf("%s: %q, %v", name, got, err)
		}
	}
}

func TestParseReference(t *testing.T) {
	wd, _ := os.Getwd()
	for s, want := range map[string]string{
		"oci:/x/y":    "oci:/x/y",
		"oci:rel:tag": "oci:" + wd + "/rel:tag",
		"oci:/x@sha256:" + strings.Repeat("a", 64): "oci:/x@sha256:" + strings.Repeat("a", 64),
		"oci-archive:/x.tar:v2":                    "oci-archive:/x.tar:v2",
		"docker-archive:/x.tar":                    "docker-archive:/x.tar",
		"docker-archive:/x.tar:@1":                 "docker-archive:/x.tar:@1",
		"docker-archive:/x.tar:busybox:1":          "docker-archive:/x.tar:busybox:1",
		"alpine":                                   "index.docker.io/library/alpine:latest",
		"docker://alpine:3.20":                     "index.docker.io/library/alpine:3.20",
		"localhost:5000/a/b:c":                     "localhost:5000/a/b:c",
	} {
		ref, err := ParseReference(s, false)
		if err != nil {
			t.Errorf("%s: %v", s, err)
			continue
		}
		if got := ref.String(); got != want {
			t.Errorf("%s: %q, want %q", s, got, want)
		}
	}
	for s, wantErr := range map[string]string{
		"oci:":                        "no path",
		"oci:/x:a/b":                  "tag",
		"docker-archive:/x.tar:@z":    "@N",
		"/tmp/layout":                 "use oci:/tmp/layout",
		"docker-archive:/x.tar:Bad^^": "invalid reference",
	} {
		if _, err := ParseReference(s, false); err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("%s: err %v, want %q", s, err, wantErr)
		}
	}
}

var _ = manifest.FormatTar

func TestLocalSourceIgnoresClusterOptions(t *testing.T) {
	// Index artifacts and blobs kept in the cache dir are a registry's: a
	// local image opens with --index-source registry and --cache-layers,
	// its indexes built here, and pushing or verifying artifacts is an
	// error, not a crash.
	a := newLocalImage(t, "local\n")
	dir := t.TempDir()
	writeLayout(t, dir, nil, a)
	opts := testOptions(t)
	opts.IndexSource, opts.KeepBlobs = IndexRegistry, true
	img, err := Open(context.Background(), "oci:"+dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	if got := readPath(t, img, "/etc/motd"); got != "local\n" {
		t.Errorf("read %q", got)
	}
	for _, l := range img.Layers() {
		if l.Index.How() != index.HowBuilt {
			t.Errorf("layer %s: index %s, want built", l.Digest, l.Index.How())
		}
	}
	if _, err := os.Stat(filepath.Join(opts.CacheDir, "blobs")); !os.IsNotExist(err) {
		t.Errorf("blobs/ of a local image: %v", err)
	}
	if _, err := img.PushIndexes(context.Background()); err == nil || !strings.Contains(err.Error(), "local image") {
		t.Errorf("push: %v", err)
	}
	if _, err := img.VerifyIndexes(context.Background()); err == nil || !strings.Contains(err.Error(), "local image") {
		t.Errorf("verify: %v", err)
	}
}
