package integration

import (
	"encoding/json"
	"fmt"
	"maps"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ManifestKind chooses between OCI and Docker schema 2 documents.
type ManifestKind int

const (
	OCI           ManifestKind = iota // OCI image manifest / image index
	DockerSchema2                     // Docker manifest v2 schema 2 / manifest list
)

func (k ManifestKind) String() string {
	if k == DockerSchema2 {
		return "docker"
	}
	return "oci"
}

// Common platforms of multi-platform fixtures.
var (
	LinuxAMD64 = ocispec.Platform{OS: "linux", Architecture: "amd64"}
	LinuxARM64 = ocispec.Platform{OS: "linux", Architecture: "arm64"}
	LinuxARMv7 = ocispec.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}
)

// ImageSpec declares one single-platform image.
type ImageSpec struct {
	Kind        ManifestKind
	Platform    ocispec.Platform    // zero: LinuxAMD64
	Config      ocispec.ImageConfig // env, entrypoint, cmd, labels, workdir, user, ports ...
	Layers      []*BuiltLayer       // from BuildLayer, in manifest order
	Created     time.Time           // zero: DefaultModTime
	Author      string
	History     []ocispec.History // nil: one entry per layer
	Annotations map[string]string // manifest annotations
}

// BuiltImage is an image whose manifest and config bytes are final.
type BuiltImage struct {
	Kind         ManifestKind
	Platform     ocispec.Platform
	Layers       []*BuiltLayer
	Config       []byte
	ConfigDigest digest.Digest
	Manifest     []byte
	Digest       digest.Digest // of Manifest
	MediaType    string        // of Manifest
}

// BuildImage writes the config (rootfs diff_ids from the layers) and the
// manifest of the spec.
func BuildImage(spec ImageSpec) (*BuiltImage, error) {
	if spec.Platform.OS == "" {
		spec.Platform = LinuxAMD64
	}
	created := spec.Created
	if created.IsZero() {
		created = DefaultModTime
	}
	history := spec.History
	if history == nil {
		for i := range spec.Layers {
			history = append(history, ocispec.History{
				Created:   &created,
				CreatedBy: fmt.Sprintf("imgfs fixture layer %d", i),
			})
		}
	}
	cfg := ocispec.Image{
		Created:  &created,
		Author:   spec.Author,
		Platform: spec.Platform,
		Config:   spec.Config,
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{}},
		History:  history,
	}
	for _, l := range spec.Layers {
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, l.DiffID)
	}
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("marshal config: %w", err)
	}

	mediaType, cfgMediaType := ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageConfig
	if spec.Kind == DockerSchema2 {
		mediaType, cfgMediaType = DockerManifestMediaType, DockerConfigMediaType
	}
	m := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: mediaType,
		Config: ocispec.Descriptor{
			MediaType: cfgMediaType,
			Digest:    digest.FromBytes(cfgJSON),
			Size:      int64(len(cfgJSON)),
		},
		Layers:      []ocispec.Descriptor{},
		Annotations: maps.Clone(spec.Annotations),
	}
	for _, l := range spec.Layers {
		m.Layers = append(m.Layers, l.Descriptor(spec.Kind))
	}
	manifestJSON, err := json.MarshalIndent(m, "", "   ")
	if err != nil {
		return nil, fmt.Errorf("marshal manifest: %w", err)
	}
	return &BuiltImage{
		Kind:         spec.Kind,
		Platform:     spec.Platform,
		Layers:       spec.Layers,
		Config:       cfgJSON,
		ConfigDigest: m.Config.Digest,
		Manifest:     manifestJSON,
		Digest:       digest.FromBytes(manifestJSON),
		MediaType:    mediaType,
	}, nil
}

// Descriptor describes the image in an index, with its platform.
func (img *BuiltImage) Descriptor() ocispec.Descriptor {
	p := img.Platform
	return ocispec.Descriptor{
		MediaType: img.MediaType,
		Digest:    img.Digest,
		Size:      int64(len(img.Manifest)),
		Platform:  &p,
	}
}

// BuiltIndex is an OCI image index or Docker manifest list.
type BuiltIndex struct {
	Kind      ManifestKind
	Images    []*BuiltImage
	Manifest  []byte
	Digest    digest.Digest
	MediaType string
}

// BuildIndex lists the images, in order, with their platforms.
func BuildIndex(kind ManifestKind, images ...*BuiltImage) (*BuiltIndex, error) {
	mediaType := ocispec.MediaTypeImageIndex
	if kind == DockerSchema2 {
		mediaType = DockerManifestListMediaType
	}
	idx := ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: mediaType,
		Manifests: []ocispec.Descriptor{},
	}
	for _, img := range images {
		idx.Manifests = append(idx.Manifests, img.Descriptor())
	}
	data, err := json.MarshalIndent(idx, "", "   ")
	if err != nil {
		return nil, fmt.Errorf("marshal index: %w", err)
	}
	return &BuiltIndex{Kind: kind, Images: images, Manifest: data, Digest: digest.FromBytes(data), MediaType: mediaType}, nil
}

// MustLayer, MustImage and MustIndex fail the test on a builder error.
func MustLayer(t testing.TB, spec LayerSpec) *BuiltLayer {
	t.Helper()
	l, err := BuildLayer(spec)
	if err != nil {
		t.Fatalf("build layer: %v", err)
	}
	return l
}

func MustImage(t testing.TB, spec ImageSpec) *BuiltImage {
	t.Helper()
	img, err := BuildImage(spec)
	if err != nil {
		t.Fatalf("build image: %v", err)
	}
	return img
}

func MustIndex(t testing.TB, kind ManifestKind, images ...*BuiltImage) *BuiltIndex {
	t.Helper()
	idx, err := BuildIndex(kind, images...)
	if err != nil {
		t.Fatalf("build index: %v", err)
	}
	return idx
}
