package index

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// Limits that keep a hostile tar from exhausting memory. archive/tar already
// bounds each PAX header and GNU long name to 1 MiB and replaces (not merges)
// the records of consecutive PAX headers, so a chain of them costs time
// proportional to its size but no memory.
const (
	maxEntries = 1 << 22 // 4 Mi entries, ~1 GiB of Entry structs
	maxPathLen = 4096    // PATH_MAX: longer names cannot be looked up through the mount anyway
)

// tarWalker turns a tar stream into Entries. It is shared by every builder
// whose addressable stream is a plain tar (tar, gzip, zstd).
type tarWalker struct {
	log *slog.Logger
	// pos reports how many bytes of the stream given to walk have been
	// consumed. archive/tar reads a header, its PAX/GNU extension blocks and
	// nothing more before Next returns (it reads whole 512-byte blocks with
	// io.ReadFull and skips data lazily on the following Next), so pos()
	// right after Next is the offset of the entry's data.
	pos func() int64
	// hideTOCArtefacts drops the entries eStargz adds to a tar (see
	// isTOCArtefact): set for gzip layers, which may be eStargz blobs whose
	// annotation was stripped.
	hideTOCArtefacts bool
}

// walk reads every header of r and calls emit with each entry worth
// keeping. Entries that cannot be represented safely are dropped with a
// warning; malformed tar and GNU sparse files end the walk with an error.
func (w *tarWalker) walk(ctx context.Context, r io.Reader, emit func(Entry) error) error {
	tr := tar.NewReader(r)
	count := 0
	last := "(start of archive)"
	for {
		if count%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil && !errors.Is(err, tar.ErrInsecurePath) { // we clean names ourselves
			return fmt.Errorf("tar header after %q (stream offset %d): %w", last, w.pos(), err)
		}
		last = hdr.Name
		e, keep, err := w.entry(hdr)
		if err != nil {
			return err
		}
		if !keep {
			continue
		}
		if w.hideTOCArtefacts && isTOCArtefact(&e) {
			w.log.Debug("hiding eStargz artefact", "name", e.Name)
			continue
		}
		if e.Type == TypeReg {
			e.Offset = w.pos()
		}
		if count++; count > maxEntries {
			return fmt.Errorf("more than %d tar entries: %w", maxEntries, ErrUnsupported)
		}
		if err := emit(e); err != nil {
			return err
		}
	}
}

// entry maps one tar header; keep is false for entries that are dropped.
func (w *tarWalker) entry(hdr *tar.Header) (e Entry, keep bool, err error) {
	drop := func(why string) (Entry, bool, error) {
		w.log.Warn("dropping tar entry", "name", hdr.Name, "reason", why)
		return Entry{}, false, nil
	}
	if hdr.Typeflag == tar.TypeGNUSparse || hasSparseRecords(hdr.PAXRecords) {
		return Entry{}, false, fmt.Errorf("tar entry %q is a GNU sparse file: %w (its data cannot be addressed by offset)", hdr.Name, ErrUnsupported)
	}
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeCont:
		e.Type = TypeReg
	case tar.TypeDir:
		e.Type = TypeDir
	case tar.TypeSymlink:
		e.Type = TypeSymlink
	case tar.TypeLink:
		e.Type = TypeHardlink
	case tar.TypeChar:
		e.Type = TypeChar
	case tar.TypeBlock:
		e.Type = TypeBlock
	case tar.TypeFifo:
		e.Type = TypeFifo
	case tar.TypeXGlobalHeader:
		return Entry{}, false, nil // global PAX defaults: nothing we keep depends on them
	default:
		return drop(fmt.Sprintf("unsupported type flag %q", hdr.Typeflag))
	}

	e.Mode = uint32(hdr.Mode & 0o7777)
	e.Uname, e.Gname = hdr.Uname, hdr.Gname
	e.ModTime = hdr.ModTime
	if e.Type == TypeReg {
		e.Size = hdr.Size // archive/tar rejects negative sizes
	}
	if why := placeEntry(&e, entryIDs{hdr.Name, hdr.Linkname, int64(hdr.Uid), int64(hdr.Gid), hdr.Devmajor, hdr.Devminor}); why != "" {
		return drop(why)
	}
	e.Xattrs = xattrs(hdr.PAXRecords, w.log)
	return e, true, nil
}

