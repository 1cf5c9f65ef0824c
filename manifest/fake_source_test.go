package manifest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"testing"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/imgfs/imgfs/fetch"
)

// fakeSource is an in-memory registry: manifests by tag or digest, blobs by
// digest. It records every manifest request.
type fakeSource struct {
	mu        sync.Mutex
	manifests map[string]fetch.ManifestResponse
	blobs     map[digest.Digest][]byte
	gets      []string
	accepts   map[string][]string
}

func newFakeSource() *fakeSource {
	return &fakeSource{
		manifests: map[string]fetch.ManifestResponse{},
		blobs:     map[digest.Digest][]byte{},
		accepts:   map[string][]string{},
	}
}

func (f *fakeSource) Manifest(_ context.Context, ref string, accept []string) (*fetch.ManifestResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gets = append(f.gets, ref)
	f.accepts[ref] = accept
	r, ok := f.manifests[ref]
	if !ok {
		return nil, fmt.Errorf("manifest %s: %w", ref, fetch.ErrNotFound)
	}
	r.Body = bytes.Clone(r.Body)
	return &r, nil
}

func (f *fakeSource) FetchBlob(_ context.Context, d digest.Digest, maxSize int64) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.blobs[d]
	if !ok {
		return nil, fmt.Errorf("blob %s: %w", d, fetch.ErrNotFound)
	}
	if int64(len(b)) > maxSize {
		return nil, fmt.Errorf("blob %s: larger than %d", d, maxSize)
	}
	return bytes.Clone(b), nil
}

// putManifest stores body under its digest and the given tags, with the
// Docker-Content-Digest header a registry would send.
func (f *fakeSource) putManifest(contentType string, body []byte, tags ...string) ocispec.Descriptor {
	d := digest.FromBytes(body)
	r := fetch.ManifestResponse{Body: body, MediaType: contentType, DockerContentDigest: d}
	f.manifests[d.String()] = r
	for _, t := range tags {
		f.manifests[t] = r
	}
	return ocispec.Descriptor{MediaType: contentType, Digest: d, Size: int64(len(body))}
}

func (f *fakeSource) putBlob(mediaType string, b []byte) ocispec.Descriptor {
	d := digest.FromBytes(b)
	f.blobs[d] = b
	return ocispec.Descriptor{MediaType: mediaType, Digest: d, Size: int64(len(b))}
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "   ")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// testImage describes a schema 2 / OCI image to store in a fakeSource.
type testImage struct {
	manifestType string // MediaTypeOCIManifest or MediaTypeDockerManifest
	platform     ocispec.Platform
	env          []string
	layers       int
}

// putImage stores config and manifest (not the layer blobs: Resolve never
// reads them) and returns the manifest descriptor.
func (f *fakeSource) putImage(t testing.TB, ti testImage, tags ...string) (ocispec.Descriptor, ocispec.Descriptor) {
	t.Helper()
	configType, layerType := MediaTypeOCIConfig, ocispec.MediaTypeImageLayerGzip
	if ti.manifestType == MediaTypeDockerManifest {
		configType, layerType = MediaTypeDockerConfig, mediaTypeDockerLayerGzip
	}
	var cfg ocispec.Image
	cfg.Platform = ti.platform
	cfg.Config.Env = ti.env
	cfg.Config.Cmd = []string{"/bin/sh"}
	cfg.RootFS.Type = "layers"
	m := ocispec.Manifest{MediaType: ti.manifestType}
	m.SchemaVersion = 2
	for i := 0; i < ti.layers; i++ {
		content := fmt.Sprintf("layer %d of %s", i, FormatPlatform(ti.platform))
		m.Layers = append(m.Layers, ocispec.Descriptor{
			MediaType: layerType,
			Digest:    digest.FromString(content),
			Size:      int64(1000 * (i + 1)),
		})
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, digest.FromString("diff "+content))
	}
	m.Config = f.putBlob(configType, mustJSON(t, cfg))
	return f.putManifest(ti.manifestType, mustJSON(t, m), tags...), m.Config
}

// putIndex stores an index of the given entries under tags.
func (f *fakeSource) putIndex(t testing.TB, mediaType string, entries []ocispec.Descriptor, tags ...string) ocispec.Descriptor {
	t.Helper()
	idx := ocispec.Index{MediaType: mediaType, Manifests: entries}
	idx.SchemaVersion = 2
	return f.putManifest(mediaType, mustJSON(t, idx), tags...)
}

func withPlatform(d ocispec.Descriptor, p string) ocispec.Descriptor {
	pl, err := ParsePlatform(p)
	if err != nil {
		panic(err)
	}
	// Write arm64 as registries do, with the v8 variant, to exercise normalisation.
	if pl.Architecture == "arm64" && pl.Variant == "" {
		pl.Variant = "v8"
	}
	d.Platform = &pl
	return d
}

// testLogger returns a logger writing text records into buf at Debug.
func testLogger(buf *bytes.Buffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// hostAmd64 is a fixed host so tests do not depend on the machine.
func hostAmd64() ocispec.Platform { return ocispec.Platform{OS: "linux", Architecture: "amd64"} }

func noEnv(string) string { return "" }

func envMap(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}
