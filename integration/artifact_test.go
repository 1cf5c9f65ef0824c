package integration

// End-to-end tests of index artifacts on Debian's docker-registry 2.8,
// which has no referrers API: push, discovery through the referrers tag
// schema, and artifacts that must not be used.

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/imgfs/imgfs/fetch"
	"github.com/imgfs/imgfs/image"
	"github.com/imgfs/imgfs/index"
	"github.com/imgfs/imgfs/manifest"
)

// clusterPadding is the incompressible file of the big gzip layer of the
// cluster fixture: the needle's span is a small share of the blob.
const clusterPadding = 12 << 20

// clusterImage is a two-layer gzip image: a big layer with a small file
// (big/needle) after 12 MiB of random data, and a small layer.
func clusterImage(t testing.TB) *BuiltImage {
	t.Helper()
	big := MustLayer(t, LayerSpec{Compression: Gzip, Entries: []Entry{
		Dir("big"),
		{Path: "big/padding", Type: TypeFile, Mode: 0o644, Content: conformanceRandom(clusterPadding)},
		File("big/needle", "needle in a haystack\n"),
		Dir("etc"), File("etc/os-release", "NAME=cluster\n"),
	}})
	small := MustLayer(t, LayerSpec{Compression: Gzip, Entries: []Entry{Dir("etc"), File("etc/motd", "hello cluster\n")}})
	return MustImage(t, ImageSpec{Kind: OCI, Layers: []*BuiltLayer{big, small}})
}

func layerBytes(img *BuiltImage) int64 {
	var n int64
	for _, l := range img.Layers {
		n += int64(len(l.Blob))
	}
	return n
}

// referrersTag GETs the image's referrers tag (sha256-<hex>) from the
// registry: the index of its referrers, on registries without the API.
func referrersTag(t *testing.T, reg *Registry, repo string, img *BuiltImage) (ocispec.Index, int) {
	t.Helper()
	resp, err := reg.Get(context.Background(), "/v2/"+repo+"/manifests/"+strings.Replace(img.Digest.String(), ":", "-", 1),
		http.Header{"Accept": {ocispec.MediaTypeImageIndex}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var idx ocispec.Index
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&idx); err != nil {
			t.Fatal(err)
		}
	}
	return idx, resp.StatusCode
}

// cliCount counts lines of s containing sub.
func cliCount(s, sub string) int {
	n := 0
	for _, line := range strings.Split(s, "\n") {
		if strings.Contains(line, sub) {
			n++
		}
	}
	return n
}

func TestIndexArtifactPushAndDiscover(t *testing.T) {
	reg := StartRegistry(t, RegistryOptions{})
	img := clusterImage(t)
	reg.PushImage(t, "cluster/app", "v1", img)
	origin := StartCountingProxy(t, reg.Host)
	ref := origin.Host + "/cluster/app:v1"

	if _, status := referrersTag(t, reg, "cluster/app", img); status != http.StatusNotFound {
		t.Fatalf("referrers tag before any push: HTTP %d", status)
	}
	res := mustCLI(t, cliEnvFor(t.TempDir()), "--plain-http", "index", "--push", ref)
	if !strings.Contains(res.stdout, "pushed index artifact sha256:") || !strings.Contains(res.stdout, "(2 layer indexes)") {
		t.Fatalf("index --push: %s", res.stdout)
	}
	idx, status := referrersTag(t, reg, "cluster/app", img)
	if status != http.StatusOK || len(idx.Manifests) != 1 || idx.Manifests[0].ArtifactType != image.ArtifactType {
		t.Fatalf("referrers tag after the push: HTTP %d, %+v", status, idx)
	}
	res = mustCLI(t, cliEnvFor(t.TempDir()), "--plain-http", "index", "--push", ref)
	if !strings.Contains(res.stdout, "already in") {
		t.Errorf("a second push of the same indexes: %s", res.stdout)
	}

	// A node that never saw the image: the indexes come from the registry.
	origin.Reset()
	env := cliEnvFor(t.TempDir())
	res = mustCLI(t, env, "--plain-http", "cat", ref, "/big/needle")
	if res.stdout != "needle in a haystack\n" {
		t.Fatalf("cat: %q", res.stdout)
	}
	blobs, _, _ := origin.Bytes()
	if limit := layerBytes(img) / 10; blobs > limit {
		t.Errorf("a node with the index artifact fetched %d blob bytes, more than 10%% of the layers (%d)", blobs, limit)
	}
	res = mustCLI(t, env, "--plain-http", "index", ref)
	if cliCount(res.stdout, "index from the registry (unverified)") != 2 || cliCount(res.stdout, "cached") != 2 {
		t.Errorf("index after an artifact was used:\n%s", res.stdout)
	}
	res = mustCLI(t, cliEnvFor(t.TempDir()), "--plain-http", "index", "--verify", ref)
	if cliCount(res.stdout, ": identical") != 2 {
		t.Errorf("index --verify:\n%s", res.stdout)
	}

	// --index-source local never uses it: the big layer is streamed.
	origin.Reset()
	mustCLI(t, cliEnvFor(t.TempDir()), "--plain-http", "--index-source", "local", "cat", ref, "/big/needle")
	if blobs, _, _ := origin.Bytes(); blobs < int64(len(img.Layers[0].Blob)) {
		t.Errorf("--index-source local fetched only %d blob bytes: it used the artifact", blobs)
	}
}

