package index

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/imgfs/imgfs/manifest"
	digest "github.com/opencontainers/go-digest"
)

// Index file layout (all integers varints unless noted):
//
//	"IMGFSIDX" | version uint32 LE | payload | sha256 of everything before
//
// payload: layer digest, format, flags, span size, stream size, blob size,
// meta (count, key/value pairs), string table (count, strings: user and
// group names, xattr names), entries (count, total name bytes, each: shared name prefix with
// the previous entry + suffix, type, mode, uid, gid, uname and gname table
// indexes, mtime seconds and nanoseconds, then by type: size and offset
// delta (regular), link name (links), device numbers (devices); then xattr
// count and (name index, value) pairs), spans (count, each: kind, check,
// bit, decoded length, compressed offset and length, window+1, skip, digest
// if checked), windows (count, bytes). Strings are a length and bytes.
//
// Version 2 added Span.Skip (TOC formats). Version 3 describes
// uncompressed layers in raw spans of rawSpanSize (earlier versions used one
// raw span for the whole layer) and eStargz prefetch landmarks.
//
// Bump indexVersion whenever the payload changes meaning; older or newer
// files are then rebuilt rather than misread.
const (
	indexMagic   = "IMGFSIDX"
	indexVersion = 3
	headerLen    = len(indexMagic) + 4
)

const flagVerified = 1

// encodeIndex serializes ix.
func encodeIndex(ix *Index) []byte {
	e := &encoder{buf: make([]byte, 0, 64+len(ix.Entries)*48+len(ix.Spans)*48)}
	e.buf = append(e.buf, indexMagic...)
	e.buf = binary.LittleEndian.AppendUint32(e.buf, indexVersion)

	e.str(ix.Layer.String())
	e.str(string(ix.Format))
	var flags uint64
	if ix.verified {
		flags |= flagVerified
	}
	e.uvarint(flags)
	e.uvarint(uint64(ix.SpanSize))
	e.uvarint(uint64(ix.usize))
	e.uvarint(uint64(ix.blobSize))

	e.uvarint(uint64(len(ix.Meta)))
	for _, k := range slices.Sorted(maps.Keys(ix.Meta)) {
		e.str(k)
		e.str(ix.Meta[k])
	}

	table, index := stringTable(ix.Entries)
	e.uvarint(uint64(len(table)))
	for _, s := range table {
		e.str(s)
	}

	e.uvarint(uint64(len(ix.Entries)))
	nameBytes := 0
	for i := range ix.Entries {
		nameBytes += len(ix.Entries[i].Name)
	}
	e.uvarint(uint64(nameBytes)) // lets the decoder size the name arena once
	prev, prevOff := "", int64(0)
	for i := range ix.Entries {
		en := &ix.Entries[i]
		shared := commonPrefix(prev, en.Name)
		e.uvarint(uint64(shared))
		e.str(en.Name[shared:])
		prev = en.Name
		e.buf = append(e.buf, byte(en.Type))
		e.uvarint(uint64(en.Mode))
		e.uvarint(uint64(en.UID))
		e.uvarint(uint64(en.GID))
		e.uvarint(uint64(index[en.Uname]))
		e.uvarint(uint64(index[en.Gname]))
		e.varint(en.ModTime.Unix())
		e.uvarint(uint64(en.ModTime.Nanosecond()))
		switch en.Type {
		case TypeReg:
			e.uvarint(uint64(en.Size))
			e.varint(en.Offset - prevOff)
			prevOff = en.Offset
		case TypeSymlink, TypeHardlink:
			e.str(en.Linkname)
		case TypeChar, TypeBlock:
			e.uvarint(uint64(en.Devmajor))
			e.uvarint(uint64(en.Devminor))
		}
		e.uvarint(uint64(len(en.Xattrs)))
		for _, k := range slices.Sorted(maps.Keys(en.Xattrs)) {
			e.uvarint(uint64(index[k]))
			e.str(en.Xattrs[k])
		}
	}

	e.uvarint(uint64(len(ix.Spans)))
	for i := range ix.Spans {
		s := &ix.Spans[i]
		e.buf = append(e.buf, byte(s.Kind), byte(s.Check), s.Bit)
		e.uvarint(uint64(s.ULen))
		e.uvarint(uint64(s.COff))
		e.uvarint(uint64(s.CLen))
		e.uvarint(uint64(s.Window + 1))
		e.uvarint(uint64(s.Skip))
		if s.Check != CheckNone {
			e.buf = append(e.buf, s.Digest[:]...)
		}
	}

	e.uvarint(uint64(len(ix.windows)))
	for _, w := range ix.windows {
		e.bytes(w)
	}

	sum := sha256.Sum256(e.buf)
	return append(e.buf, sum[:]...)
}

