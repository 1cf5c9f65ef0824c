package index

import "sort"

// SpanKind says how the compressed bytes of a span become its decoded bytes.
// The values are stored in index files: never renumber them, only append.
type SpanKind uint8

const (
	// SpanRaw: the blob bytes are the decoded bytes (uncompressed tar).
	// COff == UOff, nothing is decoded or cached; reads go straight to the blob.
	SpanRaw SpanKind = 1
	// SpanDeflate: resume inflating a gzip stream at a deflate block boundary:
	// Bit bits of the byte at COff already belong to the previous block and
	// Window is the 32 KiB of output preceding UOff. A span may run across
	// gzip member boundaries (trailer + next header) exactly as the stream does.
	SpanDeflate SpanKind = 2
	// SpanGzipMember: a TOC chunk of an eStargz layer. The blob bytes start
	// with a fresh gzip member (more members may follow); decoding discards
	// Skip bytes (the chunk's TOC innerOffset) and keeps the next ULen.
	// Check is CheckDecoded with the TOC's chunkDigest (or CheckNone for
	// TOCs without one).
	SpanGzipMember SpanKind = 3
	// SpanZstdFrame: a TOC chunk of a zstd:chunked layer: the blob bytes are
	// whole zstd frames; Skip and Check as for SpanGzipMember.
	SpanZstdFrame SpanKind = 4
	// SpanLocal: the bytes live in the decompressed copy of a plain zstd
	// layer kept under the cache dir (see LocalPath), at [UOff, UOff+ULen)
	// of that file; COff and CLen are 0. Check is CheckDecoded with the
	// sha256 recorded while the blob digest was being verified.
	SpanLocal SpanKind = 5

	// Later formats append kinds here and add a case to decodeSpan and to
	// Index.validate.
)

func (k SpanKind) String() string {
	switch k {
	case SpanRaw:
		return "raw"
	case SpanDeflate:
		return "deflate"
	case SpanGzipMember:
		return "gzip-member"
	case SpanZstdFrame:
		return "zstd-frame"
	case SpanLocal:
		return "local"
	default:
		return "unknown"
	}
}

// SpanCheck says what a span's Digest covers.
type SpanCheck uint8

const (
	CheckNone       SpanCheck = 0 // nothing to verify (raw tar spans: no digest exists without a full download)
	CheckCompressed SpanCheck = 1 // sha256 of blob[COff : COff+CLen]
	CheckDecoded    SpanCheck = 2 // sha256 of the ULen decoded bytes (TOC chunk digests)
)

// Span is one independently decodable piece of a layer. Spans tile the
// layer's addressable stream [0, UncompressedSize) in order without gaps.
// In the blob they may overlap by one byte (a deflate block boundary in the
// middle of a byte belongs to both neighbours) or leave gaps (gzip headers).
type Span struct {
	UOff  int64 // first byte in the addressable stream
	ULen  int64 // decoded length, > 0
	COff  int64 // first byte to fetch from the blob
	CLen  int64 // bytes to fetch from the blob
	Kind  SpanKind
	Check SpanCheck
	// Bit is, for SpanDeflate, how many low bits of the byte at COff belong
	// to the previous deflate block (0-7).
	Bit uint8
	// Window is, for SpanDeflate, the index of the preceding 32 KiB of output
	// in the index's window table; -1 when there is no history (the start of
	// a gzip member).
	Window int32
	// Skip is how many decoded bytes precede the span's ULen bytes: for TOC
	// chunks (SpanGzipMember, SpanZstdFrame), in their member or frame
	// (chunks of small files may share one: eStargz innerOffset); for
	// SpanDeflate, from the checkpoint, in a piece of a deflate block too
	// large for one span (see splitSpan).
	Skip   int64
	Digest [32]byte // sha256, see Check
}

// end is the first stream offset after the span.
func (s *Span) end() int64 { return s.UOff + s.ULen }

// spanAt returns the index of the span holding stream offset u, or -1.
func spanAt(spans []Span, u int64) int {
	i := sort.Search(len(spans), func(i int) bool { return spans[i].end() > u })
	if i == len(spans) || spans[i].UOff > u {
		return -1
	}
	return i
}
