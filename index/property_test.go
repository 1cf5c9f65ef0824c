package index

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"testing"
	"time"

	"github.com/imgfs/imgfs/manifest"
)

// layerVariant is one encoding of a generated tar.
type layerVariant struct {
	name   string
	format manifest.Format
	blob   []byte
}

// variants encodes a tar every way the gzip builder must handle. The slow
// stdlib levels (6, 9) alternate between seeds to keep the test quick.
func variants(rng *rand.Rand, seed int64, tarData []byte) []layerVariant {
	slow := 6 + 3*int(seed%2)
	return []layerVariant{
		{"tar", manifest.FormatTar, tarData},
		{"gzip-0-stored", manifest.FormatGzip, gzipBytes(tarData, 0)},
		{"gzip-1", manifest.FormatGzip, gzipBytes(tarData, 1)},
		{fmt.Sprintf("gzip-%d", slow), manifest.FormatGzip, gzipBytes(tarData, slow)},
		{"gzip-huffman-only", manifest.FormatGzip, gzipBytes(tarData, -2)},
		{"gzip-multi-member", manifest.FormatGzip, multiMember(tarData, rng, 2+rng.Intn(12))},
		{"gzip-many-tiny-members", manifest.FormatGzip, multiMember(tarData, rng, 100)},
		{"gzip-header-fields", manifest.FormatGzip, gzipMemberWithHeader(tarData, 1, rng)},
	}
}

// TestRandomLayers: for random layers in every encoding, entries match
// the tar and random reads (including ones crossing checkpoints) equal a
// full sequential extraction.
func TestRandomLayers(t *testing.T) {
	const spanSize = 64 << 10
	for seed := int64(1); seed <= 4; seed++ {
		rng := rand.New(rand.NewSource(seed))
		tarData, files := randomLayer(rng, 120, 400<<10)
		want := extract(t, tarData)
		for _, v := range variants(rng, seed, tarData) {
			t.Run(v.name, func(t *testing.T) {
				opts := buildOpts(v.blob, v.format, spanSize)
				ix, err := Build(context.Background(), opts)
				if err != nil {
					t.Fatalf("seed %d: Build: %v", seed, err)
				}
				checkEntries(t, ix, files)
				if ix.UncompressedSize() != int64(len(tarData)) {
					t.Fatalf("UncompressedSize %d, tar has %d bytes", ix.UncompressedSize(), len(tarData))
				}
				if v.format == manifest.FormatGzip {
					if !ix.Verified() {
						t.Fatal("gzip index not verified")
					}
					if len(ix.Spans) < len(tarData)/spanSize/2 {
						t.Fatalf("only %d spans for %d bytes with span size %d", len(ix.Spans), len(tarData), spanSize)
					}
				}
				r := ix.NewReader(opts.Blob, newCache(1<<20), ReaderOptions{}) // small: most reads decode
				checkRandomReads(t, rng, ix, r, want, 300)
				checkBoundaryReads(t, ix, r, want)
				checkWholeFiles(t, ix, r, want)
			})
		}
	}
}

// checkEntries compares the index's entries with the generator's headers.
func checkEntries(t *testing.T, ix *Index, files []tarFile) {
	t.Helper()
	checkEntriesWith(t, ix, files, func(t time.Time) time.Time { return t })
}