// pushArtifact pushes an index artifact of img with the given index blobs
// and layer annotations, as a hostile or broken publisher would.
func pushArtifact(t *testing.T, reg *Registry, repo string, img *BuiltImage, blobs [][]byte, layers []digest.Digest, version string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := name.NewRepository(reg.Host+"/"+repo, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	fr, err := fetch.NewRepository(ctx, r, fetch.Options{PlainHTTP: true})
	if err != nil {
		t.Fatal(err)
	}
	var ab []fetch.ArtifactBlob
	m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, ArtifactType: image.ArtifactType,
		Config:      ocispec.Descriptor{MediaType: ocispec.MediaTypeEmptyJSON, Digest: digest.FromBytes([]byte("{}")), Size: 2},
		Subject:     &ocispec.Descriptor{MediaType: img.MediaType, Digest: img.Digest, Size: int64(len(img.Manifest))},
		Annotations: map[string]string{ocispec.AnnotationCreated: time.Now().UTC().Format(time.RFC3339)}}
	m.SchemaVersion = 2
	for i, b := range blobs {
		ab = append(ab, fetch.ArtifactBlob{MediaType: image.IndexMediaType, Data: b})
		m.Layers = append(m.Layers, ocispec.Descriptor{MediaType: image.IndexMediaType, Digest: digest.FromBytes(b), Size: int64(len(b)),
			Annotations: map[string]string{image.AnnotationLayer: layers[i].String(), image.AnnotationVersion: version}})
	}
	ab = append(ab, fetch.ArtifactBlob{MediaType: ocispec.MediaTypeEmptyJSON, Data: []byte("{}")})
	body, _ := json.Marshal(m)
	if _, err := fr.PushArtifact(ctx, ab, body); err != nil {
		t.Fatal(err)
	}
}

// localIndex builds the index of a layer here, as imgfs would, with the
// given checkpoint spacing (0: the default).
func localIndex(t *testing.T, l *BuiltLayer, spanSize int64) []byte {
	t.Helper()
	ix, err := index.Build(context.Background(), index.Options{
		Layer:    manifest.Layer{Digest: l.Digest, Size: int64(len(l.Blob)), Format: manifest.FormatGzip},
		Blob:     memBlob(l.Blob),
		SpanSize: spanSize,
	})
	if err != nil {
		t.Fatal(err)
	}
	return ix.Encode()
}

type memBlob []byte

func (b memBlob) Size() int64 { return int64(len(b)) }
func (b memBlob) ReadAt(_ context.Context, p []byte, off int64) (int, error) {
	return copy(p, b[off:]), nil
}

