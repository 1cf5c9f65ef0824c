package index

import (
	"archive/tar"
	"bytes"
	"compress/flate"
	"compress/gzip"
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"math/rand"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imgfs/imgfs/index/cache"
	"github.com/imgfs/imgfs/manifest"
	digest "github.com/opencontainers/go-digest"
)

// memBlob is an in-memory Blob that counts what is asked of it and can be
// told to damage what it returns.
type memBlob struct {
	data    []byte
	reads   atomic.Int64
	bytes   atomic.Int64
	mu      sync.Mutex
	corrupt func(call int64, p []byte, off int64) // may modify p
}

func newMemBlob(data []byte) *memBlob { return &memBlob{data: data} }

func (b *memBlob) Size() int64 { return int64(len(b.data)) }

func (b *memBlob) ReadAt(_ context.Context, p []byte, off int64) (int, error) {
	call := b.reads.Add(1)
	b.bytes.Add(int64(len(p)))
	if off < 0 {
		return 0, fmt.Errorf("negative offset")
	}
	if off >= int64(len(b.data)) {
		return 0, io.EOF
	}
	n := copy(p, b.data[off:])
	b.mu.Lock()
	corrupt := b.corrupt
	b.mu.Unlock()
	if corrupt != nil {
		corrupt(call, p[:n], off)
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (b *memBlob) resetCounts() { b.reads.Store(0); b.bytes.Store(0) }

// streamBlob also implements Streamer.
type streamBlob struct {
	*memBlob
	opened atomic.Int64
}

func (b *streamBlob) Open(ctx context.Context) (io.ReadCloser, error) {
	b.opened.Add(1)
	return io.NopCloser(bytes.NewReader(b.data)), nil
}

// defaultTestCache is the memory bound of the span cache tests use when
// they do not care.
const defaultTestCache = 64 << 20

// newCache returns a memory-only span cache of maxBytes.
func newCache(maxBytes int64) SpanCache {
	c, err := cache.New(cache.Options{MemoryBytes: maxBytes, Logger: quietLogger()})
	if err != nil {
		panic(err) // a memory-only cache cannot fail
	}
	return c
}

func sha(data []byte) digest.Digest { return digest.FromBytes(data) }

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func buildOpts(data []byte, format manifest.Format, spanSize int64) Options {
	return Options{
		Layer:    manifest.Layer{Digest: sha(data), Size: int64(len(data)), Format: format},
		Blob:     newMemBlob(data),
		SpanSize: spanSize,
		Logger:   quietLogger(),
	}
}

// tarFile is one entry a generated layer should contain, for checks.
type tarFile struct {
	hdr     tar.Header
	content []byte
}

// randomLayer writes a random but realistic tar: directories, files of
// every size class (empty to many spans), compressible and random data,
// symlinks, hardlinks, long and UTF-8 names, xattrs, whiteouts, setuid
// modes, nanosecond mtimes.
func randomLayer(rng *rand.Rand, nfiles int, maxBig int) ([]byte, []tarFile) {
	var files []tarFile
	var regNames []string
	dirs := []string{"etc", "usr/lib", "usr/share/doc", "var/tmp", "ünïcødé/文件夹"}
	mtime := func() time.Time { return time.Unix(1600000000+rng.Int63n(1e8), rng.Int63n(1e9)) }
	for _, d := range []string{"etc", "usr", "usr/lib", "usr/share", "usr/share/doc", "var", "var/tmp", "ünïcødé", "ünïcødé/文件夹"} {
		files = append(files, tarFile{hdr: tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755, ModTime: mtime(), Format: tar.FormatPAX}})
	}
	for i := 0; i < nfiles; i++ {
		dir := dirs[rng.Intn(len(dirs))]
		name := fmt.Sprintf("%s/f%d", dir, i)
		if rng.Intn(10) == 0 {
			name = dir + "/" + strings.Repeat("long-name-", 10+rng.Intn(30)) + fmt.Sprint(i)
		}
		hdr := tar.Header{Name: name, Mode: 0o644, Uid: rng.Intn(70000), Gid: rng.Intn(70000), Uname: "user", Gname: "group", ModTime: mtime()}
		if rng.Intn(8) == 0 {
			hdr.Mode |= 0o4000 | 0o2000 | 0o1000
		}
		if rng.Intn(6) == 0 {
			hdr.PAXRecords = map[string]string{"SCHILY.xattr.user.k" + fmt.Sprint(i%3): "v\x00" + fmt.Sprint(i)}
		}
		var content []byte
		switch k := rng.Intn(20); {
		case k < 8: // small
			hdr.Typeflag = tar.TypeReg
			content = randomContent(rng, rng.Intn(3000))
		case k < 10: // empty
			hdr.Typeflag = tar.TypeReg
		case k < 12: // block-sized edge
			hdr.Typeflag = tar.TypeReg
			content = randomContent(rng, 512*(1+rng.Intn(3))+rng.Intn(3)-1)
		case k < 14: // big, spanning spans
			hdr.Typeflag = tar.TypeReg
			content = randomContent(rng, rng.Intn(maxBig+1))
		case k < 16:
			hdr.Typeflag = tar.TypeSymlink
			hdr.Linkname = "../" + fmt.Sprint(rng.Intn(100)) + "/./target"
		case k < 17 && len(regNames) > 0:
			hdr.Typeflag = tar.TypeLink
			hdr.Linkname = regNames[rng.Intn(len(regNames))]
		case k < 18:
			hdr.Typeflag = tar.TypeReg
			hdr.Name = dir + "/.wh.gone" + fmt.Sprint(i)
		case k < 19:
			hdr.Typeflag = tar.TypeChar
			hdr.Devmajor, hdr.Devminor = int64(rng.Intn(300)), int64(rng.Intn(300))
		default:
			hdr.Typeflag = tar.TypeFifo
		}
		hdr.Size = int64(len(content))
		hdr.Format = tar.FormatPAX // keeps nanosecond mtimes
		if rng.Intn(5) == 0 && hdr.PAXRecords == nil {
			hdr.Format = tar.FormatGNU // long names become GNU long-name entries
			hdr.ModTime = hdr.ModTime.Truncate(time.Second)
		}
		if hdr.Typeflag == tar.TypeReg && !strings.Contains(hdr.Name, ".wh.") {
			regNames = append(regNames, hdr.Name)
		}
		files = append(files, tarFile{hdr: hdr, content: content})
	}
	files = append(files, tarFile{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "var/tmp/.wh..wh..opq", Mode: 0o644, ModTime: mtime(), Format: tar.FormatPAX}})
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for i := range files {
		h := files[i].hdr
		if err := tw.WriteHeader(&h); err != nil {
			panic(err)
		}
		if _, err := tw.Write(files[i].content); err != nil {
			panic(err)
		}
	}
	if err := tw.Close(); err != nil {
		panic(err)
	}
	return buf.Bytes(), files
}

