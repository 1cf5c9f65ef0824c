package index

import (
	"errors"
	"fmt"
	"os"

	"github.com/imgfs/imgfs/manifest"
	digest "github.com/opencontainers/go-digest"
)

// Errors callers can test with errors.Is.
var (
	// ErrCorrupt: bytes read from the blob do not match the digest recorded
	// when the index was built (after one retry), or an index file is damaged.
	ErrCorrupt = errors.New("corrupt data")
	// ErrUnsupported: a layer format or tar feature the index cannot serve.
	ErrUnsupported = errors.New("unsupported")
)

// maxSpanBytes bounds what one span may fetch or decode, so that no input
// makes a read hold more than this (times the reads at once, which
// DecodeLimit bounds). Real encoders end a deflate block every few hundred
// KiB of output (zlib: at most ~4 MiB), so gzip spans stay below SpanSize
// plus one block; eStargz and zstd:chunked writers cut 4 MiB chunks or
// less. A blob whose spans cannot stay within the bound is refused with a
// clear error rather than served with unbounded memory.
const maxSpanBytes = 16 << 20

// Index is the per-layer index: the tar entries of a layer and the spans
// that map its addressable stream to bytes of the blob.
type Index struct {
	Layer   digest.Digest
	Format  manifest.Format
	Entries []Entry
	// Spans tile [0, UncompressedSize()) in order; see Span.
	Spans []Span
	// SpanSize is the checkpoint spacing the index was built with (gzip).
	SpanSize int64
	// Meta holds format-specific facts that later readers need (a TOC
	// digest, a local file name); stored with the index.
	Meta map[string]string

	windows  [][]byte // deflate-compressed 32 KiB windows, see Span.Window
	usize    int64    // length of the addressable stream
	blobSize int64    // compressed size of the blob the index describes
	verified bool     // every span carries a digest checked while building
	local    *os.File // plain zstd: the decompressed layer SpanLocal spans read from
	how      string   // how Open obtained it (How*), not stored
}

// Close releases the open local copy of a plain zstd layer, if any. Other
// indexes hold nothing; closing is optional (a finalizer closes the file).
func (ix *Index) Close() error {
	if ix.local == nil {
		return nil
	}
	return ix.local.Close()
}

// UncompressedSize is the length of the layer's addressable stream (the
// uncompressed tar for tar, gzip and zstd layers).
func (ix *Index) UncompressedSize() int64 { return ix.usize }

// Verified reports whether every byte served through this index is checked
// against a digest that the manifest pins. It is false for uncompressed tar
// layers: the layer digest covers the whole blob, and checking it would mean
// downloading it, which is what lazy mounting avoids, so their bytes are
// served unverified. It is also false for eStargz and zstd:chunked layers
// whose manifest lacks the TOC digest annotation (chunks are still checked
// against the TOC's digests, but nothing pins the TOC) or whose TOC lacks
// chunk digests.
func (ix *Index) Verified() bool { return ix.verified }

// validate checks the invariants every reader relies on, so that neither a
// hostile blob nor a damaged index file can make a read go out of bounds.
func (ix *Index) validate() error {
	var u int64
	for i := range ix.Spans {
		s := &ix.Spans[i]
		if s.UOff != u || s.ULen <= 0 || s.COff < 0 || s.CLen < 0 || s.COff > ix.blobSize-s.CLen {
			return fmt.Errorf("span %d (u %d+%d, c %d+%d) out of place: %w", i, s.UOff, s.ULen, s.COff, s.CLen, ErrCorrupt)
		}
		switch s.Kind { // a new SpanKind adds its invariants here
		case SpanRaw:
			if err := spanBounds(i, s); err != nil {
				return err
			}
			if s.CLen != s.ULen || s.Check != CheckNone || s.Bit != 0 || s.Skip != 0 {
				return fmt.Errorf("raw span %d: compressed and decoded lengths differ: %w", i, ErrCorrupt)
			}
		case SpanDeflate:
			if err := spanBounds(i, s); err != nil {
				return err
			}
			if s.Bit > 7 || s.Window < -1 || int(s.Window) >= len(ix.windows) || s.CLen == 0 || s.Skip < 0 {
				return fmt.Errorf("deflate span %d: bad checkpoint: %w", i, ErrCorrupt)
			}
		case SpanGzipMember, SpanZstdFrame:
			if err := spanBounds(i, s); err != nil {
				return err
			}
			if s.CLen == 0 || s.Bit != 0 || s.Window != -1 || s.Skip < 0 || s.Skip > maxSpanBytes-s.ULen {
				return fmt.Errorf("%s span %d: bad chunk (skip %d): %w", s.Kind, i, s.Skip, ErrCorrupt)
			}
		case SpanLocal:
			if s.ULen > maxSpanBytes || s.COff != 0 || s.CLen != 0 || s.Check != CheckDecoded || s.Bit != 0 || s.Skip != 0 {
				return fmt.Errorf("local span %d: malformed: %w", i, ErrCorrupt)
			}
		default:
			return fmt.Errorf("span %d: kind %d: %w", i, s.Kind, ErrUnsupported)
		}
		if s.Check > CheckDecoded {
			return fmt.Errorf("span %d: check %d: %w", i, s.Check, ErrCorrupt)
		}
		if ix.verified && s.Check == CheckNone {
			return fmt.Errorf("span %d has no digest in a verified index: %w", i, ErrCorrupt)
		}
		u = s.end()
	}
	if u != ix.usize {
		return fmt.Errorf("spans cover %d bytes, stream has %d: %w", u, ix.usize, ErrCorrupt)
	}
	for i := range ix.Entries {
		e := &ix.Entries[i]
		if e.Type < TypeReg || e.Type > TypeOpaque {
			return fmt.Errorf("entry %d: type %d: %w", i, e.Type, ErrCorrupt)
		}
		if e.Size < 0 || e.Offset < 0 || e.Offset > ix.usize-e.Size {
			return fmt.Errorf("entry %q: content %d+%d outside the %d-byte stream: %w", e.Name, e.Offset, e.Size, ix.usize, ErrCorrupt)
		}
	}
	return nil
}

// spanBounds refuses spans that would make one read fetch or decode too much.
func spanBounds(i int, s *Span) error {
	if s.ULen > maxSpanBytes || s.CLen > maxSpanBytes {
		return fmt.Errorf("span %d (stream offset %d): %d compressed bytes decode to %d between two checkpoints (a deflate block or chunk), more than the %d MiB imgfs decodes at once: %w",
			i, s.UOff, s.CLen, s.ULen, maxSpanBytes>>20, ErrUnsupported)
	}
	return nil
}
