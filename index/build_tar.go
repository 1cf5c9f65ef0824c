package index

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// tarWindowSize is how much of an uncompressed tar blob one range read
// fetches while walking headers. Headers of small files sit close together,
// so one window usually holds many; large file data is skipped by seeking.
const tarWindowSize = 1 << 20

// buildTar indexes an uncompressed tar by walking its headers with batched
// range reads; file data is skipped, never fetched.
//
// The resulting index is not Verified: the layer digest covers the whole
// blob, so checking it would need the download this builder avoids, and a
// tar has no finer-grained digests. Bytes of uncompressed layers are served
// as the registry returns them.
func buildTar(ctx context.Context, b *builder) (*Index, error) {
	size := b.blob.Size()
	wr := &windowReader{ctx: ctx, blob: b.blob, size: size, progress: b.progress}
	walker := &tarWalker{log: b.log, pos: func() int64 { return wr.pos }}
	ix := b.newIndex()
	err := walker.walk(ctx, wr, func(e Entry) error {
		if e.Type == TypeReg && e.Offset > size-e.Size {
			return fmt.Errorf("tar entry %q: content %d+%d past the end of the %d-byte blob: %w", e.Name, e.Offset, e.Size, size, io.ErrUnexpectedEOF)
		}
		ix.Entries = append(ix.Entries, e)
		return nil
	})
	if err != nil {
		return nil, err
	}
	ix.usize = size
	ix.verified = false
	ix.Spans = rawSpans(size)
	if b.progress != nil {
		b.progress(size, size)
	}
	return ix, nil
}

// windowReader reads a blob sequentially through large ReadAt windows and
// seeks without fetching, so archive/tar skips file data for free (it seeks
// to the last byte of the data, then reads that one byte, which makes the
// next window start right before the next header).
type windowReader struct {
	ctx      context.Context
	blob     Blob
	size     int64
	pos      int64
	win      []byte
	winOff   int64
	progress func(done, total int64)
}

func (w *windowReader) Read(p []byte) (int, error) {
	if w.pos >= w.size {
		return 0, io.EOF
	}
	if w.pos < w.winOff || w.pos >= w.winOff+int64(len(w.win)) {
		if err := w.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(p, w.win[w.pos-w.winOff:])
	w.pos += int64(n)
	return n, nil
}

func (w *windowReader) fill() error {
	if err := w.ctx.Err(); err != nil {
		return err
	}
	n := min(int64(tarWindowSize), w.size-w.pos)
	if int64(cap(w.win)) < n {
		w.win = make([]byte, n)
	}
	w.win = w.win[:n]
	got, err := w.blob.ReadAt(w.ctx, w.win, w.pos)
	if got < len(w.win) {
		if err == nil || errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		w.win = w.win[:0]
		return fmt.Errorf("read blob at %d: %w", w.pos, err)
	}
	w.winOff = w.pos
	if w.progress != nil {
		w.progress(w.pos+n, w.size)
	}
	return nil
}

func (w *windowReader) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += w.pos
	case io.SeekEnd:
		offset += w.size
	default:
		return 0, fmt.Errorf("seek: bad whence %d", whence)
	}
	if offset < 0 {
		return 0, fmt.Errorf("seek to %d: negative position", offset)
	}
	w.pos = offset // past the end is allowed; the next Read reports EOF
	return offset, nil
}

// rawSpanSize is the unit in which uncompressed layers are fetched and
// cached, the size of a gzip span. Reads go through the span cache and
// readahead like compressed layers do, so a sequential read keeps large
// range requests in flight instead of one small request per kernel read
// (registries answer in milliseconds, so small requests cap throughput);
// a small file still costs one request.
const rawSpanSize = 4 << 20

func rawSpans(size int64) []Span {
	spans := make([]Span, 0, (size+rawSpanSize-1)/rawSpanSize)
	for off := int64(0); off < size; off += rawSpanSize {
		n := min(rawSpanSize, size-off)
		spans = append(spans, Span{UOff: off, ULen: n, COff: off, CLen: n, Kind: SpanRaw, Window: -1})
	}
	return spans
}
