package index

import (
	"encoding/hex"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/containerd/stargz-snapshotter/estargz"
	digest "github.com/opencontainers/go-digest"
)

// maxStreamSize bounds the addressable stream of a TOC layer (the sum of
// its file sizes), so that hostile sizes cannot overflow offsets.
const maxStreamSize = 1 << 50

// tocLayout says where a TOC format keeps its chunks.
type tocLayout struct {
	kind SpanKind // SpanGzipMember (eStargz) or SpanZstdFrame (zstd:chunked)
	// dataEnd is the blob offset where chunk data ends: the start of the
	// TOC. The last chunk's compressed bytes run up to it.
	dataEnd int64
}

// tocContent is what a TOC turns into: entries whose content is addressed
// in a virtual stream made of every kept file's chunks, concatenated in TOC
// order, and one span per chunk.
type tocContent struct {
	entries []Entry
	spans   []Span
	usize   int64
	// allDigests: every span carries a chunk digest (CheckDecoded).
	allDigests bool
	// prefetchEnd is the stream offset where the first .prefetch.landmark
	// stands (-1: none): eStargz writers put prioritized files before it.
	// noPrefetch: a .no.prefetch.landmark says there is nothing to prefetch.
	prefetchEnd int64
	noPrefetch  bool
}

// noteLandmark records where an eStargz prefetch landmark stands.
func (c *tocContent) noteLandmark(name string) {
	switch {
	case name == estargzNoPrefetchLandmark:
		c.noPrefetch = true
	case name == estargzPrefetchLandmark && c.prefetchEnd < 0:
		c.prefetchEnd = c.usize
	}
}

// convertTOC maps the entries of an eStargz or zstd:chunked TOC (the same
// JSON, estargz.JTOC) to index entries and spans, applying the tar rules
// (placeEntry) and hiding eStargz artefacts. Malformed chunk lists are an
// error (ErrCorrupt); entries that cannot be represented are dropped with a
// warning, as the tar walker does.
//
// Facts about the TOC that the conversion follows (estargz Writer and
// Reader.initFields, containers/storage pkg/chunked):
//   - a "reg" entry with content is its first chunk; "chunk" entries that
//     follow it are the rest, in order; chunkSize 0 means "to the end of the
//     file";
//   - a chunk's compressed bytes start at its offset (a fresh gzip member or
//     zstd frame) and run to the next data entry with a different offset and
//     no innerOffset (estargz NextOffset), or to the TOC; chunks sharing a
//     member (innerOffset > 0) start innerOffset bytes into it;
//   - chunkDigest is the sha256 of the chunk's uncompressed bytes; a file in
//     one chunk may carry only "digest" (of its whole content, the same bytes);
//   - "userName"/"groupName" appear only on the first entry with an id; later
//     entries with that id inherit them;
//   - "modtime" is RFC 3339: whole seconds in eStargz (its writer rounds),
//     nanoseconds in zstd:chunked; absent means the epoch.
func convertTOC(toc *estargz.JTOC, layout tocLayout, log *slog.Logger) (*tocContent, error) {
	ents := toc.Entries
	if len(ents) > maxEntries {
		return nil, fmt.Errorf("TOC has %d entries, more than %d: %w", len(ents), maxEntries, ErrUnsupported)
	}
	for i, te := range ents {
		if te == nil {
			return nil, fmt.Errorf("TOC entry %d is null: %w", i, ErrCorrupt)
		}
	}
	next := chunkEnds(ents, layout.dataEnd)
	out := &tocContent{allDigests: true, prefetchEnd: -1}
	unames, gnames := map[int]string{}, map[int]string{}
	for i := 0; i < len(ents); {
		start, te := i, ents[i]
		i++ // ents[start:i]: the entry and its chunks
		for i < len(ents) && ents[i].Type == "chunk" {
			i++
		}
		group := ents[start:i]
		if te.Type == "chunk" {
			return nil, fmt.Errorf("TOC chunk entry %q follows no regular file: %w", te.Name, ErrCorrupt)
		}
		if te.Type != "reg" && len(group) > 1 {
			return nil, fmt.Errorf("TOC entry %q of type %q has chunks: %w", te.Name, te.Type, ErrCorrupt)
		}
		// Names are inherited even from entries dropped below, as the
		// library's reader does.
		if te.Uname != "" {
			unames[te.UID] = te.Uname
		}
		if te.Gname != "" {
			gnames[te.GID] = te.Gname
		}
		e, why := tocEntry(te, unames, gnames)
		if why == "" && isTOCArtefact(&e) {
			out.noteLandmark(e.Name)
			log.Debug("hiding eStargz artefact", "name", e.Name)
			continue
		}
		if why != "" {
			log.Warn("dropping TOC entry", "name", te.Name, "reason", why)
			continue
		}
		if e.Type == TypeReg {
			e.Offset = out.usize
			if err := out.addChunks(&e, group, next[start:i], layout); err != nil {
				return nil, err
			}
		}
		out.entries = append(out.entries, e)
	}
	return out, nil
}

