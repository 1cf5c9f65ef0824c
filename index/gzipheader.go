package index

import (
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// gzip member header flags, RFC 1952 section 2.3.1.
const (
	gzipFTEXT    = 1 << 0
	gzipFHCRC    = 1 << 1
	gzipFEXTRA   = 1 << 2
	gzipFNAME    = 1 << 3
	gzipFCOMMENT = 1 << 4
)

var errGzipHeader = errors.New("invalid gzip member header")

// headerReader reads header bytes one at a time and keeps the CRC-32 that
// FHCRC checks (the low 16 bits of the CRC of every byte before it).
type headerReader struct {
	r   io.ByteReader
	crc uint32
	n   int64
}

func (h *headerReader) byte() (byte, error) {
	c, err := h.r.ReadByte()
	if err != nil {
		return 0, err
	}
	one := [1]byte{c}
	h.crc = crc32.Update(h.crc, crc32.IEEETable, one[:])
	h.n++
	return c, nil
}

// uint16 reads a little-endian 16-bit field.
func (h *headerReader) uint16() (uint16, error) {
	lo, err := h.byte()
	if err != nil {
		return 0, err
	}
	hi, err := h.byte()
	if err != nil {
		return 0, err
	}
	return uint16(lo) | uint16(hi)<<8, nil
}

func (h *headerReader) skip(n int) error {
	for range n {
		if _, err := h.byte(); err != nil {
			return err
		}
	}
	return nil
}

// skipZeroTerminated skips a FNAME or FCOMMENT field. Their length is not
// bounded by the format; they cost time, not memory.
func (h *headerReader) skipZeroTerminated() error {
	for {
		c, err := h.byte()
		if err != nil || c == 0 {
			return err
		}
	}
}

// readGzipHeader reads one gzip member header from r, leaving r at the first
// byte of the member's deflate stream, and returns the header's length.
// It returns io.EOF, and consumes nothing, when r is at its end: the clean
// end of a multi-member stream.
func readGzipHeader(r io.ByteReader) (int64, error) {
	h := &headerReader{r: r}
	var fixed [10]byte
	for i := range fixed {
		c, err := h.byte()
		if err != nil {
			if i == 0 && err == io.EOF {
				return 0, io.EOF
			}
			return h.n, fmt.Errorf("%w: %w", errGzipHeader, noEOF(err))
		}
		fixed[i] = c
	}
	if fixed[0] != 0x1f || fixed[1] != 0x8b {
		return h.n, fmt.Errorf("%w: bad magic %#x %#x", errGzipHeader, fixed[0], fixed[1])
	}
	if fixed[2] != 8 {
		return h.n, fmt.Errorf("%w: compression method %d is not deflate", errGzipHeader, fixed[2])
	}
	flags := fixed[3]
	if flags&gzipFEXTRA != 0 {
		n, err := h.uint16()
		if err != nil {
			return h.n, fmt.Errorf("%w: %w", errGzipHeader, noEOF(err))
		}
		if err := h.skip(int(n)); err != nil {
			return h.n, fmt.Errorf("%w: FEXTRA: %w", errGzipHeader, noEOF(err))
		}
	}
	if flags&gzipFNAME != 0 {
		if err := h.skipZeroTerminated(); err != nil {
			return h.n, fmt.Errorf("%w: FNAME: %w", errGzipHeader, noEOF(err))
		}
	}
	if flags&gzipFCOMMENT != 0 {
		if err := h.skipZeroTerminated(); err != nil {
			return h.n, fmt.Errorf("%w: FCOMMENT: %w", errGzipHeader, noEOF(err))
		}
	}
	if flags&gzipFHCRC != 0 {
		want := uint16(h.crc)
		got, err := h.uint16()
		if err != nil {
			return h.n, fmt.Errorf("%w: %w", errGzipHeader, noEOF(err))
		}
		if got != want {
			return h.n, fmt.Errorf("%w: header CRC %#04x, computed %#04x", errGzipHeader, got, want)
		}
	}
	return h.n, nil
}

// readGzipTrailer reads the CRC-32 and ISIZE (length mod 2^32) that end a
// gzip member.
func readGzipTrailer(r io.ByteReader) (crc, isize uint32, err error) {
	var t [8]byte
	for i := range t {
		if t[i], err = r.ReadByte(); err != nil {
			return 0, 0, fmt.Errorf("gzip trailer: %w", noEOF(err))
		}
	}
	crc = uint32(t[0]) | uint32(t[1])<<8 | uint32(t[2])<<16 | uint32(t[3])<<24
	isize = uint32(t[4]) | uint32(t[5])<<8 | uint32(t[6])<<16 | uint32(t[7])<<24
	return crc, isize, nil
}

func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
