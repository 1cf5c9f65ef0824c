package integration

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"maps"
	"strconv"

	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/klauspost/compress/zstd"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Compression is how a fixture layer's tar is encoded into its blob.
type Compression string

const (
	Uncompressed Compression = "tar"
	Gzip         Compression = "gzip"
	Zstd         Compression = "zstd"
	Estargz      Compression = "estargz"      // gzip members + TOC footer, with TOC digest annotation
	ZstdChunked  Compression = "zstd:chunked" // needs LayerSpec.Encoder until a builder exists
)

// Annotations eStargz layers carry in the manifest.
const (
	EstargzTOCDigestAnnotation        = estargz.TOCJSONDigestAnnotation         // containerd.io/snapshot/stargz/toc.digest
	EstargzUncompressedSizeAnnotation = estargz.StoreUncompressedSizeAnnotation // io.containers.estargz.uncompressed-size
)

// Docker media types (the OCI ones come from image-spec).
const (
	DockerManifestMediaType     = "application/vnd.docker.distribution.manifest.v2+json"
	DockerManifestListMediaType = "application/vnd.docker.distribution.manifest.list.v2+json"
	DockerConfigMediaType       = "application/vnd.docker.container.image.v1+json"
	DockerLayerMediaType        = "application/vnd.docker.image.rootfs.diff.tar"
	DockerGzipLayerMediaType    = "application/vnd.docker.image.rootfs.diff.tar.gzip"
)

// LayerEncoder turns an uncompressed tar into a blob: the hook for formats
// the builder does not make itself (zstd:chunked), or to hand-craft blobs.
type LayerEncoder func(tarball []byte) (EncodedLayer, error)

// EncodedLayer is what a LayerEncoder returns.
type EncodedLayer struct {
	Blob        []byte
	Tar         []byte            // the tar the blob decodes to; nil: the input tar
	Annotations map[string]string // descriptor annotations the format needs
}

// LayerSpec declares one layer.
type LayerSpec struct {
	Entries     []Entry
	Compression Compression // "": Gzip
	// GzipMembers > 1 splits the tar into that many parts compressed as
	// separate gzip members and concatenated (a valid multi-member stream).
	GzipMembers int
	GzipLevel   int // 0: gzip.DefaultCompression
	// EstargzChunkSize (0: library default 4 MiB) and EstargzPrioritized
	// (files before the prefetch landmark) tune eStargz.
	EstargzChunkSize   int
	EstargzPrioritized []string
	Encoder            LayerEncoder      // when set, replaces the built-in encoding
	Annotations        map[string]string // extra descriptor annotations
	MediaType          string            // overrides the media type chosen from Compression
}

// BuiltLayer is an encoded layer ready to push.
type BuiltLayer struct {
	Compression Compression
	Blob        []byte
	Digest      digest.Digest // of Blob
	Tar         []byte        // uncompressed content (for eStargz: including TOC and landmark entries)
	DiffID      digest.Digest // of Tar
	Source      []byte        // the tar of the entries before encoding: what a mount must show
	Annotations map[string]string
	MediaType   string // override; "" = chosen by the manifest kind
}

// BuildLayer builds the tar of spec.Entries and encodes it.
func BuildLayer(spec LayerSpec) (*BuiltLayer, error) {
	tarball, err := BuildTar(spec.Entries)
	if err != nil {
		return nil, err
	}
	if spec.Compression == "" {
		spec.Compression = Gzip
	}
	enc, err := encodeLayer(spec, tarball)
	if err != nil {
		return nil, fmt.Errorf("encode %s layer: %w", spec.Compression, err)
	}
	if enc.Tar == nil {
		enc.Tar = tarball
	}
	annotations := maps.Clone(enc.Annotations)
	if len(spec.Annotations) > 0 {
		if annotations == nil {
			annotations = map[string]string{}
		}
		maps.Copy(annotations, spec.Annotations)
	}
	return &BuiltLayer{
		Compression: spec.Compression,
		Blob:        enc.Blob,
		Digest:      digest.FromBytes(enc.Blob),
		Tar:         enc.Tar,
		DiffID:      digest.FromBytes(enc.Tar),
		Source:      tarball,
		Annotations: annotations,
		MediaType:   spec.MediaType,
	}, nil
}

func encodeLayer(spec LayerSpec, tarball []byte) (EncodedLayer, error) {
	if spec.Encoder != nil {
		return spec.Encoder(tarball)
	}
	switch spec.Compression {
	case Uncompressed:
		return EncodedLayer{Blob: tarball}, nil
	case Gzip:
		blob, err := GzipMembers(tarball, spec.GzipMembers, spec.GzipLevel)
		return EncodedLayer{Blob: blob}, err
	case Zstd:
		blob, err := ZstdCompress(tarball)
		return EncodedLayer{Blob: blob}, err
	case Estargz:
		return EstargzEncode(tarball, spec.EstargzChunkSize, spec.EstargzPrioritized)
	case ZstdChunked:
		return EncodedLayer{}, fmt.Errorf("zstd:chunked has no built-in encoder: set LayerSpec.Encoder")
	default:
		return EncodedLayer{}, fmt.Errorf("unknown compression %q", spec.Compression)
	}
}

