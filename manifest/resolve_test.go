package manifest

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/imgfs/imgfs/fetch"
)

func resolveWith(t *testing.T, src *fakeSource, ref, platform string, logs *bytes.Buffer) (*Image, error) {
	t.Helper()
	if logs == nil {
		logs = &bytes.Buffer{}
	}
	return resolveEnv(t, src, ref, platform, noEnv, logs)
}

// resolveEnv resolves ref as the CLI does: the wanted platform from an
// explicit value, else the environment, else an amd64 host.
func resolveEnv(t *testing.T, src Source, reference, platform string, getenv func(string) string, logs *bytes.Buffer) (*Image, error) {
	t.Helper()
	want, from, err := WantedPlatform(platform, "--platform", getenv, hostAmd64)
	if err != nil {
		return nil, err
	}
	ref, err := ParseReference(reference)
	if err != nil {
		return nil, err
	}
	return Resolve(context.Background(), src, ref, Options{Platform: want, PlatformFrom: from, Logger: testLogger(logs)})
}

// multiPlatform stores an index of amd64, arm64 and arm/v7 images plus an
// attestation manifest, and returns the per-platform manifest descriptors.
func multiPlatform(t *testing.T, src *fakeSource, indexType string) (ocispec.Descriptor, map[string]ocispec.Descriptor) {
	t.Helper()
	manifestType := MediaTypeOCIManifest
	if indexType == MediaTypeDockerManifestList {
		manifestType = MediaTypeDockerManifest
	}
	children := map[string]ocispec.Descriptor{}
	var entries []ocispec.Descriptor
	for _, p := range []string{"linux/amd64", "linux/arm64", "linux/arm/v7"} {
		pl, _ := ParsePlatform(p)
		d, _ := src.putImage(t, testImage{manifestType: manifestType, platform: pl, env: []string{"PLATFORM=" + p}, layers: 2})
		children[p] = d
		entries = append(entries, withPlatform(d, p))
	}
	att := src.putBlob(MediaTypeOCIManifest, []byte(`{"schemaVersion":2}`))
	att.Platform = &ocispec.Platform{OS: "unknown", Architecture: "unknown"}
	att.Annotations = map[string]string{annotationDockerReferenceType: "attestation-manifest"}
	entries = append(entries, att)
	return src.putIndex(t, indexType, entries, "latest"), children
}

func TestResolveOCIIndex(t *testing.T) {
	for _, tc := range []struct{ platform, child string }{
		{"linux/amd64", "linux/amd64"},
		{"", "linux/amd64"}, // host
		{"linux/arm64", "linux/arm64"},
		{"linux/arm64/v8", "linux/arm64"},
		{"linux/arm", "linux/arm/v7"},
		{"linux/arm/v7", "linux/arm/v7"},
	} {
		t.Run(tc.platform, func(t *testing.T) {
			src := newFakeSource()
			indexDesc, children := multiPlatform(t, src, MediaTypeOCIIndex)
			var logs bytes.Buffer
			img, err := resolveWith(t, src, "127.0.0.1:5000/ns/app", tc.platform, &logs)
			if err != nil {
				t.Fatal(err)
			}
			want := children[tc.child]
			if img.Digest != want.Digest || img.MediaType != MediaTypeOCIManifest || img.SchemaVersion != 2 {
				t.Errorf("image %s %s v%d, want %s", img.Digest, img.MediaType, img.SchemaVersion, want.Digest)
			}
			if img.IndexDigest != indexDesc.Digest || img.IndexMediaType != MediaTypeOCIIndex || len(img.RawIndex) == 0 {
				t.Errorf("index %s %s", img.IndexDigest, img.IndexMediaType)
			}
			if got := platformNames(img.Platforms); !slices.Equal(got, []string{"linux/amd64", "linux/arm64", "linux/arm/v7"}) {
				t.Errorf("platforms = %v (the attestation must not be listed)", got)
			}
			if FormatPlatform(img.Platform) != tc.child {
				t.Errorf("platform = %s", FormatPlatform(img.Platform))
			}
			if !slices.Equal(img.Config.Config.Env, []string{"PLATFORM=" + tc.child}) {
				t.Errorf("config env = %v", img.Config.Config.Env)
			}
			if img.Registry != "127.0.0.1:5000" || img.Repository != "ns/app" || img.Tag != "latest" || img.Name != "127.0.0.1:5000/ns/app:latest" {
				t.Errorf("reference parts: %q %q %q %q", img.Registry, img.Repository, img.Tag, img.Name)
			}
			if len(img.Layers) != 2 || img.Layers[0].Format != FormatGzip || img.Layers[0].Size != 1000 ||
				img.Layers[0].DiffID != img.Config.RootFS.DiffIDs[0] || img.Layers[1].DiffID != img.Config.RootFS.DiffIDs[1] {
				t.Errorf("layers = %+v", img.Layers)
			}
			if !slices.Equal(src.gets, []string{"latest", want.Digest.String()}) {
				t.Errorf("manifest GETs = %v", src.gets)
			}
			if !slices.Equal(src.accepts["latest"], AcceptedManifestTypes()) {
				t.Errorf("first Accept = %v", src.accepts["latest"])
			}
			if a := src.accepts[want.Digest.String()]; slices.Contains(a, MediaTypeOCIIndex) || !slices.Contains(a, MediaTypeOCIManifest) {
				t.Errorf("child Accept = %v", a)
			}
			for _, line := range []string{
				`msg="image reference" registry=127.0.0.1:5000 repository=ns/app tag=latest`,
				`msg="manifest GET" reference=latest accept="application/vnd.oci.image.index.v1+json, `,
				`msg="OCI index found"`, `platforms="linux/amd64, linux/arm64, linux/arm/v7"`,
				`msg="platform chosen" platform=` + tc.child,
				`msg="config GET" digest=sha256:`,
			} {
				if !strings.Contains(logs.String(), line) {
					t.Errorf("logs lack %q:\n%s", line, logs.String())
				}
			}
		})
	}
}

