package index

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"

	"github.com/imgfs/imgfs/manifest"
	"github.com/klauspost/compress/zstd"
)

// zstd:chunked facts (containers/storage pkg/chunked, stargz-snapshotter
// estargz/zstdchunked): the TOC is a zstd-compressed JSON TOC (the eStargz
// schema) stored in a zstd skippable frame; the annotation
// manifest-position says "offset:length:uncompressedLength:type" of the
// compressed TOC (offset past the 8-byte skippable frame header) and
// manifest-checksum is the digest of those compressed bytes. The blob ends
// with a footer in another skippable frame whose last 8 bytes are a magic:
// "GNUlInUx" for the 64-byte footer of containers/storage (which adds the
// tar-split position), "GnUlInUx" for the older 40-byte one; both start
// with the same four little-endian uint64s.
const (
	zstdChunkedTypeCRFS       = 1 // TOC type: the eStargz JSON schema
	zstdSkippableHeader       = 8 // magic and length before a skippable frame's data
	zstdChunkedFooterSize     = 64
	zstdChunkedFooterSizeOld  = 40
	zstdChunkedFooterMagic    = "GNUlInUx"
	zstdChunkedFooterMagicOld = "GnUlInUx"
)

// tocPosition is where a zstd:chunked TOC is.
type tocPosition struct {
	offset, length, uncompressed, kind int64
}

// buildZstdChunked indexes a zstd:chunked layer from its TOC alone: one
// range read when the manifest gives the TOC position (the annotation is
// authoritative), two when the footer must be read first. The compressed
// TOC is checked against the manifest-checksum annotation (see pinTOC);
// every chunk then carries the TOC's chunkDigest, checked on every read.
func buildZstdChunked(ctx context.Context, b *builder) (*Index, error) {
	ann := b.opts.Layer.Annotations
	posKey, sumKey := zstdChunkedKeys(ann)
	var pos tocPosition
	var err error
	if ann[posKey] != "" {
		pos, err = parseTOCPosition(ann[posKey])
	} else {
		b.log.Warn("zstd:chunked layer has no manifest-position annotation; reading the TOC position from the footer")
		pos, err = zstdChunkedFooter(ctx, b.blob)
	}
	if err != nil {
		return nil, err
	}
	switch {
	case pos.kind != zstdChunkedTypeCRFS:
		return nil, fmt.Errorf("zstd:chunked TOC type %d: %w", pos.kind, ErrUnsupported)
	case pos.offset < zstdSkippableHeader || pos.length <= 0 || pos.offset > b.blob.Size()-pos.length:
		return nil, fmt.Errorf("zstd:chunked TOC at %d+%d in a %d-byte blob: %w", pos.offset, pos.length, b.blob.Size(), ErrCorrupt)
	case pos.length > maxTOCCompressed || pos.uncompressed > maxTOCJSON:
		return nil, fmt.Errorf("zstd:chunked TOC of %d bytes (%d uncompressed) is too large: %w", pos.length, pos.uncompressed, ErrUnsupported)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	comp, err := readRange(ctx, b.blob, pos.offset, pos.length, "zstd:chunked TOC")
	if err != nil {
		return nil, err
	}
	dgst, pinned, err := b.pinTOC(sumKey, ann[sumKey], comp)
	if err != nil {
		return nil, err
	}
	jsonTOC, err := unzstdTOC(comp)
	if err != nil {
		return nil, err
	}
	if pos.uncompressed > 0 && int64(len(jsonTOC)) != pos.uncompressed {
		return nil, fmt.Errorf("zstd:chunked TOC decompresses to %d bytes, position says %d: %w", len(jsonTOC), pos.uncompressed, ErrCorrupt)
	}
	layout := tocLayout{kind: SpanZstdFrame, dataEnd: pos.offset - zstdSkippableHeader}
	return b.tocIndex(jsonTOC, layout, dgst, pinned)
}

// zstdChunkedKeys picks the annotations to use: containers/storage's
// current io.github.containers.* ones, or the older io.containers.* ones
// (still written by stargz-snapshotter), keeping the pair together.
func zstdChunkedKeys(ann map[string]string) (posKey, sumKey string) {
	posKey, sumKey = manifest.AnnotationZstdChunkedManifestPos, manifest.AnnotationZstdChunkedManifestSum
	switch {
	case ann[posKey] == "" && ann[manifest.AnnotationZstdChunkedManifestPosOld] != "":
		return manifest.AnnotationZstdChunkedManifestPosOld, manifest.AnnotationZstdChunkedManifestSumOld
	case ann[posKey] == "" && ann[sumKey] == "":
		return posKey, manifest.AnnotationZstdChunkedManifestSumOld
	}
	return posKey, sumKey
}

// parseTOCPosition parses "offset:length:uncompressedLength:type".
func parseTOCPosition(s string) (tocPosition, error) {
	parts := strings.Split(s, ":")
	var v [4]int64
	if len(parts) != len(v) {
		return tocPosition{}, fmt.Errorf("zstd:chunked manifest position %q: want offset:length:uncompressedLength:type: %w", s, ErrCorrupt)
	}
	for i, p := range parts {
		n, err := strconv.ParseInt(p, 10, 64)
		if err != nil || n < 0 {
			return tocPosition{}, fmt.Errorf("zstd:chunked manifest position %q: field %d: %w", s, i+1, ErrCorrupt)
		}
		v[i] = n
	}
	return tocPosition{offset: v[0], length: v[1], uncompressed: v[2], kind: v[3]}, nil
}

// zstdChunkedFooter reads the footer at the end of the blob.
func zstdChunkedFooter(ctx context.Context, blob Blob) (tocPosition, error) {
	size := blob.Size()
	n := min(size, zstdChunkedFooterSize)
	if n < zstdChunkedFooterSizeOld {
		return tocPosition{}, fmt.Errorf("%d-byte blob is too small for a zstd:chunked footer: %w", size, ErrUnsupported)
	}
	tail, err := readRange(ctx, blob, size-n, n, "zstd:chunked footer")
	if err != nil {
		return tocPosition{}, err
	}
	var footer []byte
	switch magic := string(tail[len(tail)-8:]); {
	case magic == zstdChunkedFooterMagic && n == zstdChunkedFooterSize:
		footer = tail
	case magic == zstdChunkedFooterMagicOld:
		footer = tail[len(tail)-zstdChunkedFooterSizeOld:]
	default:
		return tocPosition{}, fmt.Errorf("no zstd:chunked footer magic at the end of the blob (found %q): %w", magic, ErrUnsupported)
	}
	field := func(i int) int64 {
		v := binary.LittleEndian.Uint64(footer[8*i:])
		if v > 1<<62 {
			return -1 // rejected by the caller's bounds checks
		}
		return int64(v)
	}
	return tocPosition{offset: field(0), length: field(1), uncompressed: field(2), kind: field(3)}, nil
}

// unzstdTOC decompresses a zstd:chunked TOC, within maxTOCJSON.
func unzstdTOC(comp []byte) ([]byte, error) {
	zr, err := zstd.NewReader(bytes.NewReader(comp), zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(maxChunkWindow))
	if err != nil {
		return nil, fmt.Errorf("zstd:chunked TOC: %w", err)
	}
	defer zr.Close()
	return readTOCJSON(zr)
}
