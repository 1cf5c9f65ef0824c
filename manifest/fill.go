package manifest

import (
	"context"
	"encoding/json"
	"fmt"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/imgfs/imgfs/fetch"
)

// parseImageManifest decodes a Docker schema 2 or OCI image manifest and
// checks the descriptors that will be fetched later.
func parseImageManifest(body []byte) (*ocispec.Manifest, error) {
	var m ocispec.Manifest
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, fmt.Errorf("image manifest: %w", err)
	}
	if m.SchemaVersion != 2 {
		return nil, fmt.Errorf("image manifest: schemaVersion is %d, want 2", m.SchemaVersion)
	}
	if err := m.Config.Digest.Validate(); err != nil {
		return nil, fmt.Errorf("image manifest: config digest %q: %w", m.Config.Digest, err)
	}
	if m.Config.Size < 0 {
		return nil, fmt.Errorf("image manifest: config size %d", m.Config.Size)
	}
	for i, l := range m.Layers {
		if err := l.Digest.Validate(); err != nil {
			return nil, fmt.Errorf("image manifest: layers[%d]: digest %q: %w", i, l.Digest, err)
		}
		if l.Size < 0 {
			return nil, fmt.Errorf("image manifest: layers[%d] %s: size %d", i, l.Digest, l.Size)
		}
	}
	return &m, nil
}

// isContainerConfig is false for artifacts (Helm charts, SIF files, signatures)
// that reuse the manifest format with a config of their own.
func isContainerConfig(mediaType string) bool {
	switch normaliseMediaType(mediaType) {
	case MediaTypeOCIConfig, MediaTypeDockerConfig, "", "application/json", "application/octet-stream":
		return true
	}
	return false
}

// fillImage completes img from a schema 2 / OCI manifest: the config from
// /blobs/<digest> (verified) and the layers.
func (r *resolver) fillImage(ctx context.Context, img *Image, body []byte) error {
	m, err := parseImageManifest(body)
	if err != nil {
		return err
	}
	img.SchemaVersion = 2
	if !isContainerConfig(m.Config.MediaType) {
		return fmt.Errorf("manifest %s is not a container image: config media type %q (artifact type %q)",
			img.Digest, m.Config.MediaType, m.ArtifactType)
	}
	if r.early != nil {
		layers := make([]Layer, len(m.Layers))
		for i, d := range m.Layers {
			layers[i] = layerFromDescriptor(d)
		}
		r.early(img.Digest, img.MediaType, int64(len(body)), layers)
	}

	raw, err := r.fetchConfig(ctx, m.Config)
	if err != nil {
		return err
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return fmt.Errorf("config %s: %w", m.Config.Digest, err)
	}
	img.ConfigDigest, img.Config, img.RawConfig = m.Config.Digest, cfg, raw
	if cfg.OS != "" || cfg.Architecture != "" {
		img.Platform = NormalizePlatform(cfg.Platform)
	}

	img.Layers = make([]Layer, len(m.Layers))
	for i, d := range m.Layers {
		img.Layers[i] = layerFromDescriptor(d)
		if img.Layers[i].Format == FormatUnknown {
			r.log.Warn("layer has an unknown media type", "layer", d.Digest.String(), "mediaType", d.MediaType)
		}
	}
	attachDiffIDs(img.Layers, cfg.RootFS.DiffIDs, r)
	return nil
}

// attachDiffIDs copies the config's uncompressed-layer digests onto the
// layers when the counts agree (they pair up by position).
func attachDiffIDs(layers []Layer, diffIDs []digest.Digest, r *resolver) {
	if len(diffIDs) != len(layers) {
		if len(diffIDs) != 0 {
			r.log.Warn("config diff_ids do not pair with the layers; ignoring them",
				"diffIDs", len(diffIDs), "layers", len(layers))
		}
		return
	}
	for i := range layers {
		layers[i].DiffID = diffIDs[i]
	}
}

// fetchConfig GETs the config blob (a blob, not a manifest) and verifies it.
func (r *resolver) fetchConfig(ctx context.Context, desc ocispec.Descriptor) ([]byte, error) {
	limit := int64(maxConfigSize)
	if desc.Size > limit {
		return nil, fmt.Errorf("config %s: %d bytes is more than the %d allowed", desc.Digest, desc.Size, limit)
	}
	if desc.Size > 0 {
		limit = desc.Size
	}
	r.log.Info("config GET", "digest", desc.Digest.String(), "size", desc.Size)
	raw, err := r.src.FetchBlob(ctx, desc.Digest, limit)
	if err != nil {
		return nil, fmt.Errorf("get config %s: %w", desc.Digest, err)
	}
	// fetch verifies too; checking here keeps any Source honest.
	if got := desc.Digest.Algorithm().FromBytes(raw); got != desc.Digest {
		return nil, fmt.Errorf("config %s: %w: received bytes hash to %s", desc.Digest, fetch.ErrDigest, got)
	}
	if desc.Size > 0 && int64(len(raw)) != desc.Size {
		return nil, fmt.Errorf("config %s: manifest says %d bytes, got %d", desc.Digest, desc.Size, len(raw))
	}
	return raw, nil
}

// fillSchema1 completes img from a schema 1 manifest: layers base-first,
// config from the newest history entry; layer sizes are unknown.
func (r *resolver) fillSchema1(img *Image, body []byte) error {
	s1, err := parseSchema1(body)
	if err != nil {
		return err
	}
	img.SchemaVersion = 1
	img.Layers = s1.Layers
	img.Config = s1.Config
	img.Platform = s1.Config.Platform
	r.log.Info("schema 1 manifest: config taken from its history", "layers", len(img.Layers))
	return nil
}