// stringTable collects the user, group and xattr names, which repeat.
func stringTable(entries []Entry) ([]string, map[string]int) {
	index := map[string]int{"": 0}
	table := []string{""}
	add := func(s string) {
		if _, ok := index[s]; !ok {
			index[s] = len(table)
			table = append(table, s)
		}
	}
	for i := range entries {
		add(entries[i].Uname)
		add(entries[i].Gname)
		for k := range entries[i].Xattrs {
			add(k)
		}
	}
	return table, index
}

func commonPrefix(a, b string) int {
	n := min(len(a), len(b))
	for i := range n {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}

type encoder struct{ buf []byte }

func (e *encoder) uvarint(v uint64) { e.buf = binary.AppendUvarint(e.buf, v) }
func (e *encoder) varint(v int64)   { e.buf = binary.AppendVarint(e.buf, v) }
func (e *encoder) str(s string)     { e.uvarint(uint64(len(s))); e.buf = append(e.buf, s...) }
func (e *encoder) bytes(b []byte)   { e.uvarint(uint64(len(b))); e.buf = append(e.buf, b...) }

// decodeIndex parses an index file. Every length and count is checked
// against the bytes present, so a damaged or hostile file yields an error,
// not a panic or a huge allocation. It mirrors encodeIndex: header, meta,
// string table, entries, spans, windows; then the invariants.
func decodeIndex(data []byte) (*Index, error) {
	body, err := checkIndexFile(data)
	if err != nil {
		return nil, err
	}
	d := &decoder{buf: body, pos: headerLen}
	ix := &Index{}
	d.header(ix)
	ix.Meta = d.meta()
	table := d.stringTable()
	ix.Entries = d.entries(table)
	ix.Spans = d.spans()
	ix.windows = d.windows()
	if d.err == nil && d.pos != len(d.buf) {
		d.fail("trailing bytes")
	}
	if d.err != nil {
		return nil, fmt.Errorf("index file: %w", d.err)
	}
	if err := ix.Layer.Validate(); err != nil {
		return nil, fmt.Errorf("index file: layer digest: %w: %w", err, ErrCorrupt)
	}
	if err := ix.validate(); err != nil {
		return nil, fmt.Errorf("index file: %w", err)
	}
	for i := range ix.Entries {
		e := &ix.Entries[i]
		if !isCleanName(e.Name) || e.Type == TypeHardlink && !isCleanName(e.Linkname) {
			return nil, fmt.Errorf("index file: entry %q is not a clean relative path: %w", e.Name, ErrCorrupt)
		}
	}
	return ix, nil
}

// checkIndexFile checks the magic, version and checksum, and returns the
// file without its checksum.
func checkIndexFile(data []byte) ([]byte, error) {
	if len(data) < headerLen+sha256.Size || string(data[:len(indexMagic)]) != indexMagic {
		return nil, fmt.Errorf("not an imgfs index file: %w", ErrCorrupt)
	}
	if v := binary.LittleEndian.Uint32(data[len(indexMagic):]); v != indexVersion {
		return nil, fmt.Errorf("index file version %d, this imgfs reads version %d: %w", v, indexVersion, ErrUnsupported)
	}
	body, sum := data[:len(data)-sha256.Size], data[len(data)-sha256.Size:]
	if got := sha256.Sum256(body); !bytes.Equal(got[:], sum) {
		return nil, fmt.Errorf("index file checksum mismatch: %w", ErrCorrupt)
	}
	return body, nil
}

func (d *decoder) header(ix *Index) {
	ix.Layer = digest.Digest(d.str())
	ix.Format = manifest.Format(d.str())
	flags := d.uvarint()
	ix.verified = flags&flagVerified != 0
	ix.SpanSize = d.int64()
	ix.usize = d.int64()
	ix.blobSize = d.int64()
}

func (d *decoder) meta() map[string]string {
	n := d.count(2)
	if n == 0 {
		return nil
	}
	m := make(map[string]string, n)
	for range n {
		k := d.str()
		m[k] = d.str()
	}
	return m
}

func (d *decoder) stringTable() []string {
	table := make([]string, d.count(1))
	for i := range table {
		table[i] = d.str()
	}
	return table
}

// tableStr reads an index into the string table.
func (d *decoder) tableStr(table []string) string {
	i := d.uvarint()
	if i >= uint64(len(table)) {
		d.fail("string index out of range")
		return ""
	}
	return table[i]
}

func (d *decoder) entries(table []string) []Entry {
	n := d.count(10)
	if n == 0 {
		d.uvarint() // the (zero) name bytes total
		return nil
	}
	entries := make([]Entry, n)
	// Names are rebuilt into one arena and sliced from one string: one
	// allocation for all of them. The stated total is only a capacity hint,
	// bounded so a hostile value cannot allocate much.
	arena := make([]byte, 0, min(d.uvarint(), uint64(n)*maxPathLen, 1<<30))
	bounds := make([]int, n+1)
	prevStart, prevOff := 0, int64(0)
	for i := range entries {
		if d.err != nil {
			break
		}
		shared := d.uvarint()
		suffix := d.raw()
		start := len(arena)
		if shared > uint64(start-prevStart) {
			d.fail("name prefix longer than the previous name")
			break
		}
		arena = append(arena, arena[prevStart:prevStart+int(shared)]...)
		arena = append(arena, suffix...)
		bounds[i+1] = len(arena)
		prevStart = start
		prevOff = d.entry(&entries[i], table, prevOff)
	}
	if d.err != nil {
		return nil
	}
	names := string(arena)
	for i := range entries {
		entries[i].Name = names[bounds[i]:bounds[i+1]]
	}
	return entries
}

// entry reads one entry's fields after its name; prevOff is the content
// offset of the previous regular file (offsets are stored as deltas) and
// the updated one is returned.
func (d *decoder) entry(en *Entry, table []string, prevOff int64) int64 {
	en.Type = EntryType(d.byte())
	en.Mode = d.uint32()
	en.UID = d.uint32()
	en.GID = d.uint32()
	en.Uname = d.tableStr(table)
	en.Gname = d.tableStr(table)
	sec := d.varint()
	nsec := d.uvarint()
	if nsec >= 1e9 {
		d.fail("bad nanoseconds")
	}
	en.ModTime = time.Unix(sec, int64(nsec))
	switch en.Type {
	case TypeReg:
		en.Size = d.int64()
		en.Offset = prevOff + d.varint()
		prevOff = en.Offset
	case TypeSymlink, TypeHardlink:
		en.Linkname = d.str()
	case TypeChar, TypeBlock:
		en.Devmajor = d.uint32()
		en.Devminor = d.uint32()
	}
	if n := d.count(2); n > 0 {
		en.Xattrs = make(map[string]string, n)
		for range n {
			k := d.tableStr(table)
			en.Xattrs[k] = d.str()
		}
	}
	return prevOff
}

func (d *decoder) spans() []Span {
	n := d.count(8)
	if n == 0 {
		return nil
	}
	spans := make([]Span, n)
	var u int64
	for i := range spans {
		if d.err != nil {
			break
		}
		s := &spans[i]
		s.Kind = SpanKind(d.byte())
		s.Check = SpanCheck(d.byte())
		s.Bit = d.byte()
		s.UOff = u
		s.ULen = d.int64()
		s.COff = d.int64()
		s.CLen = d.int64()
		w := d.uvarint()
		if w > 1<<31-1 {
			d.fail("window index out of range")
		}
		s.Window = int32(w) - 1
		s.Skip = d.int64()
		if s.Check != CheckNone {
			copy(s.Digest[:], d.next(sha256.Size))
		}
		u += s.ULen
		if u < 0 {
			d.fail("span lengths overflow")
		}
	}
	return spans
}

func (d *decoder) windows() [][]byte {
	n := d.count(1)
	if n == 0 {
		return nil
	}
	windows := make([][]byte, n)
	for i := range windows {
		windows[i] = bytes.Clone(d.raw())
	}
	return windows
}

// decoder reads the payload; the first error sticks and later reads
// return zero values.
type decoder struct {
	buf []byte
	pos int
	err error
}

func (d *decoder) fail(why string) {
	if d.err == nil {
		d.err = fmt.Errorf("%s at byte %d: %w", why, d.pos, ErrCorrupt)
	}
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.buf[d.pos:])
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.pos += n
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.buf[d.pos:])
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.pos += n
	return v
}

