package index

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/imgfs/imgfs/manifest"
)

func tarHeader(name string, size int) tar.Header {
	return tar.Header{Typeflag: tar.TypeReg, Name: name, Size: int64(size), Mode: 0o644, ModTime: time.Unix(1700000000, 0), Format: tar.FormatPAX}
}

func writeTar(t testing.TB, files []tarFile) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for i := range files {
		h := files[i].hdr
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("write %q: %v", h.Name, err)
		}
		if _, err := tw.Write(files[i].content); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// buildBoth indexes data as an uncompressed tar and as gzip; both must
// agree. It returns the tar index and the gzip error.
func buildBoth(t *testing.T, data []byte) (*Index, error) {
	t.Helper()
	ix, err := Build(context.Background(), buildOpts(data, manifest.FormatTar, 0))
	gix, gerr := Build(context.Background(), buildOpts(gzipBytes(data, 1), manifest.FormatGzip, 0))
	if (err == nil) != (gerr == nil) {
		t.Fatalf("tar and gzip builders disagree: %v vs %v", err, gerr)
	}
	if err == nil && len(ix.Entries) != len(gix.Entries) {
		t.Fatalf("tar and gzip builders disagree: %d vs %d entries", len(ix.Entries), len(gix.Entries))
	}
	return ix, err
}

func names(ix *Index) []string {
	var out []string
	for _, e := range ix.Entries {
		out = append(out, fmt.Sprintf("%d:%s", e.Type, e.Name))
	}
	return out
}

func TestWhiteouts(t *testing.T) {
	for in, want := range map[string]string{
		"a/.wh.b":          "8:a/b",
		".wh.top":          "8:top",
		"a/b/.wh..wh..opq": "9:a/b",
		".wh..wh..opq":     "9:",
		"a/.wh.":           "drop",
		"a/.wh..wh.plnk":   "drop",
		"a/.wh..":          "drop",
		"a/b.wh.c":         "none",
	} {
		kind, target, ok := whiteout(in)
		got := fmt.Sprintf("%d:%s", kind, target)
		switch {
		case kind == 0:
			got = "none"
		case !ok:
			got = "drop"
		}
		if got != want {
			t.Errorf("whiteout(%q) = %s, want %s", in, got, want)
		}
	}
}

// A root ".wh..wh..opq" is kept as an opaque marker of the root (the
// merge then hides every lower entry), not dropped as a non-directory root.
func TestRootOpaqueMarkerIsKept(t *testing.T) {
	e := Entry{Type: TypeReg}
	if why := placeEntry(&e, entryIDs{name: "./.wh..wh..opq"}); why != "" || e.Type != TypeOpaque || e.Name != "" {
		t.Fatalf("placeEntry: %q, %+v", why, e)
	}
	e = Entry{Type: TypeReg}
	if why := placeEntry(&e, entryIDs{name: "./"}); why == "" {
		t.Fatal("a regular file named as the root was kept")
	}
}

func TestXattrs(t *testing.T) {
	got := xattrs(map[string]string{
		"SCHILY.xattr.user.a":               "raw\x00value",
		"LIBARCHIVE.xattr.user.a":           base64.RawStdEncoding.EncodeToString([]byte("loses")),
		"LIBARCHIVE.xattr.security.cap%3Dx": base64.StdEncoding.EncodeToString([]byte{1, 2, 3, 0}),
		"LIBARCHIVE.xattr.user.bad":         "!!!",
		"SCHILY.xattr.":                     "no name",
		"mtime":                             "1.5",
	}, quietLogger())
	want := map[string]string{"user.a": "raw\x00value", "security.cap=x": "\x01\x02\x03\x00"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("xattrs = %q, want %q", got, want)
	}
}