// TestIndexArtifactMismatchFallsBack: an artifact whose blob describes
// another layer, has another index version, or is damaged is not used:
// the layer is indexed locally, with one warning line, and the content is
// right. --index-source registry makes it an error.
func TestIndexArtifactMismatchFallsBack(t *testing.T) {
	reg := StartRegistry(t, RegistryOptions{})
	img := clusterImage(t)
	big, small := img.Layers[0], img.Layers[1]
	good := localIndex(t, big, 0)
	damaged := append([]byte(nil), good...)
	damaged[len(damaged)/2] ^= 0x40
	cases := []struct {
		name    string
		blob    []byte
		layer   digest.Digest
		version string
	}{
		{"other-layer", good, small.Digest, "3"},
		{"other-version", good, big.Digest, "2"},
		{"damaged", damaged, big.Digest, "3"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			repo := "cluster/bad-" + c.name
			reg.PushImage(t, repo, "v1", img)
			pushArtifact(t, reg, repo, img, [][]byte{c.blob}, []digest.Digest{c.layer}, c.version)
			origin := StartCountingProxy(t, reg.Host)
			ref := origin.Host + "/" + repo + ":v1"
			res := mustCLI(t, cliEnvFor(t.TempDir()), "--plain-http", "cat", ref, "/big/needle")
			if res.stdout != "needle in a haystack\n" {
				t.Fatalf("cat: %q", res.stdout)
			}
			if n := cliCount(res.stderr, "index artifact unusable"); n != 1 {
				t.Errorf("%d warning lines, want 1:\n%s", n, res.stderr)
			}
			if blobs, _, _ := origin.Bytes(); blobs < int64(len(big.Blob)) {
				t.Errorf("only %d blob bytes fetched: the bad index was used", blobs)
			}
			res = runCLI(t, mountCommandTimeout, cliEnvFor(t.TempDir()), "--plain-http", "--index-source", "registry", "ls", ref)
			if res.err == nil || !strings.Contains(res.stderr, "--index-source registry") {
				t.Errorf("--index-source registry with a bad artifact: %v %s", res.err, res.stderr)
			}
		})
	}
}

// TestIndexArtifactTrust: a well-formed artifact index that differs from
// what the layer holds (here: other checkpoints) is used, as an
// unverified index of its repository; --verify finds the difference, and
// --index-source local ignores it.
func TestIndexArtifactTrust(t *testing.T) {
	reg := StartRegistry(t, RegistryOptions{})
	img := clusterImage(t)
	reg.PushImage(t, "cluster/other", "v1", img)
	pushArtifact(t, reg, "cluster/other", img, [][]byte{localIndex(t, img.Layers[0], 1<<20)}, []digest.Digest{img.Layers[0].Digest}, "3")
	ref := reg.Host + "/cluster/other:v1"
	env := cliEnvFor(t.TempDir())
	res := mustCLI(t, env, "--plain-http", "index", ref)
	if rows := strings.Split(strings.TrimSpace(res.stdout), "\n"); len(rows) != 3 || !strings.Contains(rows[1], "artifact") || !strings.Contains(rows[2], "built") {
		t.Fatalf("index with a foreign artifact:\n%s", res.stdout)
	}
	res = runCLI(t, mountCommandTimeout, cliEnvFor(t.TempDir()), "--plain-http", "index", "--verify", ref)
	if res.err == nil || !strings.Contains(res.stdout, "DIFFERS") {
		t.Fatalf("index --verify of a differing artifact: %v\n%s%s", res.err, res.stdout, res.stderr)
	}
	// The same layer pushed in another repository never sees it.
	reg.PushImage(t, "cluster/clean", "v1", img)
	res = mustCLI(t, env, "--plain-http", "index", reg.Host+"/cluster/clean:v1")
	if strings.Contains(res.stdout, "artifact") || strings.Contains(res.stdout, "unverified") {
		t.Errorf("another repository used the artifact index:\n%s", res.stdout)
	}
}