var words = strings.Fields(`func return if else for range package import type struct interface
the of and to in is that it was for on are as with his they at be this from have or by one had not
0x00 0xff 1024 4096 /usr/lib/x86_64-linux-gnu libc.so.6 ELF GLIBC_2.34 error: warning: main()`)

// randomContent is text-like (compressible) or random bytes, or a mix.
func randomContent(rng *rand.Rand, n int) []byte {
	out := make([]byte, 0, n)
	switch rng.Intn(3) {
	case 0:
		for len(out) < n {
			out = append(out, words[rng.Intn(len(words))]...)
			out = append(out, " \n\t"[rng.Intn(3)])
		}
	case 1:
		out = out[:n]
		rng.Read(out)
	default:
		for len(out) < n {
			if rng.Intn(2) == 0 {
				chunk := make([]byte, 1+rng.Intn(5000))
				rng.Read(chunk)
				out = append(out, chunk...)
			} else {
				for k := rng.Intn(500); k > 0; k-- {
					out = append(out, words[rng.Intn(len(words))]...)
					out = append(out, ' ')
				}
			}
		}
	}
	return out[:n]
}

// extract reads a tar sequentially: the reference the index must agree with.
func extract(t testing.TB, tarData []byte) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(tarData))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("reference extraction: %v", err)
		}
		if hdr.Typeflag == tar.TypeReg {
			data, err := io.ReadAll(tr)
			if err != nil {
				t.Fatalf("reference extraction: %v", err)
			}
			name, _ := CleanPath(hdr.Name)
			out[name] = data
		}
	}
}

func gzipBytes(data []byte, level int) []byte {
	var buf bytes.Buffer
	w, err := gzip.NewWriterLevel(&buf, level)
	if err != nil {
		panic(err)
	}
	w.Write(data)
	w.Close()
	return buf.Bytes()
}

// gzipMemberWithHeader writes one member with every optional header field.
func gzipMemberWithHeader(data []byte, level int, rng *rand.Rand) []byte {
	var hdr bytes.Buffer
	hdr.Write([]byte{0x1f, 0x8b, 8, gzipFEXTRA | gzipFNAME | gzipFCOMMENT | gzipFHCRC | gzipFTEXT, 1, 2, 3, 4, 0, 3})
	extra := make([]byte, rng.Intn(300))
	rng.Read(extra)
	hdr.Write([]byte{byte(len(extra)), byte(len(extra) >> 8)})
	hdr.Write(extra)
	hdr.WriteString("layer.tar\x00")
	hdr.WriteString(strings.Repeat("comment ", rng.Intn(50)) + "\x00")
	c := crc32.ChecksumIEEE(hdr.Bytes())
	hdr.Write([]byte{byte(c), byte(c >> 8)})
	fw, _ := flate.NewWriter(&hdr, level)
	fw.Write(data)
	fw.Close()
	hdr.Write(binary.LittleEndian.AppendUint32(nil, crc32.ChecksumIEEE(data)))
	hdr.Write(binary.LittleEndian.AppendUint32(nil, uint32(len(data))))
	return hdr.Bytes()
}

// multiMember cuts data at random points and compresses each piece as its
// own member, some with all optional header fields.
func multiMember(data []byte, rng *rand.Rand, pieces int) []byte {
	cuts := []int{0, len(data)}
	for i := 1; i < pieces; i++ {
		cuts = append(cuts, rng.Intn(len(data)+1))
	}
	slices.Sort(cuts)
	var out []byte
	for i := 0; i+1 < len(cuts); i++ {
		piece := data[cuts[i]:cuts[i+1]]
		level := []int{0, 1, 6, 9, -2}[rng.Intn(5)]
		if rng.Intn(2) == 0 {
			out = append(out, gzipMemberWithHeader(piece, level, rng)...)
		} else {
			out = append(out, gzipBytes(piece, level)...)
		}
	}
	return out
}