// chunkEnds returns, for every TOC entry, where the compressed bytes of its
// chunk end (estargz's NextOffset, bounded by the TOC start instead of the
// blob end so that the last chunk does not fetch the TOC).
func chunkEnds(ents []*estargz.TOCEntry, dataEnd int64) []int64 {
	next := make([]int64, len(ents))
	last := dataEnd
	for i := len(ents) - 1; i >= 0; i-- {
		e := ents[i]
		isData := e.Type == "reg" || e.Type == "chunk"
		if isData {
			next[i] = last
		}
		if isData && e.Offset != 0 && e.InnerOffset == 0 {
			last = e.Offset
		}
	}
	return next
}

// tocEntry maps the attributes of one non-chunk TOC entry.
func tocEntry(te *estargz.TOCEntry, unames, gnames map[int]string) (Entry, string) {
	var e Entry
	switch te.Type {
	case "reg":
		e.Type = TypeReg
	case "dir":
		e.Type = TypeDir
	case "symlink":
		e.Type = TypeSymlink
	case "hardlink":
		e.Type = TypeHardlink
	case "char":
		e.Type = TypeChar
	case "block":
		e.Type = TypeBlock
	case "fifo":
		e.Type = TypeFifo
	default:
		return e, fmt.Sprintf("unsupported TOC entry type %q", te.Type)
	}
	if te.Type == "reg" {
		if te.Size < 0 || te.Size > maxStreamSize {
			return e, fmt.Sprintf("size %d out of range", te.Size)
		}
		e.Size = te.Size
	}
	e.Mode = uint32(te.Mode & 0o7777)
	e.Uname, e.Gname = unames[te.UID], gnames[te.GID]
	e.ModTime = time.Unix(0, 0)
	if te.ModTime3339 != "" {
		t, err := time.Parse(time.RFC3339Nano, te.ModTime3339)
		if err != nil {
			return e, fmt.Sprintf("modtime %q is not RFC 3339", te.ModTime3339)
		}
		e.ModTime = t
	}
	ids := entryIDs{te.Name, te.LinkName, int64(te.UID), int64(te.GID), int64(te.DevMajor), int64(te.DevMinor)}
	if why := placeEntry(&e, ids); why != "" {
		return e, why
	}
	for k, v := range te.Xattrs { // JSON base64, already decoded
		if k == "" {
			continue
		}
		if e.Xattrs == nil {
			e.Xattrs = make(map[string]string, len(te.Xattrs))
		}
		e.Xattrs[k] = string(v)
	}
	return e, ""
}