// checkEntriesWith is checkEntries for formats that keep mtimes as
// mtime(tar mtime).
func checkEntriesWith(t *testing.T, ix *Index, files []tarFile, mtime func(time.Time) time.Time) {
	t.Helper()
	if len(ix.Entries) != len(files) {
		t.Fatalf("%d entries, tar has %d", len(ix.Entries), len(files))
	}
	for i, f := range files {
		e := ix.Entries[i]
		h := f.hdr
		name, _ := CleanPath(h.Name)
		wantType := map[byte]EntryType{'0': TypeReg, '5': TypeDir, '2': TypeSymlink, '1': TypeHardlink, '3': TypeChar, '6': TypeFifo}[h.Typeflag]
		if kind, target, ok := whiteout(name); kind != 0 && ok {
			wantType, name = kind, target
		}
		if e.Name != name || e.Type != wantType {
			t.Fatalf("entry %d: got %q type %d, want %q type %d", i, e.Name, e.Type, name, wantType)
		}
		if e.Mode != uint32(h.Mode) || e.UID != uint32(h.Uid) || e.GID != uint32(h.Gid) || e.Uname != h.Uname || e.Gname != h.Gname {
			t.Fatalf("entry %q: mode/owner %o %d:%d %s:%s, want %o %d:%d %s:%s", e.Name, e.Mode, e.UID, e.GID, e.Uname, e.Gname, h.Mode, h.Uid, h.Gid, h.Uname, h.Gname)
		}
		if !e.ModTime.Equal(mtime(h.ModTime)) {
			t.Fatalf("entry %q: mtime %v, want %v", e.Name, e.ModTime, mtime(h.ModTime))
		}
		if wantType == TypeReg && e.Size != h.Size {
			t.Fatalf("entry %q: size %d, want %d", e.Name, e.Size, h.Size)
		}
		if wantType == TypeSymlink && e.Linkname != h.Linkname {
			t.Fatalf("entry %q: symlink %q, want verbatim %q", e.Name, e.Linkname, h.Linkname)
		}
		if wantType == TypeHardlink && e.Linkname != h.Linkname {
			t.Fatalf("entry %q: hardlink %q, want %q", e.Name, e.Linkname, h.Linkname)
		}
		if wantType == TypeChar && (e.Devmajor != uint32(h.Devmajor) || e.Devminor != uint32(h.Devminor)) {
			t.Fatalf("entry %q: device %d,%d want %d,%d", e.Name, e.Devmajor, e.Devminor, h.Devmajor, h.Devminor)
		}
		for k, v := range h.PAXRecords {
			if got := e.Xattrs[k[len(schilyXattr):]]; got != v {
				t.Fatalf("entry %q: xattr %s = %q, want %q", e.Name, k, got, v)
			}
		}
		if len(e.Xattrs) != len(h.PAXRecords) {
			t.Fatalf("entry %q: xattrs %v, want %v", e.Name, e.Xattrs, h.PAXRecords)
		}
	}
}

func regularEntries(ix *Index) []*Entry {
	var out []*Entry
	for i := range ix.Entries {
		if ix.Entries[i].Type == TypeReg {
			out = append(out, &ix.Entries[i])
		}
	}
	return out
}

// checkRandomReads reads random (entry, offset, length) ranges, including
// ones past the end, and checks io.ReaderAt semantics and bytes.
func checkRandomReads(t *testing.T, rng *rand.Rand, ix *Index, r *Reader, want map[string][]byte, n int) {
	t.Helper()
	regs := regularEntries(ix)
	for range n {
		e := regs[rng.Intn(len(regs))]
		content := want[e.Name]
		off := rng.Int63n(e.Size + 10)
		p := make([]byte, rng.Intn(200<<10))
		checkRead(t, r, e, content, p, off)
	}
}

func checkRead(t *testing.T, r *Reader, e *Entry, content, p []byte, off int64) {
	t.Helper()
	n, err := r.ReadAt(context.Background(), e, p, off)
	wantN := 0
	if off < int64(len(content)) {
		wantN = min(len(p), len(content)-int(off))
	}
	if n != wantN {
		t.Fatalf("ReadAt(%q, %d bytes, off %d) = %d, %v; want %d bytes", e.Name, len(p), off, n, err, wantN)
	}
	atEnd := off >= int64(len(content)) // like bytes.Reader: EOF even for an empty p
	if (wantN < len(p) || atEnd) && !errors.Is(err, io.EOF) || wantN == len(p) && !atEnd && err != nil {
		t.Fatalf("ReadAt(%q, %d bytes, off %d) = %d, %v; wrong error", e.Name, len(p), off, n, err)
	}
	if wantN > 0 && !bytes.Equal(p[:n], content[off:off+int64(n)]) {
		t.Fatalf("ReadAt(%q, %d bytes, off %d): wrong bytes", e.Name, len(p), off)
	}
}

// checkBoundaryReads reads across every span boundary that falls inside a
// file.
func checkBoundaryReads(t *testing.T, ix *Index, r *Reader, want map[string][]byte) {
	t.Helper()
	regs := regularEntries(ix)
	for _, s := range ix.Spans[1:] {
		for _, e := range regs {
			if e.Offset < s.UOff && s.UOff < e.Offset+e.Size {
				rel := s.UOff - e.Offset
				start := max(0, rel-100)
				checkRead(t, r, e, want[e.Name], make([]byte, 200), start)
				checkRead(t, r, e, want[e.Name], make([]byte, 1), rel)
				checkRead(t, r, e, want[e.Name], make([]byte, 1), rel-1)
			}
		}
	}
}

func checkWholeFiles(t *testing.T, ix *Index, r *Reader, want map[string][]byte) {
	t.Helper()
	for _, e := range regularEntries(ix) {
		checkRead(t, r, e, want[e.Name], make([]byte, e.Size), 0)
	}
}
