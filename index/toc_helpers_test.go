package index

import (
	"bytes"
	"io"
	"maps"
	"testing"

	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/containerd/stargz-snapshotter/estargz/zstdchunked"
	"github.com/imgfs/imgfs/manifest"
	"github.com/klauspost/compress/zstd"
)

// tocLayer is a generated eStargz or zstd:chunked blob with the manifest
// annotations its writer produces.
type tocLayer struct {
	name        string
	format      manifest.Format
	blob        []byte
	annotations map[string]string
	ordered     bool // TOC entries in tar order (no prioritized files)
}

// zstdChunkedCompression is the Compression estargz.Build needs: the
// zstdchunked package ships its halves separately.
type zstdChunkedCompression struct {
	*zstdchunked.Compressor
	*zstdchunked.Decompressor
}

// estargzWrite converts a tar with the library's Writer (entries kept in
// order, no landmark), as eStargz (gzip) or, with zstd set, as the
// zstd:chunked variant stargz-snapshotter writes.
func estargzWrite(t testing.TB, tarData []byte, chunkSize, minChunkSize int, zstdChunks bool) tocLayer {
	t.Helper()
	var buf bytes.Buffer
	meta := map[string]string{}
	var c estargz.Compressor = estargz.NewGzipCompressorWithLevel(1)
	if zstdChunks {
		c = &zstdchunked.Compressor{CompressionLevel: zstd.SpeedFastest, Metadata: meta}
	}
	w := estargz.NewWriterWithCompressor(&buf, c)
	w.ChunkSize, w.MinChunkSize = chunkSize, minChunkSize
	if err := w.AppendTar(bytes.NewReader(tarData)); err != nil {
		t.Fatalf("estargz writer: %v", err)
	}
	tocDigest, err := w.Close()
	if err != nil {
		t.Fatalf("estargz writer: %v", err)
	}
	l := tocLayer{blob: buf.Bytes(), annotations: meta, ordered: true}
	if zstdChunks {
		l.format = manifest.FormatZstdChunked
	} else {
		l.format = manifest.FormatEstargz
		meta[estargz.TOCJSONDigestAnnotation] = tocDigest.String()
	}
	return l
}

// estargzBuild converts a tar with estargz.Build, which adds a prefetch
// landmark and, with prioritized files, moves them first.
func estargzBuild(t testing.TB, tarData []byte, chunkSize int, prioritized []string, zstdChunks bool) tocLayer {
	t.Helper()
	opts := []estargz.Option{estargz.WithChunkSize(chunkSize), estargz.WithCompressionLevel(1)}
	meta := map[string]string{}
	if zstdChunks {
		opts = append(opts, estargz.WithCompression(zstdChunkedCompression{
			&zstdchunked.Compressor{CompressionLevel: zstd.SpeedFastest, Metadata: meta}, &zstdchunked.Decompressor{}}))
	}
	if len(prioritized) > 0 {
		opts = append(opts, estargz.WithPrioritizedFiles(prioritized))
	}
	sb, err := estargz.Build(io.NewSectionReader(bytes.NewReader(tarData), 0, int64(len(tarData))), opts...)
	if err != nil {
		t.Fatalf("estargz.Build: %v", err)
	}
	blob, err := io.ReadAll(sb)
	if err != nil {
		t.Fatal(err)
	}
	if err := sb.Close(); err != nil {
		t.Fatal(err)
	}
	l := tocLayer{blob: blob, annotations: maps.Clone(meta), ordered: len(prioritized) == 0}
	if zstdChunks {
		l.format = manifest.FormatZstdChunked
	} else {
		l.format = manifest.FormatEstargz
		l.annotations[estargz.TOCJSONDigestAnnotation] = sb.TOCDigest().String()
	}
	return l
}

func (l tocLayer) opts() Options {
	o := buildOpts(l.blob, l.format, 0)
	o.Layer.Annotations = l.annotations
	return o
}

// chunkSpans returns the spans holding e's content.
func chunkSpans(ix *Index, e *Entry) []Span {
	if e.Size == 0 {
		return nil
	}
	return ix.Spans[spanAt(ix.Spans, e.Offset) : spanAt(ix.Spans, e.Offset+e.Size-1)+1]
}
