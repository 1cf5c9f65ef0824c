package fs

import (
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// Directory listings are positional: offset i is the i-th name of ".",
// "..", then the children in name order, so any request can start anywhere
// without a handle or per-open state. That is also what lets OPENDIR be
// answered with ENOSYS (requestFS): the kernel then sends READDIR(PLUS)
// with no handle at all.

func (t *treeFS) OpenDir(cancel <-chan struct{}, input *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	n := t.node(input.NodeId)
	switch {
	case n == nil:
		return errStale
	case !n.IsDir():
		return fuse.ENOTDIR
	}
	// The listing never changes: let the kernel cache it.
	out.Fh = 0
	out.OpenFlags = fuse.FOPEN_CACHE_DIR | fuse.FOPEN_KEEP_CACHE
	return fuse.OK
}

func (t *treeFS) ReleaseDir(input *fuse.ReleaseIn) {}

func (t *treeFS) FsyncDir(cancel <-chan struct{}, input *fuse.FsyncIn) fuse.Status {
	return fuse.OK // nothing is ever dirty
}

func (t *treeFS) ReadDir(cancel <-chan struct{}, input *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	return t.readDir(input, out, false)
}

// ReadDirPlus answers each name with its entry and attributes, as a LOOKUP
// would, so that a walk that stats what it lists (find, ls -l, overlayfs)
// sends no LOOKUP or GETATTR after the listing.
func (t *treeFS) ReadDirPlus(cancel <-chan struct{}, input *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	return t.readDir(input, out, true)
}

// readDir fills out from position input.Offset until the reply is full or
// the directory ends. A position past the end lists nothing, which the
// kernel takes for the end, as after a seek past the end on a local
// directory.
func (t *treeFS) readDir(input *fuse.ReadIn, out *fuse.DirEntryList, plus bool) fuse.Status {
	d := t.node(input.NodeId)
	switch {
	case d == nil:
		return errStale
	case !d.IsDir():
		return fuse.ENOTDIR
	}
	end := uint64(len(d.children)) + 2
	for pos := input.Offset; pos < end; pos++ {
		de := fuse.DirEntry{Off: pos + 1, Mode: syscall.S_IFDIR}
		var c *Node
		switch pos {
		case 0:
			de.Name, de.Ino = ".", d.Ino()
		case 1:
			p := d.Parent()
			if p == nil {
				p = d
			}
			de.Name, de.Ino = "..", p.Ino()
		default:
			c = d.children[pos-2]
			de.Name, de.Mode, de.Ino = c.name, typeBits(c.Type()), c.Ino()
		}
		de.Ino += t.idBase
		if !plus {
			if !out.AddDirEntry(de) {
				break
			}
			continue
		}
		entry := out.AddDirLookupEntry(de)
		if entry == nil {
			break
		}
		// "." and ".." keep node ID 0, which tells the kernel there is no
		// entry to link (it never links them anyway).
		if c != nil {
			t.fillEntry(c, entry)
		}
	}
	return fuse.OK
}
