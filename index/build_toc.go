package index

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/imgfs/imgfs/manifest"
	digest "github.com/opencontainers/go-digest"
)

// Bounds on a TOC, so that a hostile one cannot exhaust memory: real TOCs
// take a few hundred bytes of JSON per entry and compress ~10x.
const (
	maxTOCCompressed = 256 << 20
	maxTOCJSON       = 1 << 30
)

// readRange reads blob[off:off+n] with one ReadAt.
func readRange(ctx context.Context, blob Blob, off, n int64, what string) ([]byte, error) {
	if off < 0 || n < 0 || off > blob.Size()-n {
		return nil, fmt.Errorf("%s at %d+%d is outside the %d-byte blob: %w", what, off, n, blob.Size(), ErrCorrupt)
	}
	buf := make([]byte, n)
	got, err := blob.ReadAt(ctx, buf, off)
	if got == len(buf) {
		return buf, nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return nil, fmt.Errorf("read %s (blob bytes %d+%d): %w", what, off, n, err)
}

// readTOCJSON reads a decompressed TOC, refusing more than maxTOCJSON bytes.
func readTOCJSON(r io.Reader) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxTOCJSON+1))
	if err != nil {
		return nil, fmt.Errorf("decompress TOC: %w: %w", noEOF(err), ErrCorrupt)
	}
	if len(data) > maxTOCJSON {
		return nil, fmt.Errorf("TOC larger than %d bytes: %w", maxTOCJSON, ErrUnsupported)
	}
	return data, nil
}

// parseTOC decodes TOC JSON (estargz.JTOC: eStargz and zstd:chunked share it).
func parseTOC(data []byte) (*estargz.JTOC, error) {
	toc := new(estargz.JTOC)
	if err := json.Unmarshal(data, toc); err != nil {
		return nil, fmt.Errorf("TOC JSON: %w: %w", err, ErrCorrupt)
	}
	return toc, nil
}

// pinTOC checks data, the bytes the manifest annotation's digest covers,
// against it. A missing annotation is not an error (some registries and
// tools strip annotations): the TOC is then used unpinned, with a warning,
// and the index will not claim to be Verified; a wrong one is ErrCorrupt.
func (b *builder) pinTOC(annotationKey, annotation string, data []byte) (dgst digest.Digest, pinned bool, err error) {
	if annotation == "" {
		b.log.Warn("layer has no TOC digest annotation: its TOC cannot be checked, so reads are verified against an unpinned TOC",
			"annotation", annotationKey)
		return digest.FromBytes(data), false, nil
	}
	want, err := digest.Parse(annotation)
	if err != nil {
		return "", false, fmt.Errorf("annotation %s=%q: %w: %w", annotationKey, annotation, err, ErrCorrupt)
	}
	if got := want.Algorithm().FromBytes(data); got != want {
		return "", false, fmt.Errorf("TOC digest is %s, annotation %s says %s: %w", got, annotationKey, want, ErrCorrupt)
	}
	return want, true, nil
}

// tocPin returns the annotation that pins the TOC of a TOC-format layer
// and its value ("" when absent or not a TOC format).
func tocPin(l manifest.Layer) (key, value string) {
	switch l.Format {
	case manifest.FormatEstargz:
		key = estargz.TOCJSONDigestAnnotation
	case manifest.FormatZstdChunked:
		_, key = zstdChunkedKeys(l.Annotations)
	default:
		return "", ""
	}
	return key, l.Annotations[key]
}

// tocIndex turns a checked TOC into the layer's index.
func (b *builder) tocIndex(jsonTOC []byte, layout tocLayout, tocDigest digest.Digest, pinned bool) (*Index, error) {
	toc, err := parseTOC(jsonTOC)
	if err != nil {
		return nil, err
	}
	content, err := convertTOC(toc, layout, b.log)
	if err != nil {
		return nil, err
	}
	if !content.allDigests {
		b.log.Warn("TOC lacks chunk digests (old stargz?): chunks without one are served unverified")
	}
	ix := b.newIndex()
	ix.SpanSize = 0 // chunks are cut by the layer's writer
	ix.Entries, ix.Spans, ix.usize = content.entries, content.spans, content.usize
	ix.verified = pinned && content.allDigests
	ix.Meta = tocMeta(tocDigest, pinned)
	if layout.kind == SpanGzipMember && !content.noPrefetch && content.prefetchEnd > 0 {
		ix.Meta[metaPrefetchEnd] = strconv.FormatInt(content.prefetchEnd, 10)
	}
	if b.progress != nil {
		b.progress(b.blob.Size(), b.blob.Size())
	}
	return ix, nil
}

// gunzipTOC is estargz's own TOC decompression (gzip member holding a tar
// with stargz.index.json), limited.
func gunzipTOC(comp []byte) ([]byte, error) {
	rc, err := new(estargz.GzipDecompressor).DecompressTOC(bytes.NewReader(comp))
	if err != nil {
		return nil, fmt.Errorf("eStargz TOC: %w: %w", err, ErrCorrupt)
	}
	defer rc.Close()
	return readTOCJSON(rc)
}
