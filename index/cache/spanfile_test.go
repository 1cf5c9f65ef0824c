package cache

import (
	"bytes"
	"errors"
	"testing"
)

func encodeSpanFile(key string, data []byte, blockSize int) []byte {
	return append(appendSpanHeader(nil, key, data, blockSize), data...)
}

// decodeSpanFile returns the data of raw, a whole span file expected to
// hold key, after checking all of it, as the disk tier's Get does.
func decodeSpanFile(raw []byte, key string) ([]byte, error) {
	h, err := readSpanHeader(bytes.NewReader(raw), int64(len(raw)), key)
	if err != nil {
		return nil, err
	}
	return h.readData(bytesReaderv{raw: raw, chunk: 1000})
}

func TestSpanFileRoundTrip(t *testing.T) {
	b := spanBlockSize
	for _, n := range []int{0, 1, b - 1, b, b + 1, 3*b + b/2} {
		for _, key := range []string{"", "k", "sha256:0123/gzip/4194304+4194304"} {
			data := pattern(n, byte(n))
			raw := encodeSpanFile(key, data, b)
			if int64(len(raw)) != spanFileSize(len(key), int64(n), int64(b)) {
				t.Fatalf("%d bytes: file of %d, spanFileSize says %d", n, len(raw), spanFileSize(len(key), int64(n), int64(b)))
			}
			got, err := decodeSpanFile(raw, key)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("%d bytes under %q: %v", n, key, err)
			}
			if _, err := decodeSpanFile(raw, key+"x"); !errors.Is(err, errWrongKey) {
				t.Fatalf("another key: %v", err)
			}
		}
	}
}

// FuzzDecodeSpanFile feeds arbitrary files to both readers: neither may
// panic, and a file is accepted only if it is exactly what the writer would
// produce for the key asked, with some block size. ReadAt may accept a file
// whose untouched blocks are bad, never one whose header is.
func FuzzDecodeSpanFile(f *testing.F) {
	for _, n := range []int{0, 5, 300} {
		for _, bs := range []int{1, 7, 64, spanBlockSize} {
			f.Add(encodeSpanFile("key", pattern(n, 1), bs), "key", uint16(3), uint16(100))
		}
	}
	good := encodeSpanFile("sha256:ab/gzip/0+4096", pattern(4096, 2), 1000)
	f.Add(good, "sha256:ab/gzip/0+4096", uint16(999), uint16(1002))
	f.Add(good, "sha256:ab/gzip/0+4097", uint16(0), uint16(10))
	f.Add(good[:len(good)-1], "sha256:ab/gzip/0+4096", uint16(0), uint16(10))
	f.Add([]byte("ISP1\x00\x00\x00\x00data"), "k", uint16(0), uint16(4))
	f.Add([]byte("ISP2"), "", uint16(0), uint16(0))
	f.Fuzz(func(t *testing.T, raw []byte, key string, off, n uint16) {
		data, err := decodeSpanFile(raw, key)
		h, herr := readSpanHeader(bytes.NewReader(raw), int64(len(raw)), key)
		if err == nil {
			if herr != nil {
				t.Fatalf("decode accepted, header read refused: %v", herr)
			}
			if want := encodeSpanFile(key, data, int(h.blockSize)); !bytes.Equal(raw, want) {
				t.Fatal("accepted a file the writer would not produce")
			}
		}
		if herr != nil {
			return
		}
		if int64(len(raw)) != h.dataOff+h.dataLen || h.blockSize < 1 || h.blockSize > maxBlockSize {
			t.Fatalf("accepted an inconsistent header %+v for a %d-byte file", h, len(raw))
		}
		p := make([]byte, n)
		var scratch []byte
		got, rerr := h.readAt(bytesReaderv{raw: raw, chunk: int(n)%5000 + 1}, p, int64(off), &scratch)
		if err == nil {
			want := []byte{}
			if int(off) < len(data) {
				want = data[off:min(int(off)+int(n), len(data))]
			}
			if rerr != nil || !bytes.Equal(p[:got], want) {
				t.Fatalf("ReadAt(%d at %d) = %d, %v; want %d bytes", n, off, got, rerr, len(want))
			}
		} else if rerr != nil && !errors.Is(rerr, errBadBlock) {
			t.Fatalf("ReadAt failed with %v, though the header was good", rerr)
		}
	})
}

// TestReadAtChecksBlocksAroundTheRange: a range that starts and ends inside
// blocks reads their other parts beside it and checks them whole, so damage
// just outside the range, in a block it touches, fails the read.
func TestReadAtChecksBlocksAroundTheRange(t *testing.T) {
	const bs = 100
	data := pattern(10*bs+37, 3)
	raw := encodeSpanFile("k", data, bs)
	h, err := readSpanHeader(bytes.NewReader(raw), int64(len(raw)), "k")
	if err != nil {
		t.Fatal(err)
	}
	var scratch []byte
	for _, c := range []struct{ off, n int }{{0, 1}, {5, 90}, {99, 2}, {150, 400}, {1000, 37}, {1030, 100}, {0, len(data)}} {
		for _, chunk := range []int{0, 1, 33} {
			p := make([]byte, c.n)
			got, err := h.readAt(bytesReaderv{raw: raw, chunk: chunk}, p, int64(c.off), &scratch)
			want := data[c.off:min(c.off+c.n, len(data))]
			if err != nil || !bytes.Equal(p[:got], want) {
				t.Fatalf("%d at %d (chunks of %d): %d, %v", c.n, c.off, chunk, got, err)
			}
		}
		// Damage one byte before and one after the range, inside its first
		// and last blocks (when the range leaves room there).
		for _, at := range []int{c.off - 1, c.off + c.n} {
			if at < 0 || at >= len(data) || at/bs != c.off/bs && at/bs != (c.off+c.n-1)/bs {
				continue
			}
			bad := bytes.Clone(raw)
			bad[int(h.dataOff)+at] ^= 1
			if _, err := h.readAt(bytesReaderv{raw: bad}, make([]byte, c.n), int64(c.off), &scratch); !errors.Is(err, errBadBlock) {
				t.Fatalf("%d at %d with byte %d flipped: %v", c.n, c.off, at, err)
			}
		}
	}
	if _, err := h.readAt(bytesReaderv{raw: raw[:len(raw)-1]}, make([]byte, 10), int64(len(data)-5), &scratch); !errors.Is(err, errBadLength) {
		t.Fatalf("file cut short: %v", err)
	}
}