func TestResolveIndexNoMatchingPlatform(t *testing.T) {
	src := newFakeSource()
	multiPlatform(t, src, MediaTypeOCIIndex)
	_, err := resolveWith(t, src, "127.0.0.1:5000/ns/app", "linux/s390x", nil)
	want := "127.0.0.1:5000/ns/app:latest: no manifest for platform linux/s390x; the index offers linux/amd64, linux/arm64, linux/arm/v7 (wanted platform from --platform; pick one with --platform)"
	if err == nil || err.Error() != want {
		t.Fatalf("error = %v\nwant    %s", err, want)
	}
}

func TestResolveDockerManifestList(t *testing.T) {
	src := newFakeSource()
	listDesc, children := multiPlatform(t, src, MediaTypeDockerManifestList)
	var logs bytes.Buffer
	img, err := resolveWith(t, src, "docker://127.0.0.1:5000/ns/app:latest", "linux/arm64", &logs)
	if err != nil {
		t.Fatal(err)
	}
	if img.IndexDigest != listDesc.Digest || img.IndexMediaType != MediaTypeDockerManifestList {
		t.Errorf("index %s %s", img.IndexDigest, img.IndexMediaType)
	}
	if img.Digest != children["linux/arm64"].Digest || img.MediaType != MediaTypeDockerManifest {
		t.Errorf("image %s %s", img.Digest, img.MediaType)
	}
	if len(img.Layers) != 2 || img.Layers[0].MediaType != mediaTypeDockerLayerGzip || img.Layers[0].Format != FormatGzip {
		t.Errorf("layers %+v", img.Layers)
	}
	if !strings.Contains(logs.String(), `msg="manifest list found"`) {
		t.Errorf("logs lack the manifest list line:\n%s", logs.String())
	}
}