// TestHostileNames: escaping paths are dropped, absolute paths made
// relative, self-hardlinks dropped; the rest survive.
func TestHostileNames(t *testing.T) {
	files := []tarFile{
		{hdr: tarHeader("../escape", 3), content: []byte("bad")},
		{hdr: tarHeader("/abs/path", 2), content: []byte("ok")},
		{hdr: tarHeader("a/../../b", 0)},
		{hdr: tar.Header{Typeflag: tar.TypeLink, Name: "self", Linkname: "./self", Format: tar.FormatPAX}},
		{hdr: tar.Header{Typeflag: tar.TypeLink, Name: "out", Linkname: "../../etc/passwd", Format: tar.FormatPAX}},
		{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: "sym", Linkname: "../../etc/passwd", Format: tar.FormatPAX}},
		{hdr: tar.Header{Typeflag: tar.TypeReg, Name: ".", Format: tar.FormatPAX}},
		{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "./", Mode: 0o700, Format: tar.FormatPAX}},
		{hdr: tar.Header{Typeflag: 'V', Name: "volume-label", Format: tar.FormatGNU}},
		{hdr: tar.Header{Typeflag: tar.TypeReg, Name: strings.Repeat("d/", maxPathLen/2+1) + "f", Format: tar.FormatPAX}},
		{hdr: tar.Header{Typeflag: tar.TypeLink, Name: "good-link", Linkname: "/abs/path", Format: tar.FormatPAX}},
	}
	ix, err := buildBoth(t, writeTar(t, files))
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(names(ix), " ")
	if want := "1:abs/path 3:sym 2: 4:good-link"; got != want {
		t.Fatalf("entries %q, want %q", got, want)
	}
	if ix.Entries[3].Linkname != "abs/path" || ix.Entries[1].Linkname != "../../etc/passwd" {
		t.Fatalf("link targets %q %q", ix.Entries[3].Linkname, ix.Entries[1].Linkname)
	}
}

// rawHeader returns a valid 512-byte tar header block for tweaking.
func rawHeader(t *testing.T, h tar.Header) []byte {
	data := writeTar(t, []tarFile{{hdr: h, content: make([]byte, h.Size)}})
	return data[:512]
}

// paxHeader returns a raw PAX extended header ('x') carrying records
// (already in "len key=value\n" form), data padded to whole blocks.
func paxHeader(t *testing.T, records string) []byte {
	h := rawHeader(t, tar.Header{Typeflag: tar.TypeReg, Name: "PaxHeaders/f", Format: tar.FormatUSTAR})
	h[156] = tar.TypeXHeader
	copy(h[124:136], fmt.Sprintf("%011o\x00", len(records)))
	fixChecksum(h)
	data := append(h, records...)
	return append(data, make([]byte, blockPadding(len(records)))...)
}

func blockPadding(n int) int { return -n & 511 }

// paxRecord formats one record with its self-inclusive length.
func paxRecord(key, value string) string {
	body := " " + key + "=" + value + "\n"
	total := len(body)
	for {
		next := len(body) + len(fmt.Sprint(total))
		if next == total {
			return fmt.Sprint(total) + body
		}
		total = next
	}
}

func fixChecksum(block []byte) {
	copy(block[148:156], "        ")
	sum := 0
	for _, c := range block[:512] {
		sum += int(c)
	}
	copy(block[148:156], fmt.Sprintf("%06o\x00 ", sum))
}

func TestHostileTars(t *testing.T) {
	good := writeTar(t, []tarFile{{hdr: tarHeader("f", 5), content: []byte("hello")}})
	negative := rawHeader(t, tar.Header{Typeflag: tar.TypeReg, Name: "neg", Format: tar.FormatGNU})
	copy(negative[124:136], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe}) // base-256 -2
	fixChecksum(negative)
	huge := rawHeader(t, tar.Header{Typeflag: tar.TypeReg, Name: "huge", Format: tar.FormatGNU})
	copy(huge[124:136], []byte{0x80, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	fixChecksum(huge)
	sparse := rawHeader(t, tar.Header{Typeflag: tar.TypeReg, Name: "holes", Format: tar.FormatGNU})
	sparse[156] = 'S'
	fixChecksum(sparse)
	bigPAX := append(paxHeader(t, paxRecord("SCHILY.xattr.user.big", strings.Repeat("x", 1<<20))), good...)

	for name, c := range map[string]struct {
		data []byte
		err  string // substring of the error; "" = must succeed
	}{
		"truncated header":     {good[:300], "unexpected EOF"},
		"truncated data":       {good[:512+2], "EOF"},
		"negative size":        {append(negative, make([]byte, 1024)...), "invalid tar header"},
		"size past the end":    {append(huge, make([]byte, 1024)...), "EOF"},
		"old GNU sparse":       {append(sparse, make([]byte, 2048)...), `"holes" is a GNU sparse file`},
		"PAX over 1 MiB":       {bigPAX, "too long"},
		"garbage":              {bytes.Repeat([]byte("garbage!"), 128), "invalid tar header"},
		"zero block then data": {append(make([]byte, 512), good...), "invalid tar header"},
		"no end marker":        {good[:1024], ""},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := buildBoth(t, c.data)
			switch {
			case c.err == "" && err != nil:
				t.Fatalf("unexpected error %v", err)
			case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
				t.Fatalf("error %v, want one containing %q", err, c.err)
			}
		})
	}
}

