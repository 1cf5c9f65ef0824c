package integration

import (
	"archive/tar"
	"bytes"
	"fmt"
	"path"
	"strings"
	"time"
)

// EntryType is the kind of a fixture tar entry.
type EntryType int

const (
	TypeFile      EntryType = iota // regular file with Content
	TypeDir                        // directory (written with a trailing '/')
	TypeSymlink                    // symbolic link to Link, verbatim
	TypeHardlink                   // hard link to the path Link
	TypeCharDev                    // character device Devmajor:Devminor
	TypeBlockDev                   // block device Devmajor:Devminor
	TypeFIFO                       // named pipe
	TypeWhiteout                   // deletes Path from lower layers: writes DIR/.wh.BASE
	TypeOpaqueDir                  // hides lower entries of directory Path: writes Path/.wh..wh..opq
)

// DefaultModTime is the mtime of entries that do not set one.
var DefaultModTime = time.Unix(1700000000, 0).UTC()

// Entry declares one tar entry of a fixture layer. Zero fields take
// sensible defaults: mode 0644 (files), 0755 (dirs), 0777 (symlinks), 0600
// (devices, FIFOs), DefaultModTime, uid/gid 0.
type Entry struct {
	Path     string    // as written into the tar, not cleaned ("../x" stays hostile)
	Type     EntryType //
	Mode     int64     // permission bits incl. 04000 setuid, 02000 setgid, 01000 sticky
	UID, GID int
	Uname    string
	Gname    string
	ModTime  time.Time         // nanoseconds kept (PAX)
	Content  []byte            // regular files only
	Link     string            // symlink target or hardlink source path
	Xattrs   map[string]string // written as PAX SCHILY.xattr.NAME records
	Devmajor int64
	Devminor int64
}

// Convenience constructors for the common entries.
func File(p, content string) Entry      { return Entry{Path: p, Type: TypeFile, Content: []byte(content)} }
func Dir(p string) Entry                { return Entry{Path: p, Type: TypeDir} }
func Symlink(p, target string) Entry    { return Entry{Path: p, Type: TypeSymlink, Link: target} }
func Hardlink(p, target string) Entry   { return Entry{Path: p, Type: TypeHardlink, Link: target} }
func Whiteout(deletedPath string) Entry { return Entry{Path: deletedPath, Type: TypeWhiteout} }
func OpaqueDir(dirPath string) Entry    { return Entry{Path: dirPath, Type: TypeOpaqueDir} }
func CharDev(p string, maj, min int) Entry {
	return Entry{Path: p, Type: TypeCharDev, Devmajor: int64(maj), Devminor: int64(min)}
}
func FIFO(p string) Entry { return Entry{Path: p, Type: TypeFIFO} }

// WhiteoutPrefix and OpaqueWhiteout are the OCI whiteout names.
const (
	WhiteoutPrefix = ".wh."
	OpaqueWhiteout = ".wh..wh..opq"
)

// BuildTar writes the entries, in order, as an uncompressed tar stream.
// Entries needing PAX (xattrs, sub-second mtimes, long names) get it; the
// others are left to archive/tar's choice (USTAR), as common tools do.
func BuildTar(entries []Entry) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for i, e := range entries {
		hdr, err := e.header()
		if err != nil {
			return nil, fmt.Errorf("entry %d (%s): %w", i, e.Path, err)
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("entry %d (%s): write header: %w", i, e.Path, err)
		}
		if hdr.Typeflag == tar.TypeReg {
			if _, err := tw.Write(e.Content); err != nil {
				return nil, fmt.Errorf("entry %d (%s): write content: %w", i, e.Path, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("close tar: %w", err)
	}
	return buf.Bytes(), nil
}

func (e Entry) header() (*tar.Header, error) {
	hdr := &tar.Header{
		Name:     e.Path,
		Mode:     e.Mode,
		Uid:      e.UID,
		Gid:      e.GID,
		Uname:    e.Uname,
		Gname:    e.Gname,
		ModTime:  e.ModTime,
		Devmajor: e.Devmajor,
		Devminor: e.Devminor,
	}
	if hdr.ModTime.IsZero() {
		hdr.ModTime = DefaultModTime
	}
	defaultMode := int64(0o644)
	switch e.Type {
	case TypeFile:
		hdr.Typeflag, hdr.Size = tar.TypeReg, int64(len(e.Content))
	case TypeDir:
		hdr.Typeflag, defaultMode = tar.TypeDir, 0o755
		if !strings.HasSuffix(hdr.Name, "/") {
			hdr.Name += "/"
		}
	case TypeSymlink:
		hdr.Typeflag, hdr.Linkname, defaultMode = tar.TypeSymlink, e.Link, 0o777
	case TypeHardlink:
		hdr.Typeflag, hdr.Linkname = tar.TypeLink, e.Link
	case TypeCharDev:
		hdr.Typeflag, defaultMode = tar.TypeChar, 0o600
	case TypeBlockDev:
		hdr.Typeflag, defaultMode = tar.TypeBlock, 0o600
	case TypeFIFO:
		hdr.Typeflag, defaultMode = tar.TypeFifo, 0o600
	case TypeWhiteout:
		dir, base := path.Split(strings.TrimSuffix(e.Path, "/"))
		if base == "" {
			return nil, fmt.Errorf("whiteout of an empty name")
		}
		hdr.Typeflag, hdr.Name = tar.TypeReg, dir+WhiteoutPrefix+base
	case TypeOpaqueDir:
		hdr.Typeflag, hdr.Name = tar.TypeReg, path.Join(e.Path, OpaqueWhiteout)
	default:
		return nil, fmt.Errorf("unknown entry type %d", e.Type)
	}
	if hdr.Mode == 0 {
		hdr.Mode = defaultMode
	}
	if len(e.Xattrs) > 0 {
		hdr.PAXRecords = make(map[string]string, len(e.Xattrs))
		for k, v := range e.Xattrs {
			hdr.PAXRecords["SCHILY.xattr."+k] = v
		}
	}
	if len(e.Xattrs) > 0 || hdr.ModTime.Nanosecond() != 0 {
		// Without an explicit PAX format archive/tar rounds mtimes to seconds.
		hdr.Format = tar.FormatPAX
	}
	return hdr, nil
}
