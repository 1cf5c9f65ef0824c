package manifest

import (
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Layer annotations that mark lazily readable variants of gzip and zstd.
const (
	AnnotationEstargzTOCDigest           = "containerd.io/snapshot/stargz/toc.digest"
	AnnotationZstdChunkedManifestPos     = "io.github.containers.zstd-chunked.manifest-position"
	AnnotationZstdChunkedManifestPosOld  = "io.containers.zstd-chunked.manifest-position"
	AnnotationZstdChunkedManifestSum     = "io.github.containers.zstd-chunked.manifest-checksum"
	AnnotationZstdChunkedManifestSumOld  = "io.containers.zstd-chunked.manifest-checksum"
	mediaTypeDockerLayerTar              = "application/vnd.docker.image.rootfs.diff.tar"
	mediaTypeDockerLayerGzip             = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	mediaTypeDockerLayerZstd             = "application/vnd.docker.image.rootfs.diff.tar.zstd"
	mediaTypeDockerLayerForeignGzip      = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
	mediaTypeDockerLayerForeignTar       = "application/vnd.docker.image.rootfs.foreign.diff.tar"
	mediaTypeOCILayerNonDistributablePfx = "application/vnd.oci.image.layer.nondistributable.v1.tar"
)

// DetectFormat tells how a layer blob is encoded from its descriptor: media
// type first, then the annotations that mark eStargz and zstd:chunked.
// Non-distributable ("foreign") layers are reported as FormatForeign whatever
// their compression: they are fetched from their URLs, never silently skipped.
func DetectFormat(desc ocispec.Descriptor) Format {
	mt := normaliseMediaType(desc.MediaType)
	switch {
	case mt == mediaTypeDockerLayerForeignGzip, mt == mediaTypeDockerLayerForeignTar,
		strings.HasPrefix(mt, mediaTypeOCILayerNonDistributablePfx):
		return FormatForeign
	}
	switch mt {
	case ocispec.MediaTypeImageLayer, mediaTypeDockerLayerTar:
		return FormatTar
	case ocispec.MediaTypeImageLayerGzip, mediaTypeDockerLayerGzip:
		if desc.Annotations[AnnotationEstargzTOCDigest] != "" {
			return FormatEstargz
		}
		return FormatGzip
	case ocispec.MediaTypeImageLayerZstd, mediaTypeDockerLayerZstd:
		if desc.Annotations[AnnotationZstdChunkedManifestPos] != "" ||
			desc.Annotations[AnnotationZstdChunkedManifestPosOld] != "" {
			return FormatZstdChunked
		}
		return FormatZstd
	}
	return FormatUnknown
}

// layerFromDescriptor builds a Layer from a manifest's layer descriptor.
func layerFromDescriptor(desc ocispec.Descriptor) Layer {
	return Layer{
		Digest:      desc.Digest,
		MediaType:   desc.MediaType,
		Size:        desc.Size,
		Format:      DetectFormat(desc),
		Annotations: desc.Annotations,
		URLs:        desc.URLs,
	}
}
