package integration

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc64"
	"io"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
	digest "github.com/opencontainers/go-digest"
)

// zstd:chunked annotations written by containers/storage (pkg/chunked).
const (
	ZstdChunkedManifestChecksumAnnotation = "io.github.containers.zstd-chunked.manifest-checksum"
	ZstdChunkedManifestPositionAnnotation = "io.github.containers.zstd-chunked.manifest-position"
	ZstdChunkedTarSplitChecksumAnnotation = "io.github.containers.zstd-chunked.tarsplit-checksum"
	ZstdChunkedTarSplitPositionAnnotation = "io.github.containers.zstd-chunked.tarsplit-position"
)

// zstdChunkedFooterMagic ends the footer ("GNUlInUx"); manifest type 1 is
// the CRFS-style TOC.
var zstdChunkedFooterMagic = []byte("GNUlInUx")

const (
	zstdSkippableFrameMagic = 0x184D2A50
	zstdChunkedManifestCRFS = 1
	zstdChunkedFooterSize   = 64
)

// zstdChunkedEntry is one TOC entry (containers/storage minimal.FileMetadata).
type zstdChunkedEntry struct {
	Type        string            `json:"type"`
	Name        string            `json:"name"`
	Linkname    string            `json:"linkName,omitempty"`
	Mode        int64             `json:"mode,omitempty"`
	Size        int64             `json:"size,omitempty"`
	UID         int               `json:"uid,omitempty"`
	GID         int               `json:"gid,omitempty"`
	ModTime     *time.Time        `json:"modtime,omitempty"`
	Devmajor    int64             `json:"devMajor,omitempty"`
	Devminor    int64             `json:"devMinor,omitempty"`
	Xattrs      map[string]string `json:"xattrs,omitempty"` // values base64
	Digest      string            `json:"digest,omitempty"`
	Offset      int64             `json:"offset,omitempty"`
	EndOffset   int64             `json:"endOffset,omitempty"`
	ChunkSize   int64             `json:"chunkSize,omitempty"`
	ChunkOffset int64             `json:"chunkOffset,omitempty"`
	ChunkDigest string            `json:"chunkDigest,omitempty"`
}

type zstdChunkedTOC struct {
	Version        int                `json:"version"`
	Entries        []zstdChunkedEntry `json:"entries"`
	TarSplitDigest digest.Digest      `json:"tarSplitDigest,omitempty"`
}

// ZstdChunkedEncoder returns a LayerEncoder writing zstd:chunked as
// containers/storage (podman push --compression-format zstd:chunked) does:
// tar headers in zstd frames, each regular file's content in frames of its
// own split every chunkSize bytes (0: 1 MiB), so that the blob decompresses
// to the exact input tar; then, in zstd skippable frames, the zstd-compressed
// JSON TOC (offsets and digests of every file and chunk), the compressed
// tar-split stream, and the 64-byte footer; the manifest-position and
// checksum annotations point at the TOC. Chunks are cut at fixed sizes
// instead of a rolling checksum: readers must not care.
func ZstdChunkedEncoder(chunkSize int) LayerEncoder {
	if chunkSize <= 0 {
		chunkSize = 1 << 20
	}
	return func(tarball []byte) (EncodedLayer, error) {
		return zstdChunkedEncode(tarball, int64(chunkSize))
	}
}

func zstdChunkedEncode(tarball []byte, chunkSize int64) (EncodedLayer, error) {
	// One frame per header run and per chunk: many small frames, so a
	// single-threaded encoder with a small window is much faster.
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(1<<20), zstd.WithLowerEncoderMem(true))
	if err != nil {
		return EncodedLayer{}, err
	}
	defer enc.Close()
	var blob, scratch []byte
	frame := func(data []byte) int64 { // returns the frame's start offset
		start := int64(len(blob))
		if len(data) > 0 {
			// EncodeAll grows dst to the exact size it needs: appending to
			// the blob through it would copy the blob for every frame.
			scratch = enc.EncodeAll(data, scratch[:0])
			blob = append(blob, scratch...)
		}
		return start
	}

	splitW := &tarSplitWriter{}
	var entries []zstdChunkedEntry
	counter := &countingReader{r: bytes.NewReader(tarball)}
	tr := tar.NewReader(counter)
	// framed: tar bytes already in a frame; split: already in tar-split.
	var framed, split int64
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return EncodedLayer{}, fmt.Errorf("zstd:chunked: read tar: %w", err)
		}
		dataStart := counter.n
		splitW.segment(tarball[split:dataStart])
		split = dataStart
		e, err := zstdChunkedHeaderEntry(hdr)
		if err != nil {
			return EncodedLayer{}, err
		}
		if hdr.Typeflag != tar.TypeReg {
			// Headers of entries without content accumulate into one frame.
			entries = append(entries, e)
			continue
		}
		frame(tarball[framed:dataStart])
		content := tarball[dataStart : dataStart+hdr.Size]
		splitW.file(hdr.Name, content)
		split = dataStart + hdr.Size
		e.Digest = digest.FromBytes(content).String()
		e.Offset = int64(len(blob))
		var chunks []zstdChunkedEntry
		for off := int64(0); off < hdr.Size; off += chunkSize {
			part := content[off:min(off+chunkSize, hdr.Size)]
			chunks = append(chunks, zstdChunkedEntry{
				Type: "chunk", Name: hdr.Name, ChunkOffset: off, ChunkSize: int64(len(part)),
				ChunkDigest: digest.FromBytes(part).String(), Offset: frame(part),
			})
		}
		e.EndOffset = int64(len(blob))
		if len(chunks) > 1 {
			e.ChunkSize, e.ChunkDigest, e.Offset = chunks[0].ChunkSize, chunks[0].ChunkDigest, chunks[0].Offset
			entries = append(entries, e)
			entries = append(entries, chunks[1:]...)
		} else {
			entries = append(entries, e)
		}
		framed = dataStart + hdr.Size
	}
	// The last padding and the end-of-archive blocks.
	frame(tarball[framed:])
	splitW.segment(tarball[split:])

	splitJSON := splitW.buf.Bytes()
	splitCompressed := enc.EncodeAll(splitJSON, nil)
	toc, err := json.Marshal(zstdChunkedTOC{Version: 1, Entries: entries, TarSplitDigest: digest.FromBytes(splitCompressed)})
	if err != nil {
		return EncodedLayer{}, fmt.Errorf("zstd:chunked: TOC: %w", err)
	}
	tocCompressed := enc.EncodeAll(toc, nil)

	tocOffset := int64(len(blob)) + 8
	blob = appendSkippableFrame(blob, tocCompressed)
	splitOffset := int64(len(blob)) + 8
	blob = appendSkippableFrame(blob, splitCompressed)
	footer := make([]byte, zstdChunkedFooterSize)
	for i, v := range []int64{tocOffset, int64(len(tocCompressed)), int64(len(toc)), zstdChunkedManifestCRFS,
		splitOffset, int64(len(splitCompressed)), int64(len(splitJSON))} {
		binary.LittleEndian.PutUint64(footer[8*i:], uint64(v))
	}
	copy(footer[56:], zstdChunkedFooterMagic)
	blob = appendSkippableFrame(blob, footer)

	if err := checkZstdDecodesTo(blob, tarball); err != nil {
		return EncodedLayer{}, err
	}
	return EncodedLayer{
		Blob: blob,
		Annotations: map[string]string{
			ZstdChunkedManifestChecksumAnnotation: digest.FromBytes(tocCompressed).String(),
			ZstdChunkedManifestPositionAnnotation: fmt.Sprintf("%d:%d:%d:%d", tocOffset, len(tocCompressed), len(toc), zstdChunkedManifestCRFS),
			ZstdChunkedTarSplitChecksumAnnotation: digest.FromBytes(splitCompressed).String(),
			ZstdChunkedTarSplitPositionAnnotation: fmt.Sprintf("%d:%d:%d", splitOffset, len(splitCompressed), len(splitJSON)),
		},
	}, nil
}

