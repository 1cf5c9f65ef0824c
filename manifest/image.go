// Package manifest resolves image references to a verified description of
// an image: the manifest chosen for a platform, its config and its layers.
package manifest

import (
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Format is how a layer blob is encoded, which decides how it is indexed
// and read lazily.
type Format string

const (
	FormatTar         Format = "tar"          // uncompressed tar
	FormatGzip        Format = "gzip"         // tar+gzip without a TOC
	FormatZstd        Format = "zstd"         // tar+zstd without a TOC
	FormatEstargz     Format = "estargz"      // gzip with a stargz TOC footer
	FormatZstdChunked Format = "zstd:chunked" // zstd with a chunked TOC
	FormatForeign     Format = "foreign"      // non-distributable layer, served from its URLs
	FormatUnknown     Format = "unknown"
)

// Layer describes one layer blob as the manifest lists it.
type Layer struct {
	Digest      digest.Digest     `json:"digest"`
	MediaType   string            `json:"mediaType"`
	Size        int64             `json:"size"` // compressed size; -1 when the manifest does not say (schema 1)
	Format      Format            `json:"format"`
	DiffID      digest.Digest     `json:"diffID,omitempty"` // from the config's rootfs.diff_ids when known
	Annotations map[string]string `json:"annotations,omitempty"`
	URLs        []string          `json:"urls,omitempty"`
}

// Image is a resolved, verified image for one platform.
type Image struct {
	// Reference parts, normalised (Docker Hub defaults applied). For a
	// local source Transport names its kind (oci, oci-archive,
	// docker-archive), Repository is its path and Registry is empty.
	Transport  string `json:"transport,omitempty"`
	Registry   string `json:"registry"`   // e.g. index.docker.io, 127.0.0.1:5000
	Repository string `json:"repository"` // e.g. library/ubuntu
	Tag        string `json:"tag,omitempty"`
	Name       string `json:"name"` // full normalised reference as given (tag and/or digest)

	// Index is set when the reference pointed at an OCI index or Docker manifest list.
	IndexDigest    digest.Digest      `json:"indexDigest,omitempty"`
	IndexMediaType string             `json:"indexMediaType,omitempty"`
	Platforms      []ocispec.Platform `json:"platforms,omitempty"` // every platform the index offers

	Digest        digest.Digest    `json:"digest"`    // digest of the image manifest bytes received
	MediaType     string           `json:"mediaType"` // media type of the image manifest
	SchemaVersion int              `json:"schemaVersion"`
	Platform      ocispec.Platform `json:"platform"` // the platform of the chosen manifest (from the config when known)

	ConfigDigest digest.Digest `json:"configDigest,omitempty"` // empty for schema 1 (config is embedded)
	Config       ocispec.Image `json:"config"`

	Layers []Layer `json:"layers"`

	RawManifest []byte `json:"-"`
	RawIndex    []byte `json:"-"`
	RawConfig   []byte `json:"-"`
}

// Size is the total compressed size of the layers plus config, computed from
// the descriptors; -1 if any layer size is unknown.
func (img *Image) Size() int64 {
	total := int64(len(img.RawConfig))
	for _, l := range img.Layers {
		if l.Size < 0 {
			return -1
		}
		total += l.Size
	}
	return total
}
