package manifest

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"testing"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/imgfs/imgfs/fetch"
)

// manifestSeeds are valid manifests of every kind, to start the fuzzers from.
func manifestSeeds(t testing.TB) map[string][]byte {
	src := newFakeSource()
	seeds := map[string][]byte{}
	d, _ := src.putImage(t, testImage{manifestType: MediaTypeOCIManifest, platform: hostAmd64(), layers: 2})
	seeds[MediaTypeOCIManifest] = src.manifests[d.Digest.String()].Body
	d, _ = src.putImage(t, testImage{manifestType: MediaTypeDockerManifest, platform: hostAmd64(), layers: 1})
	seeds[MediaTypeDockerManifest] = src.manifests[d.Digest.String()].Body
	idx := src.putIndex(t, MediaTypeOCIIndex, []ocispec.Descriptor{withPlatform(d, "linux/amd64")})
	seeds[MediaTypeOCIIndex] = src.manifests[idx.Digest.String()].Body
	m, _ := schema1Fixture(t)
	seeds[MediaTypeDockerSchema1Signed], seeds[MediaTypeDockerSchema1] = signLikeLibtrust(t, m, 1)
	return seeds
}

func FuzzParseManifest(f *testing.F) {
	for mt, body := range manifestSeeds(f) {
		f.Add(mt, body)
		f.Add("", body)
	}
	f.Add("", []byte(`{"schemaVersion":1,"signatures":[{"protected":"eyJmb3JtYXRMZW5ndGgiOjk5OTk5LCJmb3JtYXRUYWlsIjoiQ24wIn0"}]}`))
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		mt, err := classifyManifest(contentType, body)
		if err != nil {
			return
		}
		if _, err := newManifestBytes(body, mt); err != nil {
			return
		}
		switch kindOf(mt) {
		case kindIndex:
			if idx, err := parseIndex(body); err == nil {
				_, _ = ChoosePlatform(hostAmd64(), idx.Manifests)
				IndexPlatforms(idx.Manifests)
			}
		case kindImage:
			if m, err := parseImageManifest(body); err == nil {
				for _, l := range m.Layers {
					DetectFormat(l)
				}
			}
		case kindSchema1:
			if img, err := parseSchema1(body); err == nil {
				for _, l := range img.Layers {
					if l.Digest.Validate() != nil {
						t.Fatalf("schema 1 layer with an invalid digest %q", l.Digest)
					}
				}
			}
		default:
			t.Fatalf("classifyManifest accepted unknown media type %q", mt)
		}
	})
}

// Placeholders fuzz inputs use to refer to the config and to a valid child
// manifest by digest: the fuzzer cannot compute sha256, so without them every
// input would stop at the first digest check.
const (
	phConfigDigest = "@CONFIG_DIGEST@"
	phConfigSize   = "@CONFIG_SIZE@"
	phChildDigest  = "@CHILD_DIGEST@"
	phChildSize    = "@CHILD_SIZE@"
)

const fuzzConfig = `{"architecture":"amd64","os":"linux","config":{"Env":["A=1"]},"rootfs":{"type":"layers","diff_ids":["` + testDigest + `"]}}`

func fuzzManifestTemplate(mediaType string) string {
	return `{"schemaVersion":2,"mediaType":"` + mediaType + `","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"` +
		phConfigDigest + `","size":` + phConfigSize + `},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"` +
		testDigest + `","size":10}]}`
}

// FuzzResolve serves fuzzed bytes as the manifest of a tag and fuzzed config
// bytes as the config, and checks that Resolve either fails cleanly or
// returns a complete image.
func FuzzResolve(f *testing.F) {
	for mt, body := range manifestSeeds(f) {
		f.Add(mt, body, []byte(fuzzConfig))
	}
	f.Add(MediaTypeOCIManifest, []byte(fuzzManifestTemplate(MediaTypeOCIManifest)), []byte(fuzzConfig))
	f.Add("", []byte(fuzzManifestTemplate(MediaTypeDockerManifest)), []byte(`{}`))
	f.Add(MediaTypeOCIIndex, []byte(`{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"`+
		phChildDigest+`","size":`+phChildSize+`,"platform":{"os":"linux","architecture":"amd64"}}]}`), []byte(fuzzConfig))
	f.Fuzz(func(t *testing.T, contentType string, body, config []byte) {
		src := newFuzzSource(contentType, body, config)
		img, err := resolveEnv(t, src, "127.0.0.1:5000/fuzz:latest", "", noEnv, &bytes.Buffer{})
		if err != nil {
			return
		}
		if img.Digest == "" || img.MediaType == "" || img.Layers == nil {
			t.Fatalf("incomplete image: %+v", img)
		}
		for _, l := range img.Layers {
			if l.Digest.Validate() != nil {
				t.Fatalf("layer with an invalid digest %q", l.Digest)
			}
		}
		img.Size()
	})
}

// fuzzSource serves the fuzzed manifest for the tag, a valid image manifest
// for the child digest, and the fuzzed config for the config digest.
type fuzzSource struct {
	contentType string
	top, child  []byte
	config      []byte
}

func newFuzzSource(contentType string, body, config []byte) *fuzzSource {
	cd := digest.FromBytes(config)
	fill := func(b []byte) []byte {
		b = bytes.ReplaceAll(b, []byte(phConfigDigest), []byte(cd.String()))
		return bytes.ReplaceAll(b, []byte(phConfigSize), []byte(strconv.Itoa(len(config))))
	}
	child := fill([]byte(fuzzManifestTemplate(MediaTypeOCIManifest)))
	top := fill(body)
	top = bytes.ReplaceAll(top, []byte(phChildDigest), []byte(digest.FromBytes(child).String()))
	top = bytes.ReplaceAll(top, []byte(phChildSize), []byte(strconv.Itoa(len(child))))
	return &fuzzSource{contentType: contentType, top: top, child: child, config: config}
}

func (s *fuzzSource) Manifest(_ context.Context, ref string, _ []string) (*fetch.ManifestResponse, error) {
	if ref == "latest" {
		return &fetch.ManifestResponse{Body: bytes.Clone(s.top), MediaType: s.contentType}, nil
	}
	return &fetch.ManifestResponse{Body: bytes.Clone(s.child), MediaType: MediaTypeOCIManifest}, nil
}

func (s *fuzzSource) FetchBlob(_ context.Context, _ digest.Digest, maxSize int64) ([]byte, error) {
	if int64(len(s.config)) > maxSize {
		return nil, fmt.Errorf("blob larger than %d", maxSize)
	}
	return bytes.Clone(s.config), nil
}

func TestFuzzSeedsResolve(t *testing.T) {
	// The templated seeds must get through Resolve, or the fuzzer would
	// never explore past the digest checks.
	for name, body := range map[string]string{
		"manifest": fuzzManifestTemplate(MediaTypeOCIManifest),
		"index": `{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"` +
			phChildDigest + `","size":` + phChildSize + `,"platform":{"os":"linux","architecture":"amd64"}}]}`,
	} {
		img, err := resolveEnv(t, newFuzzSource("", []byte(body), []byte(fuzzConfig)), "127.0.0.1:5000/fuzz:latest", "", noEnv, &bytes.Buffer{})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(img.Layers) != 1 || img.Layers[0].DiffID != testDigest {
			t.Errorf("%s: layers %+v", name, img.Layers)
		}
	}
}
