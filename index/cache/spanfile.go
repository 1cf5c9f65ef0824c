package cache

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// The span file format; see the package documentation for the layout.
const (
	spanMagic      = "ISP"
	spanVersion    = '2'
	fixedHeaderLen = 22
	// spanBlockSize is the unit of verification: a ReadAt of 128 KiB from a
	// 4 MiB span reads and checks two or three blocks, not the whole span,
	// while the CRC table stays at 256 bytes for that span.
	spanBlockSize = 64 << 10
	// maxBlockSize bounds what a file may claim, so that a damaged header
	// cannot make a small read allocate and check a huge block.
	maxBlockSize = 16 << 20
	maxKeyLen    = 1<<16 - 1
	// headerReadAhead is read with the fixed header so that the CRC table of
	// a span up to 16 MiB comes in the same pread.
	headerReadAhead = 1024
)

// formatError is why a file is not the span asked for. It is a string type
// so that the reasons can be constants.
type formatError string

func (e formatError) Error() string { return string(e) }

const (
	errNotSpanFile formatError = "not a span file"
	errOldFormat   formatError = "span file of an older format"
	errBadLength   formatError = "span file length does not match its header"
	errBadHeader   formatError = "span file header damaged"
	errWrongKey    formatError = "span file holds another key"
	errBadBlock    formatError = "span file block checksum mismatch"
)

// castagnoli is the shared CRC-32C table: MakeTable returns the one that
// selects the SSE4.2/ARMv8 instructions where the CPU has them.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func crc32c(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

func blockCount(dataLen, blockSize int64) int64 {
	n := dataLen / blockSize
	if dataLen%blockSize != 0 {
		n++
	}
	return n
}

// spanFileSize is the size of the file holding dataLen bytes under a key of
// keyLen bytes.
func spanFileSize(keyLen int, dataLen, blockSize int64) int64 {
	return fixedHeaderLen + int64(keyLen) + 4*blockCount(dataLen, blockSize) + dataLen
}

// appendSpanHeader appends the header of the file holding data under key;
// the data follows it. The caller keeps len(key) <= maxKeyLen and blockSize
// within [1, maxBlockSize].
func appendSpanHeader(dst []byte, key string, data []byte, blockSize int) []byte {
	start := len(dst)
	dst = append(dst, spanMagic...)
	dst = append(dst, spanVersion)
	dst = binary.LittleEndian.AppendUint32(dst, 0) // header CRC, set below
	dst = binary.LittleEndian.AppendUint32(dst, uint32(blockSize))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(len(data)))
	dst = binary.LittleEndian.AppendUint16(dst, uint16(len(key)))
	dst = append(dst, key...)
	for b := 0; b < len(data); b += blockSize {
		dst = binary.LittleEndian.AppendUint32(dst, crc32c(data[b:min(b+blockSize, len(data))]))
	}
	binary.LittleEndian.PutUint32(dst[start+4:], crc32c(dst[start+8:]))
	return dst
}

// spanHeader is a parsed, verified header: the key matched and the lengths
// agree with the file's size.
type spanHeader struct {
	blockSize int64
	dataLen   int64
	dataOff   int64
	sums      []byte // 4 bytes per block
}