// TestPAXSparseIsRejected: PAX GNU sparse 1.0 files are refused by name.
func TestPAXSparseIsRejected(t *testing.T) {
	mapData := "1\n0\n5\n"
	content := append([]byte(mapData), make([]byte, 512-len(mapData))...)
	content = append(content, "hello"...)
	data := paxHeader(t, paxRecord("GNU.sparse.major", "1")+paxRecord("GNU.sparse.minor", "0")+paxRecord("GNU.sparse.name", "holes")+paxRecord("GNU.sparse.realsize", "5"))
	data = append(data, writeTar(t, []tarFile{{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "GNUSparseFile.0/holes", Size: int64(len(content)), Format: tar.FormatUSTAR}, content: content}})...)
	_, err := buildBoth(t, data)
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "holes") {
		t.Fatalf("PAX sparse file: %v", err)
	}
}

// TestDirectoryWithData: archive/tar (like GNU tar) ignores the size of
// header-only types, so data after a directory header is read as headers:
// a clear error, not a misplaced entry.
func TestDirectoryWithData(t *testing.T) {
	dir := rawHeader(t, tar.Header{Typeflag: tar.TypeDir, Name: "d/", Format: tar.FormatUSTAR})
	copy(dir[124:136], fmt.Sprintf("%011o\x00", 600))
	fixChecksum(dir)
	data := append(dir, bytes.Repeat([]byte{'x'}, 1024)...)
	data = append(data, writeTar(t, []tarFile{{hdr: tarHeader("d/f", 2), content: []byte("hi")}})...)
	if _, err := buildBoth(t, data); err == nil || !strings.Contains(err.Error(), "invalid tar header") {
		t.Fatalf("directory with data: %v", err)
	}
}

// TestManyPAXHeaders: a long chain of PAX headers costs time, not memory,
// and only the last applies.
func TestManyPAXHeaders(t *testing.T) {
	var data []byte
	for i := range 2000 {
		data = append(data, paxHeader(t, paxRecord("path", fmt.Sprintf("p%d", i)))...)
	}
	data = append(data, writeTar(t, []tarFile{{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "f", Format: tar.FormatUSTAR}}})...)
	ix, err := buildBoth(t, data)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(names(ix), " "); got != "1:p1999" {
		t.Fatalf("entries %s", got)
	}
}

// TestMetadataDetails: setuid/sticky bits, big ids, nanosecond times,
// device numbers, hardlink cleaning, LIBARCHIVE xattrs through a real tar.
func TestMetadataDetails(t *testing.T) {
	mtime := time.Unix(1712345678, 123456789)
	files := []tarFile{
		{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "./bin/su", Mode: 0o104755, Uid: 4000000000, Gid: 70000, ModTime: mtime, Format: tar.FormatPAX,
			PAXRecords: map[string]string{"LIBARCHIVE.xattr.security.capability": base64.RawStdEncoding.EncodeToString([]byte{1, 0, 0, 2})}}},
		{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "tmp/", Mode: 0o41777, ModTime: mtime, Format: tar.FormatPAX}},
		{hdr: tar.Header{Typeflag: tar.TypeBlock, Name: "dev/sda", Devmajor: 8, Devminor: 1, Mode: 0o660, Format: tar.FormatPAX}},
		{hdr: tar.Header{Typeflag: tar.TypeLink, Name: "bin/su2", Linkname: "/bin//su", Format: tar.FormatPAX}},
	}
	ix, err := buildBoth(t, writeTar(t, files))
	if err != nil {
		t.Fatal(err)
	}
	su, tmp, sda, link := ix.Entries[0], ix.Entries[1], ix.Entries[2], ix.Entries[3]
	if su.Mode != 0o4755 || su.UID != 4000000000 || su.GID != 70000 || !su.ModTime.Equal(mtime) || su.Xattrs["security.capability"] != "\x01\x00\x00\x02" {
		t.Fatalf("su: %+v", su)
	}
	if tmp.Mode != 0o1777 || sda.Type != TypeBlock || sda.Devmajor != 8 || sda.Devminor != 1 || link.Linkname != "bin/su" {
		t.Fatalf("tmp %o, sda %+v, link %q", tmp.Mode, sda, link.Linkname)
	}
}
