package manifest

import (
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestDetectFormat(t *testing.T) {
	estargz := map[string]string{AnnotationEstargzTOCDigest: "sha256:aa"}
	chunked := map[string]string{AnnotationZstdChunkedManifestPos: "1:2:3:4"}
	chunkedOld := map[string]string{AnnotationZstdChunkedManifestPosOld: "1:2:3:4"}
	tests := []struct {
		mediaType   string
		annotations map[string]string
		want        Format
	}{
		{"application/vnd.oci.image.layer.v1.tar", nil, FormatTar},
		{"application/vnd.docker.image.rootfs.diff.tar", nil, FormatTar},
		{"application/vnd.oci.image.layer.v1.tar+gzip", nil, FormatGzip},
		{"application/vnd.docker.image.rootfs.diff.tar.gzip", nil, FormatGzip},
		{"application/vnd.oci.image.layer.v1.tar+gzip", estargz, FormatEstargz},
		{"application/vnd.docker.image.rootfs.diff.tar.gzip", estargz, FormatEstargz},
		{"application/vnd.oci.image.layer.v1.tar+zstd", nil, FormatZstd},
		{"application/vnd.docker.image.rootfs.diff.tar.zstd", nil, FormatZstd},
		{"application/vnd.oci.image.layer.v1.tar+zstd", chunked, FormatZstdChunked},
		{"application/vnd.oci.image.layer.v1.tar+zstd", chunkedOld, FormatZstdChunked},
		{"application/vnd.oci.image.layer.v1.tar+gzip", chunked, FormatGzip}, // chunked annotation means nothing on gzip
		{"application/vnd.oci.image.layer.v1.tar+zstd", estargz, FormatZstd}, // nor the stargz one on zstd
		{"application/vnd.oci.image.layer.v1.tar", estargz, FormatTar},       // nor on tar
		{"application/vnd.oci.image.layer.nondistributable.v1.tar", nil, FormatForeign},
		{"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", nil, FormatForeign},
		{"application/vnd.oci.image.layer.nondistributable.v1.tar+zstd", nil, FormatForeign},
		{"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", nil, FormatForeign},
		{"Application/VND.OCI.Image.Layer.v1.Tar+Gzip", nil, FormatGzip},
		{"application/vnd.sylabs.sif.layer.v1.sif", nil, FormatUnknown},
		{"application/vnd.oci.image.config.v1+json", nil, FormatUnknown},
		{"", nil, FormatUnknown},
	}
	for _, tc := range tests {
		got := DetectFormat(ocispec.Descriptor{MediaType: tc.mediaType, Annotations: tc.annotations})
		if got != tc.want {
			t.Errorf("DetectFormat(%q, %v) = %s, want %s", tc.mediaType, tc.annotations, got, tc.want)
		}
	}
}

func TestForeignLayerKeepsURLs(t *testing.T) {
	d := ocispec.Descriptor{
		MediaType: "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
		Digest:    "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		Size:      42,
		URLs:      []string{"https://example.com/layer.tar.gz"},
	}
	l := layerFromDescriptor(d)
	if l.Format != FormatForeign || len(l.URLs) != 1 || l.URLs[0] != d.URLs[0] || l.Size != 42 {
		t.Errorf("layerFromDescriptor = %+v", l)
	}
}

func TestImageSize(t *testing.T) {
	img := &Image{RawConfig: []byte("0123456789"), Layers: []Layer{{Size: 100}, {Size: 1000}}}
	if got := img.Size(); got != 1110 {
		t.Errorf("Size() = %d, want 1110", got)
	}
	img.Layers = append(img.Layers, Layer{Size: -1})
	if got := img.Size(); got != -1 {
		t.Errorf("Size() with an unknown layer = %d, want -1", got)
	}
	if got := (&Image{}).Size(); got != 0 {
		t.Errorf("empty Size() = %d", got)
	}
}
