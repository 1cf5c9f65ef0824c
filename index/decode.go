package index

import (
	"bytes"
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// inflatePad is how many bytes past a span's compressed end the inflater may
// look at. It reads up to 25 bits ahead to decode the end-of-block symbol of
// a non-final block; the bits past the boundary never affect the output, so
// fetched buffers end with zeros there instead of the next span's bytes.
const inflatePad = 16

// decodeSpan turns span s's source bytes into its ULen decoded bytes.
// src starts at the span's source offset (see Span.source), holds its
// source length and may be followed by up to inflatePad more (real or
// zero). Verification is the caller's job. Formats with a new SpanKind add
// their case here.
func (ix *Index) decodeSpan(s *Span, src []byte, dec *spanDecoders) ([]byte, error) {
	_, n := s.source()
	if int64(len(src)) < n {
		return nil, fmt.Errorf("span at %d: %d source bytes, want %d: %w", s.UOff, len(src), n, io.ErrUnexpectedEOF)
	}
	switch s.Kind {
	case SpanDeflate:
		return ix.decodeDeflate(s, src)
	case SpanGzipMember:
		return dec.gzipMember(s, src[:n])
	case SpanZstdFrame:
		return dec.zstdFrames(s, src[:n])
	case SpanLocal, SpanRaw:
		return src[:n:n], nil
	default:
		return nil, fmt.Errorf("span kind %s: %w", s.Kind, ErrUnsupported)
	}
}

// decodeDeflate resumes inflating at the span's checkpoint, discards Skip
// bytes (a piece of a block too large for one span, see splitSpan) and
// returns the next ULen. A span can run across the end of a gzip member; it
// continues through the trailer and the next member's header exactly as
// the builder did.
func (ix *Index) decodeDeflate(s *Span, comp []byte) ([]byte, error) {
	var window []byte
	if s.Window >= 0 {
		var err error
		if window, err = unpackWindow(ix.windows[s.Window]); err != nil {
			return nil, err
		}
	}
	r := &deflateSpanReader{br: bytes.NewReader(comp), coff: s.COff}
	// WithPartialBlock makes the inflater hand out each block's output at
	// the block's end; without it, output waits for 32 KiB of history or the
	// final block, and a span ending at a non-final block would need bytes
	// beyond its end.
	r.fr = flate.NewReaderOpts(r.br, flate.WithResumeFrom(flate.InflateCheckpoint{BitOffset: s.Bit, Window: window}), flate.WithPartialBlock())
	if s.Skip > 0 {
		if n, err := io.CopyN(io.Discard, r, s.Skip); err != nil {
			return nil, fmt.Errorf("deflate span at %d: skip %d bytes: got %d: %w", s.COff, s.Skip, n, noEOF(err))
		}
	}
	out := make([]byte, s.ULen)
	if n, err := io.ReadFull(r, out); err != nil {
		return nil, fmt.Errorf("deflate span at %d: inflate after %d of %d bytes: %w", s.COff, n, len(out), noEOF(err))
	}
	return out, nil
}

// deflateSpanReader is the output of a deflate stream resumed at a
// checkpoint, going on through gzip member boundaries.
type deflateSpanReader struct {
	br   *bytes.Reader
	fr   io.ReadCloser
	coff int64
}

func (r *deflateSpanReader) Read(p []byte) (int, error) {
	for {
		n, err := r.fr.Read(p)
		if err != io.EOF {
			return n, err
		}
		if _, _, err := readGzipTrailer(r.br); err != nil {
			return n, fmt.Errorf("deflate span at %d: %w", r.coff, err)
		}
		if _, err := readGzipHeader(r.br); err != nil {
			return n, fmt.Errorf("deflate span at %d: next member: %w", r.coff, noEOF(err))
		}
		r.fr = flate.NewReaderOpts(r.br, flate.WithPartialBlock())
		if n > 0 {
			return n, nil
		}
	}
}

// source is where a span's bytes are read from: the blob range
// [COff, COff+CLen), or for SpanLocal the local copy's [UOff, UOff+ULen).
func (s *Span) source() (off, n int64) {
	if s.Kind == SpanLocal {
		return s.UOff, s.ULen
	}
	return s.COff, s.CLen
}

// maxChunkWindow bounds the zstd window a chunk frame may ask for; real
// encoders use at most 8 MiB below --long modes.
const maxChunkWindow = 128 << 20

// spanDecoders keeps reusable decompressors for TOC chunks: one per
// concurrent decode, recycled through pools.
type spanDecoders struct {
	gzip sync.Pool // *gzip.Reader
	zstd sync.Pool // *zstd.Decoder in synchronous mode (no goroutines to stop)
}

// gzipMember decodes a chunk that starts with a gzip member. Decoding stops
// after the chunk's bytes: the member's CRC is not reached, the chunk digest
// (CheckDecoded) covers the output instead.
func (d *spanDecoders) gzipMember(s *Span, comp []byte) ([]byte, error) {
	br := bytes.NewReader(comp)
	zr, _ := d.gzip.Get().(*gzip.Reader)
	var err error
	if zr == nil {
		zr, err = gzip.NewReader(br)
	} else {
		err = zr.Reset(br)
	}
	if err != nil {
		return nil, fmt.Errorf("gzip member at blob offset %d: %w", s.COff, noEOF(err))
	}
	defer d.gzip.Put(zr)
	zr.Multistream(true) // a chunk's bytes may run into the next member
	return readChunk(s, zr)
}

// zstdFrames decodes a chunk made of zstd frames.
func (d *spanDecoders) zstdFrames(s *Span, comp []byte) ([]byte, error) {
	zr, _ := d.zstd.Get().(*zstd.Decoder)
	if zr == nil {
		var err error
		zr, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true), zstd.WithDecoderMaxWindow(maxChunkWindow))
		if err != nil {
			return nil, fmt.Errorf("zstd decoder: %w", err)
		}
	}
	if err := zr.Reset(bytes.NewReader(comp)); err != nil {
		return nil, fmt.Errorf("zstd frame at blob offset %d: %w", s.COff, err)
	}
	defer func() {
		_ = zr.Reset(nil) // drop the reference to comp before pooling
		d.zstd.Put(zr)
	}()
	return readChunk(s, zr)
}

// readChunk skips s.Skip decoded bytes and returns the next s.ULen.
func readChunk(s *Span, r io.Reader) ([]byte, error) {
	if s.Skip > 0 {
		if n, err := io.CopyN(io.Discard, r, s.Skip); err != nil {
			return nil, fmt.Errorf("%s chunk at blob offset %d: skip %d bytes: got %d: %w", s.Kind, s.COff, s.Skip, n, noEOF(err))
		}
	}
	out := make([]byte, s.ULen)
	if n, err := io.ReadFull(r, out); err != nil {
		return nil, fmt.Errorf("%s chunk at blob offset %d: %d of %d bytes: %w", s.Kind, s.COff, n, s.ULen, noEOF(err))
	}
	return out, nil
}
