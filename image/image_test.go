package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/imgfs/imgfs/fetch"
	"github.com/imgfs/imgfs/internal/registrytest"
	"github.com/imgfs/imgfs/manifest"
)

type tarEntry struct {
	name, content, link string
	typ                 byte
}

func gzipTar(t *testing.T, entries []tarEntry) []byte {
	t.Helper()
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: 0o644, Linkname: e.link, ModTime: time.Unix(1700000000, 0)}
		if e.typ == tar.TypeDir {
			h.Mode = 0o755
		}
		if e.typ == tar.TypeReg {
			h.Size = int64(len(e.content))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		io.WriteString(tw, e.content)
	}
	tw.Close()
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(tb.Bytes())
	zw.Close()
	return gz.Bytes()
}

// pushImage stores a two-layer gzip image and returns its reference.
func pushImage(t *testing.T, reg *registrytest.Registry, layers ...[]byte) string {
	t.Helper()
	cfg := ocispec.Image{Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"}}
	cfg.Config.Env = []string{"PATH=/bin"}
	cfg.RootFS.Type = "layers"
	m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest}
	m.SchemaVersion = 2
	for _, l := range layers {
		d := reg.PutBlob(l)
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, digest.FromString("unchecked"))
		m.Layers = append(m.Layers, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: d, Size: int64(len(l))})
	}
	cfgBytes, _ := json.Marshal(cfg)
	m.Config = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: reg.PutBlob(cfgBytes), Size: int64(len(cfgBytes))}
	body, _ := json.Marshal(m)
	reg.PutManifest(ocispec.MediaTypeImageManifest, body, "v1")
	return reg.Host() + "/test/app:v1"
}

func testOptions(t *testing.T) Options {
	return Options{
		Platform:     ocispec.Platform{OS: "linux", Architecture: "amd64"},
		PlatformFrom: "test",
		Registry:     fetch.Options{PlainHTTP: true, Retry: fetch.RetryPolicy{MaxAttempts: 2, BaseDelay: time.Millisecond}},
		CacheDir:     t.TempDir(),
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

func TestOpenReadsMergedTree(t *testing.T) {
	reg := registrytest.New(t)
	ref := pushImage(t, reg,
		gzipTar(t, []tarEntry{{name: "etc/", typ: tar.TypeDir}, {name: "etc/motd", typ: tar.TypeReg, content: "old\n"},
			{name: "etc/gone", typ: tar.TypeReg, content: "x"}}),
		gzipTar(t, []tarEntry{{name: "etc/motd", typ: tar.TypeReg, content: "new motd\n"}, {name: "etc/.wh.gone", typ: tar.TypeReg},
			{name: "link", typ: tar.TypeSymlink, link: "etc/motd"}}),
	)
	opts := testOptions(t)
	opts.Synthesize = true
	img, err := Open(context.Background(), ref, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	if len(img.Layers()) != 2 || img.Layers()[0].Index == nil || img.Layers()[1].Reader == nil {
		t.Fatalf("layers %+v", img.Layers())
	}
	f, err := img.Open(context.Background(), "/link")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if _, err := f.WriteTo(&out); err != nil || out.String() != "new motd\n" {
		t.Fatalf("WriteTo: %q, %v", out.String(), err)
	}
	if _, err := img.Lookup("/etc/gone", false); err == nil {
		t.Error("a whited-out file is still there")
	}
	if f, err := img.Open(context.Background(), "/.singularity.d/env/10-docker2singularity.sh"); err != nil {
		t.Errorf("synthesized file: %v", err)
	} else if p := make([]byte, 512); true {
		n, _ := f.ReadAt(p, 0)
		if !strings.Contains(string(p[:n]), `PATH="/bin"`) {
			t.Errorf("synthesized env: %q", p[:n])
		}
	}
	if _, err := img.Open(context.Background(), "/etc"); err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Errorf("opening a directory: %v", err)
	}
	st := img.Stats()
	if len(st.Layers) != 2 || st.Layers[1].Reads.SpansDecoded != 1 || st.Layers[1].Reads.Lookups != 1 {
		t.Errorf("stats %+v", st.Layers)
	}
	if n, ok := UncompressedSize(opts.CacheDir, Scope(img.Manifest), img.Layers()[0].Layer); !ok || n != img.Layers()[0].Index.UncompressedSize() {
		t.Errorf("uncompressed size from the cached index: %d %v", n, ok)
	}
}

func TestOpenRefusesForeignLayers(t *testing.T) {
	reg := registrytest.New(t)
	cfgBytes := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: ocispec.Descriptor{
		MediaType: ocispec.MediaTypeImageConfig, Digest: reg.PutBlob(cfgBytes), Size: int64(len(cfgBytes))},
		Layers: []ocispec.Descriptor{{MediaType: "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
			Digest: digest.FromString("x"), Size: 10, URLs: []string{"https://example.com/x"}}}}
	m.SchemaVersion = 2
	body, _ := json.Marshal(m)
	reg.PutManifest(ocispec.MediaTypeImageManifest, body, "v1")
	_, err := Open(context.Background(), reg.Host()+"/test/app:v1", testOptions(t))
	if err == nil || !strings.Contains(err.Error(), "non-distributable") {
		t.Fatalf("err %v", err)
	}
	if img, err := Resolve(context.Background(), reg.Host()+"/test/app:v1", testOptions(t)); err != nil || img.Layers[0].Format != manifest.FormatForeign {
		t.Fatalf("Resolve: %v", err)
	}
}

func TestOpenSharesACache(t *testing.T) {
	reg := registrytest.New(t)
	layer := gzipTar(t, []tarEntry{{name: "f", typ: tar.TypeReg, content: "shared"}})
	ref := pushImage(t, reg, layer)
	opts := testOptions(t)
	var err error
	opts.Cache, err = newSpanCache(Options{Logger: opts.Logger})
	if err != nil {
		t.Fatal(err)
	}
	defer opts.Cache.Close()
	for i := 0; i < 2; i++ {
		img, err := Open(context.Background(), ref, opts)
		if err != nil {
			t.Fatal(err)
		}
		f, err := img.Open(context.Background(), "f")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteTo(io.Discard); err != nil {
			t.Fatal(err)
		}
		if decoded := img.Stats().Layers[0].Reads.SpansDecoded; decoded != int64(1-i) {
			t.Errorf("open %d decoded %d spans; the second must find the first's in the shared cache", i, decoded)
		}
		img.Close() // leaves the shared cache open
	}
	if _, ok := opts.Cache.Get("nothing"); ok {
		t.Fatal("cache closed with the image")
	}
}
