package fs

import (
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/imgfs/imgfs/index"
)

// inodeTable maps every inode number of a frozen tree to the node that
// carries the inode (for hard links, the path merged first). Inode numbers
// are dense from RootIno, so a slice is the whole table.
func inodeTable(t *Tree) []*Node {
	inodes := make([]*Node, t.nextIno)
	var add func(n *Node)
	add = func(n *Node) {
		m := n.meta()
		inodes[m.ino] = m
		for _, c := range n.children {
			add(c)
		}
	}
	add(t.root)
	return inodes
}

// fillEntry answers a LOOKUP, or one entry of a READDIRPLUS, for n. The
// timeouts are long: nothing in the tree ever changes.
func (t *treeFS) fillEntry(n *Node, out *fuse.EntryOut) {
	out.NodeId = t.idBase + n.Ino()
	out.Generation = 0
	fillAttr(n, &out.Attr)
	out.Attr.Ino = out.NodeId
	if t.refs != nil {
		t.refs.Add(1)
	}
	out.SetEntryTimeout(t.entryTimeout)
	out.SetAttrTimeout(t.attrTimeout)
}

// fillAttr writes a node's attributes in FUSE form. Times before the epoch
// (the zero time of implied directories among them) are reported as the
// epoch.
func fillAttr(n *Node, a *fuse.Attr) {
	a.Ino = n.Ino()
	a.Mode = n.Mode()
	a.Nlink = n.Nlink()
	a.Uid, a.Gid = n.UID(), n.GID()
	size := n.Size()
	a.Size = uint64(size)
	a.Blksize = 4096
	a.Blocks = uint64((size+4095)/4096) * 8
	if t := n.Type(); t == index.TypeChar || t == index.TypeBlock {
		// FUSE carries rdev in the kernel's 32-bit new_encode_dev form, which
		// is the low half of glibc's makedev.
		a.Rdev = uint32(unix.Mkdev(n.Devmajor(), n.Devminor()))
	}
	var sec, nsec uint64
	if mt := n.ModTime(); mt.Unix() >= 0 {
		sec, nsec = uint64(mt.Unix()), uint64(mt.Nanosecond())
	}
	a.Atime, a.Mtime, a.Ctime = sec, sec, sec
	a.Atimensec, a.Mtimensec, a.Ctimensec = uint32(nsec), uint32(nsec), uint32(nsec)
}