// spanHeaderLen checks the fixed fields at the start of a file of fileSize
// bytes expected to hold key, and returns the length of the whole header.
// prefix holds the first bytes of the file, at least fixedHeaderLen of them
// unless the file is shorter.
func spanHeaderLen(prefix []byte, key string, fileSize int64) (int64, error) {
	if len(prefix) < len(spanMagic)+1 || string(prefix[:len(spanMagic)]) != spanMagic {
		return 0, errNotSpanFile
	}
	switch v := prefix[len(spanMagic)]; {
	case v == spanVersion:
	case v >= '1' && v < spanVersion:
		return 0, fmt.Errorf("%w (version %c)", errOldFormat, v)
	default:
		return 0, fmt.Errorf("%w: unknown version %q", errNotSpanFile, v)
	}
	if len(prefix) < fixedHeaderLen {
		return 0, fmt.Errorf("%w: %d bytes, shorter than a header", errBadLength, fileSize)
	}
	blockSize := int64(binary.LittleEndian.Uint32(prefix[8:]))
	dataLen := binary.LittleEndian.Uint64(prefix[12:])
	keyLen := int(binary.LittleEndian.Uint16(prefix[20:]))
	if blockSize < 1 || blockSize > maxBlockSize {
		return 0, fmt.Errorf("%w: block size %d", errBadHeader, blockSize)
	}
	if keyLen != len(key) {
		return 0, fmt.Errorf("%w: key of %d bytes, want %d", errWrongKey, keyLen, len(key))
	}
	// Compare before computing, so that a huge claimed length cannot overflow.
	if dataLen > uint64(fileSize) {
		return 0, fmt.Errorf("%w: %d bytes of data in a %d-byte file", errBadLength, dataLen, fileSize)
	}
	headerLen := fixedHeaderLen + int64(keyLen) + 4*blockCount(int64(dataLen), blockSize)
	if headerLen+int64(dataLen) != fileSize {
		return 0, fmt.Errorf("%w: header says %d bytes, file has %d", errBadLength, headerLen+int64(dataLen), fileSize)
	}
	return headerLen, nil
}

// parseSpanHeader verifies the header hdr, at least spanHeaderLen bytes, of
// a file of fileSize bytes expected to hold key.
func parseSpanHeader(hdr []byte, key string, fileSize int64) (spanHeader, error) {
	headerLen, err := spanHeaderLen(hdr, key, fileSize)
	if err != nil {
		return spanHeader{}, err
	}
	if int64(len(hdr)) < headerLen {
		return spanHeader{}, fmt.Errorf("%w: header cut short", errBadLength)
	}
	hdr = hdr[:headerLen]
	// The checksum first: a damaged key should read as damage, while an
	// intact header naming another key is a misplaced file.
	if crc32c(hdr[8:]) != binary.LittleEndian.Uint32(hdr[4:]) {
		return spanHeader{}, fmt.Errorf("%w: checksum mismatch", errBadHeader)
	}
	keyEnd := fixedHeaderLen + len(key)
	if string(hdr[fixedHeaderLen:keyEnd]) != key {
		return spanHeader{}, fmt.Errorf("%w: %q", errWrongKey, hdr[fixedHeaderLen:keyEnd])
	}
	return spanHeader{
		blockSize: int64(binary.LittleEndian.Uint32(hdr[8:])),
		dataLen:   int64(binary.LittleEndian.Uint64(hdr[12:])),
		dataOff:   headerLen,
		sums:      hdr[keyEnd:],
	}, nil
}

// verify checks blocks first, first+1, ... laid out contiguously across
// pieces, which together must end on a block boundary or at the end of the
// data. A block may straddle pieces: a read lands in the caller's buffer
// and only the parts of its first and last blocks outside that buffer in
// scratch space, yet every block is checked whole.
func (h *spanHeader) verify(first int64, pieces ...[]byte) error {
	b := first
	left := h.blockLen(b)
	var sum uint32
	for _, piece := range pieces {
		for len(piece) > 0 {
			n := min(int64(len(piece)), left)
			sum = crc32.Update(sum, castagnoli, piece[:n])
			piece = piece[n:]
			if left -= n; left > 0 {
				continue
			}
			if sum != binary.LittleEndian.Uint32(h.sums[4*b:]) {
				return fmt.Errorf("%w: block %d", errBadBlock, b)
			}
			b++
			left, sum = h.blockLen(b), 0
		}
	}
	return nil
}

// blockLen is the length of block b: blockSize, or less for the last one.
func (h *spanHeader) blockLen(b int64) int64 {
	return min(h.blockSize, h.dataLen-b*h.blockSize)
}