// addChunks appends the spans of regular file e, whose TOC entry and chunk
// entries are group and whose chunk ends are ends[0:len(group)].
func (c *tocContent) addChunks(e *Entry, group []*estargz.TOCEntry, ends []int64, layout tocLayout) error {
	if e.Size == 0 {
		if len(group) > 1 {
			return fmt.Errorf("TOC: empty file %q has chunks: %w", e.Name, ErrCorrupt)
		}
		return nil
	}
	if c.usize > maxStreamSize-e.Size {
		return fmt.Errorf("TOC: files add up to more than %d bytes: %w", int64(maxStreamSize), ErrUnsupported)
	}
	var pos int64 // file offset the next chunk must start at
	for k, ch := range group {
		size := ch.ChunkSize
		if size == 0 {
			size = e.Size - ch.ChunkOffset
		}
		if ch.ChunkOffset != pos || size <= 0 || size > e.Size-pos {
			return fmt.Errorf("TOC: file %q: chunk %d covers %d+%d, expected to start at %d of %d: %w",
				e.Name, k, ch.ChunkOffset, size, pos, e.Size, ErrCorrupt)
		}
		if ch.Offset < 0 || ch.Offset >= layout.dataEnd || ends[k] <= ch.Offset || ch.InnerOffset < 0 {
			return fmt.Errorf("TOC: file %q: chunk %d at blob offset %d (inner %d, next %d) outside the data before the TOC at %d: %w",
				e.Name, k, ch.Offset, ch.InnerOffset, ends[k], layout.dataEnd, ErrCorrupt)
		}
		s := Span{
			UOff: c.usize + pos, ULen: size,
			COff: ch.Offset, CLen: ends[k] - ch.Offset,
			Kind: layout.kind, Window: -1, Skip: ch.InnerOffset,
		}
		dg := ch.ChunkDigest
		if dg == "" && len(group) == 1 && size == e.Size {
			dg = ch.Digest // one chunk: the file digest covers the same bytes
		}
		if dg != "" {
			sum, err := sha256Digest(dg)
			if err != nil {
				return fmt.Errorf("TOC: file %q: chunk %d: %w", e.Name, k, err)
			}
			s.Digest, s.Check = sum, CheckDecoded
		} else {
			c.allDigests = false
		}
		c.spans = append(c.spans, s)
		pos += size
	}
	if pos != e.Size {
		return fmt.Errorf("TOC: file %q: chunks cover %d of %d bytes: %w", e.Name, pos, e.Size, ErrCorrupt)
	}
	c.usize += e.Size
	return nil
}

// sha256Digest parses a TOC digest, which must be sha256: spans hold
// 32-byte sha256 digests.
func sha256Digest(s string) (sum [32]byte, err error) {
	d, err := digest.Parse(s)
	if err != nil {
		return sum, fmt.Errorf("digest %q: %w: %w", s, err, ErrCorrupt)
	}
	if d.Algorithm() != digest.SHA256 {
		return sum, fmt.Errorf("digest %q: only sha256 chunk digests are supported: %w", s, ErrUnsupported)
	}
	b, err := hex.DecodeString(d.Encoded())
	if err != nil || len(b) != len(sum) {
		return sum, fmt.Errorf("digest %q: %w", s, ErrCorrupt)
	}
	copy(sum[:], b)
	return sum, nil
}

// tocMeta records what the builder knows about the TOC.
func tocMeta(tocDigest digest.Digest, pinned bool) map[string]string {
	return map[string]string{metaTOCDigest: tocDigest.String(), metaTOCPinned: strconv.FormatBool(pinned)}
}

// Meta keys written by the TOC builders.
const (
	metaTOCDigest = "toc.digest" // digest the TOC was checked against (or computed, when unpinned)
	metaTOCPinned = "toc.pinned" // "true" when a manifest annotation pinned that digest
	// metaPrefetchEnd: eStargz only, the stream offset (decimal) where the
	// .prefetch.landmark stands; the spans before it hold the layer's
	// prioritized files. Absent when there is no landmark, a
	// .no.prefetch.landmark, or nothing before the landmark.
	metaPrefetchEnd = "prefetch.end"
)
