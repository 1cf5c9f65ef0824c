package index

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path"
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

	name, ok := cleanPath(hdr.Name)
	if !ok {
		return drop("path escapes the root or is invalid")
	}
	e.Name = name
	if kind, target, ok := whiteout(name); kind != 0 {
		if !ok {
			return drop("malformed or aufs-internal whiteout")
		}
		e.Type, e.Name = kind, target
	}
	if e.Name == "" && e.Type != TypeDir {
		return drop("the root must be a directory")
	}

	if hdr.Uid < 0 || int64(hdr.Uid) > 1<<32-1 || hdr.Gid < 0 || int64(hdr.Gid) > 1<<32-1 {
		return drop("uid/gid out of range")
	}
	if hdr.Devmajor < 0 || hdr.Devmajor > 1<<32-1 || hdr.Devminor < 0 || hdr.Devminor > 1<<32-1 {
		return drop("device numbers out of range")
	}
	e.Mode = uint32(hdr.Mode & 0o7777)
	e.UID, e.GID = uint32(hdr.Uid), uint32(hdr.Gid)
	e.Uname, e.Gname = hdr.Uname, hdr.Gname
	e.ModTime = hdr.ModTime
	if e.Type == TypeChar || e.Type == TypeBlock {
		e.Devmajor, e.Devminor = uint32(hdr.Devmajor), uint32(hdr.Devminor)
	}
	if e.Type == TypeReg {
		e.Size = hdr.Size // archive/tar rejects negative sizes
	}

	switch e.Type {
	case TypeSymlink:
		e.Linkname = hdr.Linkname // verbatim: resolved by the kernel at lookup, relative to the mount
	case TypeHardlink:
		target, ok := cleanPath(hdr.Linkname)
		switch {
		case !ok || target == "":
			return drop("hardlink target escapes the root or is empty")
		case target == e.Name:
			return drop("hardlink to itself")
		}
		e.Linkname = target
	}
	e.Xattrs = xattrs(hdr.PAXRecords, w.log)
	return e, true, nil
}

// cleanPath makes a tar name relative to the root: "/" and "./" prefixes
// removed, "." and ".." resolved. ok is false for names that escape the
// root, contain NUL or are too long.
func cleanPath(p string) (string, bool) {
	if len(p) > maxPathLen || strings.IndexByte(p, 0) >= 0 {
		return "", false
	}
	p = strings.TrimLeft(p, "/")
	p = path.Clean(p)
	switch {
	case p == ".":
		return "", true
	case p == ".." || strings.HasPrefix(p, "../"):
		return "", false
	}
	return p, true
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