func TestResolveSingleManifests(t *testing.T) {
	for _, mt := range []string{MediaTypeOCIManifest, MediaTypeDockerManifest} {
		t.Run(mt, func(t *testing.T) {
			src := newFakeSource()
			pl := ocispec.Platform{OS: "linux", Architecture: "amd64"}
			desc, cfg := src.putImage(t, testImage{manifestType: mt, platform: pl, env: []string{"A=1"}, layers: 3}, "v1")

			for _, ref := range []string{"127.0.0.1:5000/app:v1", "127.0.0.1:5000/app@" + desc.Digest.String(), "127.0.0.1:5000/app:v1@" + desc.Digest.String()} {
				img, err := resolveWith(t, src, ref, "", nil)
				if err != nil {
					t.Fatalf("%s: %v", ref, err)
				}
				if img.Digest != desc.Digest || img.MediaType != mt || img.IndexDigest != "" || len(img.Platforms) != 0 {
					t.Errorf("%s: digest %s type %s index %s", ref, img.Digest, img.MediaType, img.IndexDigest)
				}
				if img.ConfigDigest != cfg.Digest || int64(len(img.RawConfig)) != cfg.Size || len(img.RawManifest) != int(desc.Size) {
					t.Errorf("%s: config %s (%d bytes)", ref, img.ConfigDigest, len(img.RawConfig))
				}
				if want := int64(1000+2000+3000) + cfg.Size; img.Size() != want {
					t.Errorf("%s: Size() = %d, want %d", ref, img.Size(), want)
				}
				if FormatPlatform(img.Platform) != "linux/amd64" || len(img.Layers) != 3 {
					t.Errorf("%s: platform %s, %d layers", ref, FormatPlatform(img.Platform), len(img.Layers))
				}
			}
		})
	}
}

func TestResolveSniffsGenericContentType(t *testing.T) {
	for _, ct := range []string{"", "application/json", "text/plain; charset=utf-8", "application/octet-stream"} {
		src := newFakeSource()
		desc, _ := src.putImage(t, testImage{manifestType: MediaTypeDockerManifest, platform: hostAmd64(), layers: 1}, "v1")
		r := src.manifests["v1"]
		r.MediaType = ct
		src.manifests["v1"] = r
		img, err := resolveWith(t, src, "127.0.0.1:5000/app:v1", "", nil)
		if err != nil {
			t.Fatalf("Content-Type %q: %v", ct, err)
		}
		if img.MediaType != MediaTypeDockerManifest || img.Digest != desc.Digest {
			t.Errorf("Content-Type %q: sniffed %s", ct, img.MediaType)
		}
	}
}

func TestClassifyManifest(t *testing.T) {
	tests := []struct {
		contentType, body, want, err string
	}{
		{"", `{"schemaVersion":2,"manifests":[{}]}`, MediaTypeOCIIndex, ""},
		{"", `{"schemaVersion":2,"config":{},"layers":[]}`, MediaTypeOCIManifest, ""},
		{"application/json", `{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[]}`, MediaTypeDockerManifestList, ""},
		{"", `{"schemaVersion":1,"fsLayers":[]}`, MediaTypeDockerSchema1, ""},
		{"", `{"schemaVersion":1,"fsLayers":[],"signatures":[{}]}`, MediaTypeDockerSchema1Signed, ""},
		{"application/vnd.docker.distribution.manifest.v1+prettyjws", `{"schemaVersion":1}`, MediaTypeDockerSchema1Signed, ""},
		{"application/vnd.oci.image.manifest.v1+json", `{"schemaVersion":2}`, MediaTypeOCIManifest, ""},
		{"application/vnd.oci.artifact.manifest.v1+json", `{}`, "", `unsupported manifest media type "application/vnd.oci.artifact.manifest.v1+json"`},
		{"", `{"mediaType":"application/vnd.example+json"}`, "", `unsupported manifest media type "application/vnd.example+json"`},
		{MediaTypeOCIManifest, `{"mediaType":"application/vnd.oci.image.index.v1+json"}`, "", "but the manifest says mediaType"},
		{"", `{}`, "", "cannot tell the manifest type"},
		{"", `{"schemaVersion":3}`, "", "cannot tell the manifest type"},
		{"", `[1]`, "", "not a JSON object"},
		{"", `garbage`, "", "not a JSON object"},
	}
	for _, tc := range tests {
		got, err := classifyManifest(tc.contentType, []byte(tc.body))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("classify(%q, %s) error = %v, want %q", tc.contentType, tc.body, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("classify(%q, %s) = %q, %v; want %q", tc.contentType, tc.body, got, err, tc.want)
		}
	}
}

