package index

import (
	"bytes"
	"fmt"
	"io"

	"github.com/klauspost/compress/flate"
)

// inflatePad is how many bytes past a span's compressed end the inflater may
// look at. It reads up to 25 bits ahead to decode the end-of-block symbol of
// a non-final block; the bits past the boundary never affect the output, so
// fetched buffers end with zeros there instead of the next span's bytes.
const inflatePad = 16

// decodeSpan turns span s's compressed bytes into its ULen decoded bytes.
// comp starts at s.COff, holds s.CLen bytes and may be followed by up to
// inflatePad more (real or zero). Verification is the caller's job.
// Formats with a new SpanKind add their case here.
func (ix *Index) decodeSpan(s *Span, comp []byte) ([]byte, error) {
	switch s.Kind {
	case SpanDeflate:
		return ix.decodeDeflate(s, comp)
	default:
		return nil, fmt.Errorf("span kind %s: %w", s.Kind, ErrUnsupported)
	}
}

// decodeDeflate resumes inflating at the span's checkpoint. A span can run
// across the end of a gzip member; it continues through the trailer and the
// next member's header exactly as the builder did.
func (ix *Index) decodeDeflate(s *Span, comp []byte) ([]byte, error) {
	var window []byte
	if s.Window >= 0 {
		var err error
		if window, err = unpackWindow(ix.windows[s.Window]); err != nil {
			return nil, err
		}
	}
	br := bytes.NewReader(comp)
	// WithPartialBlock makes the inflater hand out each block's output at
	// the block's end; without it, output waits for 32 KiB of history or the
	// final block, and a span ending at a non-final block would need bytes
	// beyond its end.
	fr := flate.NewReaderOpts(br, flate.WithResumeFrom(flate.InflateCheckpoint{BitOffset: s.Bit, Window: window}), flate.WithPartialBlock())
	out := make([]byte, s.ULen)
	n := 0
	for n < len(out) {
		m, err := fr.Read(out[n:])
		n += m
		switch {
		case n == len(out):
		case err == io.EOF:
			if _, _, err := readGzipTrailer(br); err != nil {
				return nil, fmt.Errorf("deflate span at %d: %w", s.COff, err)
			}
			if _, err := readGzipHeader(br); err != nil {
				return nil, fmt.Errorf("deflate span at %d: next member: %w", s.COff, noEOF(err))
			}
			fr = flate.NewReaderOpts(br, flate.WithPartialBlock())
		case err != nil:
			return nil, fmt.Errorf("deflate span at %d: inflate after %d of %d bytes: %w", s.COff, n, len(out), noEOF(err))
		}
	}
	return out, nil
}
