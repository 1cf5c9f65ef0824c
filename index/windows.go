package index

import (
	"bytes"
	"fmt"
	"io"

	"github.com/klauspost/compress/flate"
)

// maxWindow is the deflate history a checkpoint needs.
const maxWindow = 32 << 10

// windowPacker stores checkpoint windows deflate-compressed: a window is
// 32 KiB per span, compressing it keeps the index near 0.2-0.8% of the
// uncompressed size at the default span size.
type windowPacker struct {
	windows [][]byte
	bytes   int64 // the sum of their lengths
	buf     bytes.Buffer
	w       *flate.Writer
}

func newWindowPacker() *windowPacker { return &windowPacker{} }

// add compresses window (which it does not retain) and returns its index.
func (p *windowPacker) add(window []byte) int32 {
	p.buf.Reset()
	if p.w == nil {
		p.w, _ = flate.NewWriter(&p.buf, flate.BestSpeed) // BestSpeed is a valid level: no error
	} else {
		p.w.Reset(&p.buf)
	}
	// Writes to a bytes.Buffer cannot fail.
	_, _ = p.w.Write(window)
	_ = p.w.Close()
	p.windows = append(p.windows, bytes.Clone(p.buf.Bytes()))
	p.bytes += int64(p.buf.Len())
	return int32(len(p.windows) - 1)
}

// dropLast forgets window i if it is the last one added: a checkpoint that
// turned out not to need it.
func (p *windowPacker) dropLast(i int32) {
	if int(i) == len(p.windows)-1 {
		p.bytes -= int64(len(p.windows[i]))
		p.windows = p.windows[:i]
	}
}

// unpackWindow inflates a stored window.
func unpackWindow(packed []byte) ([]byte, error) {
	r := flate.NewReader(bytes.NewReader(packed))
	defer r.Close()
	w, err := io.ReadAll(io.LimitReader(r, maxWindow+1))
	if err != nil {
		return nil, fmt.Errorf("inflate checkpoint window: %w", err)
	}
	if len(w) > maxWindow {
		return nil, fmt.Errorf("checkpoint window larger than %d bytes: %w", maxWindow, ErrCorrupt)
	}
	return w, nil
}