func (d *decoder) int64() int64 {
	v := d.uvarint()
	if v > 1<<63-1 {
		d.fail("integer out of range")
		return 0
	}
	return int64(v)
}

func (d *decoder) uint32() uint32 {
	v := d.uvarint()
	if v > 1<<32-1 {
		d.fail("integer out of range")
		return 0
	}
	return uint32(v)
}

func (d *decoder) byte() byte {
	b := d.next(1)
	if b == nil {
		return 0
	}
	return b[0]
}

// next returns the next n bytes (aliasing the buffer), or nil at an error.
func (d *decoder) next(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > len(d.buf)-d.pos {
		d.fail("truncated")
		return nil
	}
	b := d.buf[d.pos : d.pos+n]
	d.pos += n
	return b
}

func (d *decoder) raw() []byte {
	n := d.uvarint()
	if n > uint64(len(d.buf)-d.pos) {
		d.fail("length past the end")
		return nil
	}
	return d.next(int(n))
}

func (d *decoder) str() string { return string(d.raw()) }

// count reads an element count and checks it against the bytes left, each
// element taking at least minBytes, so a hostile count cannot make the
// caller allocate more than the file's size.
func (d *decoder) count(minBytes int) int {
	n := d.uvarint()
	if n > uint64((len(d.buf)-d.pos)/minBytes) {
		d.fail("count larger than the data")
		return 0
	}
	return int(n)
}