func TestResolveDigestChecks(t *testing.T) {
	setup := func(t *testing.T) (*fakeSource, ocispec.Descriptor, ocispec.Descriptor) {
		src := newFakeSource()
		d, cfg := src.putImage(t, testImage{manifestType: MediaTypeOCIManifest, platform: hostAmd64(), layers: 1}, "v1")
		return src, d, cfg
	}
	other := digest.FromString("something else")

	t.Run("Docker-Content-Digest mismatch", func(t *testing.T) {
		src, _, _ := setup(t)
		r := src.manifests["v1"]
		r.DockerContentDigest = other
		src.manifests["v1"] = r
		_, err := resolveWith(t, src, "127.0.0.1:5000/app:v1", "", nil)
		if !errors.Is(err, fetch.ErrDigest) || !strings.Contains(err.Error(), "Docker-Content-Digest") {
			t.Fatalf("error = %v", err)
		}
	})
	t.Run("absent Docker-Content-Digest records the body digest", func(t *testing.T) {
		src, d, _ := setup(t)
		r := src.manifests["v1"]
		r.DockerContentDigest = ""
		src.manifests["v1"] = r
		img, err := resolveWith(t, src, "127.0.0.1:5000/app:v1", "", nil)
		if err != nil || img.Digest != d.Digest {
			t.Fatalf("img %v, err %v", img, err)
		}
	})
	t.Run("pinned digest mismatch", func(t *testing.T) {
		src, d, _ := setup(t)
		src.manifests[other.String()] = src.manifests[d.Digest.String()]
		_, err := resolveWith(t, src, "127.0.0.1:5000/app@"+other.String(), "", nil)
		if !errors.Is(err, fetch.ErrDigest) {
			t.Fatalf("error = %v", err)
		}
	})
	t.Run("config bytes tampered", func(t *testing.T) {
		src, _, cfg := setup(t)
		src.blobs[cfg.Digest] = bytes.Replace(src.blobs[cfg.Digest], []byte("amd64"), []byte("arm64"), 1)
		_, err := resolveWith(t, src, "127.0.0.1:5000/app:v1", "", nil)
		if !errors.Is(err, fetch.ErrDigest) || !strings.Contains(err.Error(), "config "+cfg.Digest.String()) {
			t.Fatalf("error = %v", err)
		}
	})
	t.Run("index child tampered", func(t *testing.T) {
		src := newFakeSource()
		_, children := multiPlatform(t, src, MediaTypeOCIIndex)
		d := children["linux/amd64"].Digest.String()
		r := src.manifests[d]
		r.Body = bytes.Replace(r.Body, []byte(`"size": 1000`), []byte(`"size": 1001`), 1)
		r.DockerContentDigest = ""
		src.manifests[d] = r
		_, err := resolveWith(t, src, "127.0.0.1:5000/app", "linux/amd64", nil)
		if !errors.Is(err, fetch.ErrDigest) {
			t.Fatalf("error = %v", err)
		}
	})
}

