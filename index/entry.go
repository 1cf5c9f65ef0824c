package index

import "time"

// EntryType is the kind of a tar entry after parsing. Whiteouts are kept as
// their own kinds: applying them is the merge's job, not the index's.
type EntryType uint8

const (
	TypeReg      EntryType = iota + 1
	TypeDir                // directory
	TypeSymlink            // Linkname is the target, verbatim
	TypeHardlink           // Linkname is the (cleaned) path of the target within the image
	TypeChar               // character device
	TypeBlock              // block device
	TypeFifo               // named pipe
	TypeWhiteout           // ".wh.NAME": Name is the path of NAME (the deleted entry)
	TypeOpaque             // ".wh..wh..opq": Name is the path of the directory made opaque
)

// Entry is one tar entry of a layer.
type Entry struct {
	Name     string // cleaned path relative to the root, no leading "/" or "./"; "" is the root itself
	Type     EntryType
	Mode     uint32 // permission bits plus setuid, setgid, sticky (07777)
	UID, GID uint32
	Uname    string
	Gname    string
	Size     int64 // content size (regular files only)
	ModTime  time.Time
	Linkname string
	Devmajor uint32
	Devminor uint32
	Xattrs   map[string]string // from PAX SCHILY.xattr.* and LIBARCHIVE.xattr.*
	// Offset locates the content in the layer's addressable stream: the
	// uncompressed tar stream for tar, gzip and zstd layers, a virtual stream
	// of concatenated chunks for eStargz and zstd:chunked. Readers treat it
	// as opaque and go through Reader.
	Offset int64
}