// eStargz artefacts: the TOC's own tar entry and the prefetch landmarks
// (one byte each) sit at the root of the layer's tar. They are not part of
// the image and are hidden so that an eStargz layer mounts as the same tree
// as the gzip layer it was converted from.
const (
	estargzTOCName            = "stargz.index.json"
	estargzPrefetchLandmark   = ".prefetch.landmark"
	estargzNoPrefetchLandmark = ".no.prefetch.landmark"
)

func isTOCArtefact(e *Entry) bool {
	switch {
	case e.Type != TypeReg:
		return false
	case e.Name == estargzTOCName:
		return true
	case e.Name == estargzPrefetchLandmark || e.Name == estargzNoPrefetchLandmark:
		return e.Size == 1
	}
	return false
}

// entryIDs are the raw fields of an entry that placeEntry checks.
type entryIDs struct {
	name, linkname   string
	uid, gid         int64
	devmajor, devmin int64
}

// placeEntry applies the rules every format shares (tar headers and TOC
// entries alike) to e, whose Type and other attributes are set: the name is
// cleaned, whiteout names become TypeWhiteout/TypeOpaque entries naming what
// they delete, hardlink targets are cleaned (symlink targets kept verbatim),
// ids and device numbers are range-checked. It returns why the entry must be
// dropped, or "".
func placeEntry(e *Entry, raw entryIDs) (why string) {
	name, ok := CleanPath(raw.name)
	if !ok {
		return "path escapes the root or is invalid"
	}
	e.Name = name
	if kind, target, ok := whiteout(name); kind != 0 {
		if !ok {
			return "malformed or aufs-internal whiteout"
		}
		e.Type, e.Name = kind, target
		e.Size = 0
	}
	if e.Name == "" && e.Type != TypeDir && e.Type != TypeOpaque {
		return "the root must be a directory"
	}
	if raw.uid < 0 || raw.uid > 1<<32-1 || raw.gid < 0 || raw.gid > 1<<32-1 {
		return "uid/gid out of range"
	}
	e.UID, e.GID = uint32(raw.uid), uint32(raw.gid)
	if e.Type == TypeChar || e.Type == TypeBlock {
		if raw.devmajor < 0 || raw.devmajor > 1<<32-1 || raw.devmin < 0 || raw.devmin > 1<<32-1 {
			return "device numbers out of range"
		}
		e.Devmajor, e.Devminor = uint32(raw.devmajor), uint32(raw.devmin)
	}
	switch e.Type {
	case TypeSymlink:
		e.Linkname = raw.linkname // verbatim: resolved by the kernel at lookup, relative to the mount
	case TypeHardlink:
		target, ok := CleanPath(raw.linkname)
		switch {
		case !ok || target == "":
			return "hardlink target escapes the root or is empty"
		case target == e.Name:
			return "hardlink to itself"
		}
		e.Linkname = target
	}
	return ""
}

const (
	whiteoutPrefix = ".wh."
	whiteoutMeta   = ".wh..wh."
	opaqueMarker   = ".wh..wh..opq"
)

// whiteout classifies a cleaned name. kind is 0 for ordinary names; for
// whiteouts target is what they delete (or the opaque directory). ok is
// false for whiteouts that must be dropped (".wh." alone, aufs metadata
// like ".wh..wh.plnk").
func whiteout(name string) (kind EntryType, target string, ok bool) {
	dir, base := "", name
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		dir, base = name[:i], name[i+1:]
	}
	if !strings.HasPrefix(base, whiteoutPrefix) {
		return 0, "", false
	}
	if base == opaqueMarker {
		return TypeOpaque, dir, true
	}
	if strings.HasPrefix(base, whiteoutMeta) {
		return TypeWhiteout, "", false
	}
	deleted := base[len(whiteoutPrefix):]
	if deleted == "" || deleted == "." || deleted == ".." {
		return TypeWhiteout, "", false
	}
	if dir == "" {
		return TypeWhiteout, deleted, true
	}
	return TypeWhiteout, dir + "/" + deleted, true
}

func hasSparseRecords(rec map[string]string) bool {
	for k := range rec {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}

// collect walks r and appends every entry it yields to ix.Entries.
func (w *tarWalker) collect(ctx context.Context, r io.Reader, ix *Index) error {
	return w.walk(ctx, r, func(e Entry) error {
		ix.Entries = append(ix.Entries, e)
		return nil
	})
}
