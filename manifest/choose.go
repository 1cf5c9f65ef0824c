package manifest

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// annotationDockerReferenceType marks BuildKit's attestation manifests,
// which sit in indexes next to the images with platform unknown/unknown.
const annotationDockerReferenceType = "vnd.docker.reference.type"

// ChoosePlatform picks the index entry to use for want: an exact match
// first, else the closest compatible variant (arm/v6 for an arm/v7 host).
// Entries that are not image manifests (attestations, nested indexes,
// artifacts) are ignored. When nothing matches the error lists what the
// index offers.
func ChoosePlatform(want ocispec.Platform, entries []ocispec.Descriptor) (ocispec.Descriptor, error) {
	images := imageEntries(entries)
	if len(images) == 0 {
		return ocispec.Descriptor{}, errors.New("the index lists no image manifests")
	}
	// An index without any platform information (some tools write one for a
	// single image) leaves nothing to choose between.
	if len(images) == 1 && images[0].Platform == nil {
		return images[0], nil
	}
	best, bestRank := -1, 0
	for i, d := range images {
		if d.Platform == nil {
			continue
		}
		if rank := matchRank(want, *d.Platform); rank > bestRank {
			best, bestRank = i, rank
		}
	}
	if best < 0 {
		return ocispec.Descriptor{}, fmt.Errorf("no manifest for platform %s; the index offers %s",
			FormatPlatform(NormalizePlatform(want)), strings.Join(platformNames(IndexPlatforms(entries)), ", "))
	}
	return images[best], nil
}

// IndexPlatforms lists the platforms of an index's image entries, normalised,
// in index order.
func IndexPlatforms(entries []ocispec.Descriptor) []ocispec.Platform {
	platforms := []ocispec.Platform{}
	for _, d := range imageEntries(entries) {
		if d.Platform != nil {
			platforms = append(platforms, NormalizePlatform(*d.Platform))
		}
	}
	return platforms
}

func imageEntries(entries []ocispec.Descriptor) []ocispec.Descriptor {
	var images []ocispec.Descriptor
	for _, d := range entries {
		if isImageEntry(d) {
			images = append(images, d)
		}
	}
	return images
}

func isImageEntry(d ocispec.Descriptor) bool {
	switch normaliseMediaType(d.MediaType) {
	case MediaTypeOCIManifest, MediaTypeDockerManifest:
	default:
		return false
	}
	if d.Annotations[annotationDockerReferenceType] == "attestation-manifest" {
		return false
	}
	if p := d.Platform; p != nil && (p.OS == "unknown" || p.Architecture == "unknown") {
		return false
	}
	return true
}

func platformNames(ps []ocispec.Platform) []string {
	names := make([]string, len(ps))
	for i, p := range ps {
		names[i] = FormatPlatform(p)
	}
	if len(names) == 0 {
		return []string{"no platforms"}
	}
	return names
}

// platformOf renders an index entry's platform for messages.
func platformOf(d ocispec.Descriptor) string {
	if d.Platform == nil {
		return "unspecified platform"
	}
	return FormatPlatform(NormalizePlatform(*d.Platform))
}

// parseIndex decodes an OCI index or Docker manifest list and checks the
// descriptors it will rely on.
func parseIndex(body []byte) (*ocispec.Index, error) {
	var idx ocispec.Index
	if err := json.Unmarshal(body, &idx); err != nil {
		return nil, fmt.Errorf("index: %w", err)
	}
	if idx.SchemaVersion != 2 {
		return nil, fmt.Errorf("index: schemaVersion is %d, want 2", idx.SchemaVersion)
	}
	for i, d := range idx.Manifests {
		if !isImageEntry(d) {
			continue
		}
		if err := d.Digest.Validate(); err != nil {
			return nil, fmt.Errorf("index: manifests[%d]: digest %q: %w", i, d.Digest, err)
		}
	}
	return &idx, nil
}

// choose picks the index entry for the wanted platform and logs the choice.
func (r *resolver) choose(top *fetchedManifest) (ocispec.Descriptor, []ocispec.Platform, error) {
	idx, err := parseIndex(top.body)
	if err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	platforms := IndexPlatforms(idx.Manifests)
	found := "OCI index found"
	if top.mediaType == MediaTypeDockerManifestList {
		found = "manifest list found"
	}
	r.log.Info(found, "digest", top.digest.String(), "platforms", strings.Join(platformNames(platforms), ", "))

	chosen, err := ChoosePlatform(r.want, idx.Manifests)
	if err != nil {
		return ocispec.Descriptor{}, nil, fmt.Errorf("%w (wanted platform from %s; pick one with --platform)", err, r.wantFrom)
	}
	r.log.Info("platform chosen", "platform", platformOf(chosen), "wanted", FormatPlatform(r.want),
		"from", r.wantFrom, "digest", chosen.Digest.String())
	return chosen, platforms, nil
}