// readSpanHeader reads and verifies the header of r, a span file of size
// bytes expected to hold key.
func readSpanHeader(r io.ReaderAt, size int64, key string) (spanHeader, error) {
	buf := make([]byte, min(size, int64(fixedHeaderLen+len(key)+headerReadAhead)))
	if err := readFull(r, buf, 0); err != nil {
		return spanHeader{}, err
	}
	headerLen, err := spanHeaderLen(buf, key, size)
	if err != nil {
		return spanHeader{}, err
	}
	if have := int64(len(buf)); headerLen > have {
		buf = append(buf, make([]byte, headerLen-have)...)
		if err := readFull(r, buf[have:], have); err != nil {
			return spanHeader{}, err
		}
	}
	return parseSpanHeader(buf, key, size)
}

// readAt reads data bytes [off, off+len(p)), clamped to the end of the
// data, straight into p, with the parts of the first and last blocks that
// lie outside the range read into *scratch (grown as needed) in the same
// preadv, and checks every block it touched. On an error p holds bytes that
// must not be used.
func (h *spanHeader) readAt(r vectorReaderAt, p []byte, off int64, scratch *[]byte) (int, error) {
	if off < 0 || off >= h.dataLen || len(p) == 0 {
		return 0, nil
	}
	end := off + min(int64(len(p)), h.dataLen-off)
	first := off / h.blockSize
	lo := first * h.blockSize
	hi := min(blockCount(end, h.blockSize)*h.blockSize, h.dataLen)
	headLen, tailLen := off-lo, hi-end
	if int64(cap(*scratch)) < headLen+tailLen {
		*scratch = make([]byte, headLen+tailLen)
	}
	head, tail := (*scratch)[:headLen], (*scratch)[headLen:headLen+tailLen]
	body := p[:end-off]
	if err := readFullv(r, [][]byte{head, body, tail}, h.dataOff+lo); err != nil {
		return 0, err
	}
	if err := h.verify(first, head, body, tail); err != nil {
		return 0, err
	}
	return len(body), nil
}

// readData reads and checks all of the data.
func (h *spanHeader) readData(r vectorReaderAt) ([]byte, error) {
	data := make([]byte, h.dataLen)
	if err := readFullv(r, [][]byte{data}, h.dataOff); err != nil {
		return nil, err
	}
	if err := h.verify(0, data); err != nil {
		return nil, err
	}
	return data, nil
}

// readFull fills p from r at off. A file shorter than its size said (cut
// under our feet) is a length error, not an I/O one.
func readFull(r io.ReaderAt, p []byte, off int64) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: file ends at %d", errBadLength, off+int64(n))
	}
	return fmt.Errorf("read at %d: %w", off, err)
}

// readFullv fills bufs, in order, from r at off, as readFull does p.
func readFullv(r vectorReaderAt, bufs [][]byte, off int64) error {
	want := 0
	for _, b := range bufs {
		want += len(b)
	}
	for done := 0; done < want; {
		n, err := r.ReadvAt(bufs, off+int64(done))
		done += n
		switch {
		case done == want:
			return nil
		case err == nil && n == 0, errors.Is(err, io.EOF):
			return fmt.Errorf("%w: file ends at %d", errBadLength, off+int64(done))
		case err != nil:
			return fmt.Errorf("read at %d: %w", off+int64(done), err)
		}
		bufs = skipBytes(bufs, n) // a short read: rare, but allowed
	}
	return nil
}

// skipBytes drops the first n bytes of bufs.
func skipBytes(bufs [][]byte, n int) [][]byte {
	for len(bufs) > 0 && n >= len(bufs[0]) {
		n -= len(bufs[0])
		bufs = bufs[1:]
	}
	if len(bufs) > 0 {
		bufs = append([][]byte{bufs[0][n:]}, bufs[1:]...)
	}
	return bufs
}
