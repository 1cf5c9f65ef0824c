package serve

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"syscall"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/imgfs/imgfs/fetch"
	"github.com/imgfs/imgfs/fs"
	"github.com/imgfs/imgfs/image"
	"github.com/imgfs/imgfs/internal/registrytest"
)

// TestReferenceDockerHubShortNames: paths map to references as the docker
// CLI maps names, resolved offline (no registry is asked).
func TestReferenceDockerHubShortNames(t *testing.T) {
	hex := strings.Repeat("a", 64)
	for path, want := range map[string]string{
		"docker.io/library/python:3.12":          "index.docker.io/library/python:3.12",
		"docker.io/python:3.12":                  "index.docker.io/library/python:3.12",
		"index.docker.io/library/alpine:3":       "index.docker.io/library/alpine:3",
		"docker.io/bitnami/redis:7":              "index.docker.io/bitnami/redis:7",
		"docker.io/library/python@sha256:" + hex: "index.docker.io/library/python@sha256:" + hex,
		"127.0.0.1:5000/team/app:v1":             "127.0.0.1:5000/team/app:v1",
		"ghcr.io/org/sub/app@sha256:" + hex:      "ghcr.io/org/sub/app@sha256:" + hex,
	} {
		parts := strings.Split(path, "/")
		ref, _, ok := Reference(parts[:len(parts)-1], parts[len(parts)-1])
		if !ok {
			t.Errorf("%s: not an image path", path)
			continue
		}
		parsed, err := image.ParseReference(ref, false)
		if err != nil || parsed.String() != want {
			t.Errorf("%s: %q, %v; want %s", path, parsed.String(), err, want)
		}
	}
	for _, path := range []string{"docker.io/library", "docker.io/library/python", "docker.io/Python:3", ".imgfs/images", "local/x",
		"docker.io/python:", "docker.io/a:b@sha256:x"} {
		parts := strings.Split(path, "/")
		if _, _, ok := Reference(parts[:len(parts)-1], parts[len(parts)-1]); ok {
			t.Errorf("%s taken for an image", path)
		}
	}
	for name, want := range map[string]bool{"docker.io": true, "127.0.0.1:5000": true, "localhost": true, "python": false, ".imgfs": false} {
		if isRegistry(name) != want {
			t.Errorf("isRegistry(%q) != %v", name, want)
		}
	}
}

func gzipLayer(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	for name, body := range files {
		tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body))})
		io.WriteString(tw, body)
	}
	tw.Close()
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(tb.Bytes())
	zw.Close()
	return gz.Bytes()
}

func pushImage(t *testing.T, reg *registrytest.Registry, tag string, layers ...[]byte) digest.Digest {
	t.Helper()
	cfg := ocispec.Image{Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"}}
	cfg.RootFS.Type = "layers"
	m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest}
	m.SchemaVersion = 2
	for _, l := range layers {
		m.Layers = append(m.Layers, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: reg.PutBlob(l), Size: int64(len(l))})
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, digest.FromString("x"))
	}
	cfgBytes, _ := json.Marshal(cfg)
	m.Config = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: reg.PutBlob(cfgBytes), Size: int64(len(cfgBytes))}
	body, _ := json.Marshal(m)
	return reg.PutManifest(ocispec.MediaTypeImageManifest, body, tag).Digest
}

func testServer(t *testing.T, ttl time.Duration) *Server {
	t.Helper()
	s, err := New(Options{
		Image: image.Options{
			Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"}, PlatformFrom: "test", CacheDir: t.TempDir(),
			Registry: fetch.Options{PlainHTTP: true, Retry: fetch.RetryPolicy{MaxAttempts: 1, BaseDelay: time.Millisecond}},
		},
		TagTTL: ttl,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestCatalogLookups: what each path is, without a mount.
func TestCatalogLookups(t *testing.T) {
	reg := registrytest.New(t)
	shared := gzipLayer(t, map[string]string{"shared": "both\n"})
	a := pushImage(t, reg, "a", shared, gzipLayer(t, map[string]string{"name": "a\n"}))
	s := testServer(t, time.Hour)
	c := catalog{s}
	ctx := context.Background()
	dir := []string{reg.Host(), "team"}

	e, err := c.Lookup(ctx, dir, "app:a")
	if err != nil || e.Kind != fs.CatalogLink || e.Target != "app@"+a.String() || e.TTL != time.Hour {
		t.Fatalf("tag: %+v, %v", e, err)
	}
	e, err = c.Lookup(ctx, dir, "app@"+a.String())
	if err != nil || e.Kind != fs.CatalogImage || e.Image.Tree.Len() < 3 {
		t.Fatalf("digest: %+v, %v", e, err)
	}
	if n, ok := e.Image.Tree.Lookup(".singularity.d/runscript"); !ok || !n.Synthetic() {
		t.Error("served images are not synthesized for Apptainer")
	}
	again, _ := c.Lookup(ctx, dir, "app@"+a.String())
	if again.Image != e.Image {
		t.Error("a second lookup opened the image again")
	}
	if e, err := c.Lookup(ctx, nil, reg.Host()); err != nil || e.Kind != fs.CatalogDir {
		t.Errorf("registry: %+v, %v", e, err)
	}
	if e, err := c.Lookup(ctx, []string{reg.Host()}, "team"); err != nil || e.Kind != fs.CatalogDir {
		t.Errorf("namespace: %+v, %v", e, err)
	}
	for _, p := range [][]string{{"", "python"}, {reg.Host() + "/team", "app:missing"}, {".imgfs", "nope"}, {reg.Host() + "/team", "Bad"}} {
		d := strings.Split(p[0], "/")
		if p[0] == "" {
			d = nil
		}
		if _, err := c.Lookup(ctx, d, p[1]); !errors.Is(err, syscall.ENOENT) {
			t.Errorf("%v: %v, want ENOENT", p, err)
		}
	}
	if !strings.Contains(string(s.errorsStatus()), "app:missing") {
		t.Errorf("errors: %s", s.errorsStatus())
	}
	if got := c.List(dir); len(got) != 2 || got[0].Name != "app:a" || got[1].Name != "app@"+a.String() {
		t.Errorf("List: %+v", got)
	}
	if !strings.Contains(string(s.imagesStatus()), "/team/app@"+a.String()) {
		t.Errorf("images: %s", s.imagesStatus())
	}
}

// TestTagTTL: a tag is asked again only once its TTL has passed.
func TestTagTTL(t *testing.T) {
	reg := registrytest.New(t)
	l := gzipLayer(t, map[string]string{"f": "1"})
	first := pushImage(t, reg, "t", l)
	s := testServer(t, 200*time.Millisecond)
	ctx := context.Background()
	ref := reg.Host() + "/r/app:t"
	if d, err := s.resolveTag(ctx, ref, "/x"); err != nil || d != first {
		t.Fatalf("%s %v", d, err)
	}
	second := pushImage(t, reg, "t", l, gzipLayer(t, map[string]string{"g": "2"}))
	if d, _ := s.resolveTag(ctx, ref, "/x"); d != first {
		t.Error("resolved again within the TTL")
	}
	time.Sleep(250 * time.Millisecond)
	if d, _ := s.resolveTag(ctx, ref, "/x"); d != second {
		t.Errorf("after the TTL: %s, want %s", d, second)
	}
}