func zstdChunkedHeaderEntry(hdr *tar.Header) (zstdChunkedEntry, error) {
	types := map[byte]string{
		tar.TypeReg: "reg", tar.TypeDir: "dir", tar.TypeSymlink: "symlink", tar.TypeLink: "hardlink",
		tar.TypeChar: "char", tar.TypeBlock: "block", tar.TypeFifo: "fifo",
	}
	typ, ok := types[hdr.Typeflag]
	if !ok {
		return zstdChunkedEntry{}, fmt.Errorf("zstd:chunked: %s: tar type %q not supported", hdr.Name, hdr.Typeflag)
	}
	mtime := hdr.ModTime
	e := zstdChunkedEntry{
		Type: typ, Name: hdr.Name, Linkname: hdr.Linkname, Mode: hdr.Mode, Size: hdr.Size,
		UID: hdr.Uid, GID: hdr.Gid, ModTime: &mtime, Devmajor: hdr.Devmajor, Devminor: hdr.Devminor,
	}
	if typ != "reg" {
		e.Size = 0
	}
	for k, v := range hdr.PAXRecords {
		if name, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
			if e.Xattrs == nil {
				e.Xattrs = map[string]string{}
			}
			e.Xattrs[name] = base64.StdEncoding.EncodeToString([]byte(v))
		}
	}
	return e, nil
}

func appendSkippableFrame(dst, data []byte) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, zstdSkippableFrameMagic)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(data)))
	return append(dst, data...)
}

// checkZstdDecodesTo proves the blob is a zstd stream of the tar, as a
// client that ignores the TOC reads it.
func checkZstdDecodesTo(blob, want []byte) error {
	// Streamed: DecodeAll of thousands of frames copies its output per frame.
	dec, err := zstd.NewReader(bytes.NewReader(blob))
	if err != nil {
		return err
	}
	defer dec.Close()
	h := sha256.New()
	if _, err := io.Copy(h, dec); err != nil {
		return fmt.Errorf("zstd:chunked: decode own blob: %w", err)
	}
	if got := sha256.Sum256(want); !bytes.Equal(h.Sum(nil), got[:]) {
		return errors.New("zstd:chunked: blob does not decode to the input tar")
	}
	return nil
}

// tarSplitWriter writes the tar-split JSON stream (vbatts/tar-split
// storage.JSONPacker): raw segments and file entries with a CRC-64 (ISO) of
// their content, so that a client can rebuild the exact tar.
type tarSplitWriter struct {
	buf bytes.Buffer
	pos int
}

func (w *tarSplitWriter) segment(raw []byte) {
	if len(raw) == 0 {
		return
	}
	w.entry(map[string]any{"type": 2, "payload": raw})
}

func (w *tarSplitWriter) file(name string, content []byte) {
	sum := crc64.New(crc64.MakeTable(crc64.ISO))
	sum.Write(content)
	w.entry(map[string]any{"type": 1, "name": name, "size": len(content), "payload": sum.Sum(nil)})
}

func (w *tarSplitWriter) entry(e map[string]any) {
	e["position"] = w.pos
	w.pos++
	line, _ := json.Marshal(e) // []byte payloads marshal as base64
	w.buf.Write(line)
	w.buf.WriteByte('\n')
}

// countingReader counts the bytes read through it: archive/tar reads headers
// block by block, so after Next the count is the offset of the entry's data.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