// GzipMembers compresses data as `members` concatenated gzip members
// (at least one), splitting it at equal byte offsets.
func GzipMembers(data []byte, members, level int) ([]byte, error) {
	if members < 1 {
		members = 1
	}
	if level == 0 {
		level = gzip.DefaultCompression
	}
	var out bytes.Buffer
	part := (len(data) + members - 1) / members
	for i := 0; i < members; i++ {
		lo, hi := min(i*part, len(data)), min((i+1)*part, len(data))
		zw, err := gzip.NewWriterLevel(&out, level)
		if err != nil {
			return nil, err
		}
		if _, err := zw.Write(data[lo:hi]); err != nil {
			return nil, err
		}
		if err := zw.Close(); err != nil {
			return nil, err
		}
	}
	return out.Bytes(), nil
}

// ZstdCompress compresses data as one zstd stream.
func ZstdCompress(data []byte) ([]byte, error) {
	zw, err := zstd.NewWriter(nil)
	if err != nil {
		return nil, err
	}
	defer zw.Close()
	return zw.EncodeAll(data, nil), nil
}

// EstargzEncode converts a tar into eStargz with the library's builder and
// returns the TOC digest and uncompressed-size annotations.
func EstargzEncode(tarball []byte, chunkSize int, prioritized []string) (EncodedLayer, error) {
	opts := []estargz.Option{estargz.WithParallelism(1)}
	if chunkSize > 0 {
		opts = append(opts, estargz.WithChunkSize(chunkSize))
	}
	if len(prioritized) > 0 {
		opts = append(opts, estargz.WithPrioritizedFiles(prioritized))
	}
	sb, err := estargz.Build(io.NewSectionReader(bytes.NewReader(tarball), 0, int64(len(tarball))), opts...)
	if err != nil {
		return EncodedLayer{}, fmt.Errorf("estargz build: %w", err)
	}
	blob, err := io.ReadAll(sb)
	closeErr := sb.Close()
	if err != nil {
		return EncodedLayer{}, fmt.Errorf("estargz read: %w", err)
	}
	if closeErr != nil {
		return EncodedLayer{}, fmt.Errorf("estargz close: %w", closeErr)
	}
	size, err := sb.UncompressedSize()
	if err != nil {
		return EncodedLayer{}, fmt.Errorf("estargz size: %w", err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(blob))
	if err != nil {
		return EncodedLayer{}, fmt.Errorf("estargz decode: %w", err)
	}
	decoded, err := io.ReadAll(zr)
	if err != nil {
		return EncodedLayer{}, fmt.Errorf("estargz decode: %w", err)
	}
	if got := digest.FromBytes(decoded); got != sb.DiffID() {
		return EncodedLayer{}, fmt.Errorf("estargz diffID %s, decoded tar is %s", sb.DiffID(), got)
	}
	return EncodedLayer{
		Blob: blob,
		Tar:  decoded,
		Annotations: map[string]string{
			EstargzTOCDigestAnnotation:        sb.TOCDigest().String(),
			EstargzUncompressedSizeAnnotation: strconv.FormatInt(size, 10),
		},
	}, nil
}

// MediaTypeFor is the layer media type a manifest of the given kind uses.
func (l *BuiltLayer) MediaTypeFor(kind ManifestKind) string {
	if l.MediaType != "" {
		return l.MediaType
	}
	switch {
	case kind == DockerSchema2 && l.Compression == Uncompressed:
		return DockerLayerMediaType
	case kind == DockerSchema2 && (l.Compression == Gzip || l.Compression == Estargz):
		return DockerGzipLayerMediaType
	case l.Compression == Uncompressed:
		return ocispec.MediaTypeImageLayer
	case l.Compression == Gzip || l.Compression == Estargz:
		return ocispec.MediaTypeImageLayerGzip
	default: // zstd, zstd:chunked: Docker uses the OCI type too
		return ocispec.MediaTypeImageLayerZstd
	}
}

// Descriptor describes the layer in a manifest of the given kind.
func (l *BuiltLayer) Descriptor(kind ManifestKind) ocispec.Descriptor {
	return ocispec.Descriptor{
		MediaType:   l.MediaTypeFor(kind),
		Digest:      l.Digest,
		Size:        int64(len(l.Blob)),
		Annotations: maps.Clone(l.Annotations),
	}
}
