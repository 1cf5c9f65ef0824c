package index

import (
	"context"
	"errors"
	"fmt"

	"github.com/containerd/stargz-snapshotter/estargz"
)

// buildEstargz indexes an eStargz layer from its footer and TOC alone: two
// range reads (the footer, then the TOC), none of the file data.
//
// The footer is parsed and the TOC decompressed by the estargz library
// (GzipDecompressor and LegacyGzipDecompressor: eStargz and old stargz
// footers). estargz.Open is not used: its Reader keeps the TOC private and
// exposes only a tree keyed by name, which loses what the index must keep
// from the tar (entry order, duplicate names, hardlink names, whiteouts),
// and it would extend the last chunk to the end of the blob, over the TOC.
// chunkEnds and convertTOC follow its rules (NextOffset, ChunkSize).
//
// The TOC JSON is checked against the manifest annotation
// containerd.io/snapshot/stargz/toc.digest (see pinTOC); every chunk then
// carries the TOC's chunkDigest, checked on every read. The layer digest
// itself is not checked: that would need the whole blob.
func buildEstargz(ctx context.Context, b *builder) (*Index, error) {
	size := b.blob.Size()
	tocOff, footerSize, err := estargzFooter(ctx, b.blob)
	if err != nil {
		return nil, err
	}
	tocLen := size - footerSize - tocOff
	switch {
	case tocOff <= 0 || tocLen <= 0:
		return nil, fmt.Errorf("eStargz footer puts the TOC at %d in a %d-byte blob: %w", tocOff, size, ErrCorrupt)
	case tocLen > maxTOCCompressed:
		return nil, fmt.Errorf("eStargz TOC of %d bytes, more than %d: %w", tocLen, maxTOCCompressed, ErrUnsupported)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	comp, err := readRange(ctx, b.blob, tocOff, tocLen, "eStargz TOC")
	if err != nil {
		return nil, err
	}
	jsonTOC, err := gunzipTOC(comp)
	if err != nil {
		return nil, err
	}
	key, value := tocPin(b.opts.Layer)
	dgst, pinned, err := b.pinTOC(key, value, jsonTOC)
	if err != nil {
		return nil, err
	}
	return b.tocIndex(jsonTOC, tocLayout{kind: SpanGzipMember, dataEnd: tocOff}, dgst, pinned)
}

// estargzFooter reads the last estargz.FooterSize bytes of the blob and
// returns the TOC offset and the footer's size, as estargz.OpenFooter does
// but keeping read errors apart from "not an eStargz blob".
func estargzFooter(ctx context.Context, blob Blob) (tocOff, footerSize int64, err error) {
	size := blob.Size()
	if size < estargz.FooterSize {
		return 0, 0, fmt.Errorf("%d-byte blob is too small for an eStargz footer: %w", size, ErrUnsupported)
	}
	footer, err := readRange(ctx, blob, size-estargz.FooterSize, estargz.FooterSize, "eStargz footer")
	if err != nil {
		return 0, 0, err
	}
	var errs []error
	for _, d := range []estargz.Decompressor{new(estargz.GzipDecompressor), new(estargz.LegacyGzipDecompressor)} {
		fs := d.FooterSize()
		_, off, _, err := d.ParseFooter(footer[int64(len(footer))-fs:])
		if err == nil {
			return off, fs, nil
		}
		errs = append(errs, err)
	}
	return 0, 0, fmt.Errorf("no eStargz footer at the end of the blob (%w): %w", errors.Join(errs...), ErrUnsupported)
}