func TestResolveRejects(t *testing.T) {
	t.Run("unknown manifest media type", func(t *testing.T) {
		src := newFakeSource()
		src.putManifest("application/vnd.oci.artifact.manifest.v1+json", []byte(`{"schemaVersion":2}`), "v1")
		_, err := resolveWith(t, src, "127.0.0.1:5000/app:v1", "", nil)
		if err == nil || !strings.Contains(err.Error(), `unsupported manifest media type "application/vnd.oci.artifact.manifest.v1+json"`) {
			t.Fatalf("error = %v", err)
		}
	})
	t.Run("artifact config", func(t *testing.T) {
		src := newFakeSource()
		cfg := src.putBlob("application/vnd.sylabs.sif.config.v1+json", []byte(`{}`))
		m := ocispec.Manifest{MediaType: MediaTypeOCIManifest, Config: cfg, Layers: []ocispec.Descriptor{}}
		m.SchemaVersion = 2
		src.putManifest(MediaTypeOCIManifest, mustJSON(t, m), "v1")
		_, err := resolveWith(t, src, "127.0.0.1:5000/app:v1", "", nil)
		if err == nil || !strings.Contains(err.Error(), "is not a container image") {
			t.Fatalf("error = %v", err)
		}
	})
	t.Run("index entry is an index", func(t *testing.T) {
		src := newFakeSource()
		inner, _ := multiPlatform(t, src, MediaTypeOCIIndex)
		// A registry that lies: the outer entry claims an image manifest.
		entry := withPlatform(ocispec.Descriptor{MediaType: MediaTypeOCIManifest, Digest: inner.Digest, Size: inner.Size}, "linux/amd64")
		src.putIndex(t, MediaTypeOCIIndex, []ocispec.Descriptor{entry}, "outer")
		_, err := resolveWith(t, src, "127.0.0.1:5000/app:outer", "", nil)
		if err == nil || !strings.Contains(err.Error(), "not an image manifest") {
			t.Fatalf("error = %v", err)
		}
	})
	t.Run("non-JSON config", func(t *testing.T) {
		src := newFakeSource()
		cfg := src.putBlob(MediaTypeOCIConfig, []byte("not json at all\x00"))
		m := ocispec.Manifest{MediaType: MediaTypeOCIManifest, Config: cfg, Layers: []ocispec.Descriptor{}}
		m.SchemaVersion = 2
		src.putManifest(MediaTypeOCIManifest, mustJSON(t, m), "v1")
		_, err := resolveWith(t, src, "127.0.0.1:5000/app:v1", "", nil)
		if err == nil || !strings.Contains(err.Error(), "config") {
			t.Fatalf("error = %v", err)
		}
	})
	t.Run("manifest that is not JSON", func(t *testing.T) {
		src := newFakeSource()
		src.putManifest(MediaTypeOCIManifest, []byte("\xff\xfe garbage"), "v1")
		if _, err := resolveWith(t, src, "127.0.0.1:5000/app:v1", "", nil); err == nil {
			t.Fatal("a garbage manifest resolved")
		}
	})
	t.Run("index size mismatch", func(t *testing.T) {
		src := newFakeSource()
		d, _ := src.putImage(t, testImage{manifestType: MediaTypeOCIManifest, platform: hostAmd64(), layers: 1})
		d.Size++
		src.putIndex(t, MediaTypeOCIIndex, []ocispec.Descriptor{withPlatform(d, "linux/amd64")}, "v1")
		_, err := resolveWith(t, src, "127.0.0.1:5000/app:v1", "", nil)
		if err == nil || !strings.Contains(err.Error(), "index says") {
			t.Fatalf("error = %v", err)
		}
	})
	t.Run("not found", func(t *testing.T) {
		_, err := resolveWith(t, newFakeSource(), "127.0.0.1:5000/app:v1", "", nil)
		if !errors.Is(err, fetch.ErrNotFound) {
			t.Fatalf("error = %v", err)
		}
	})
	t.Run("bad reference", func(t *testing.T) {
		_, err := resolveWith(t, newFakeSource(), "oras://x/y", "", nil)
		if err == nil || !strings.Contains(err.Error(), `invalid reference "oras://x/y"`) {
			t.Fatalf("error = %v", err)
		}
	})
	t.Run("bad platform", func(t *testing.T) {
		_, err := resolveWith(t, newFakeSource(), "x/y", "linux", nil)
		if err == nil || !strings.Contains(err.Error(), `invalid platform "linux"`) {
			t.Fatalf("error = %v", err)
		}
	})
}

func TestResolveSinglePlatformMismatchWarns(t *testing.T) {
	src := newFakeSource()
	src.putImage(t, testImage{manifestType: MediaTypeOCIManifest, platform: ocispec.Platform{OS: "linux", Architecture: "arm64"}, layers: 1}, "v1")
	var logs bytes.Buffer
	img, err := resolveWith(t, src, "127.0.0.1:5000/app:v1", "", &logs)
	if err != nil {
		t.Fatal(err)
	}
	if FormatPlatform(img.Platform) != "linux/arm64" {
		t.Errorf("platform %s", FormatPlatform(img.Platform))
	}
	if !strings.Contains(logs.String(), `level=WARN msg="image platform does not match the wanted platform" image=linux/arm64 wanted=linux/amd64`) {
		t.Errorf("no warning:\n%s", logs.String())
	}
}

func TestResolvePlatformFromEnvironment(t *testing.T) {
	src := newFakeSource()
	_, children := multiPlatform(t, src, MediaTypeOCIIndex)
	img, err := resolveEnv(t, src, "127.0.0.1:5000/app", "", envMap(map[string]string{EnvSingularityArch: "aarch64"}), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if img.Digest != children["linux/arm64"].Digest {
		t.Errorf("chose %s", FormatPlatform(img.Platform))
	}
}
