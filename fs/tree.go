package fs

import (
	"errors"
	iofs "io/fs"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/imgfs/imgfs/index"
)

// SyntheticLayer is the Layer of nodes added with AddDir, AddFile and
// AddSymlink: their content is inline, not in any layer.
const SyntheticLayer = -1

// RootIno is the inode number of the root directory. FUSE reserves 1 for it.
const RootIno = 1

// Tree is the merged view of an image's layers. Merge builds it; until
// Freeze (which Mount calls) synthetic nodes may still be added, after that
// it is immutable and safe for concurrent readers. Building and adding are
// not safe for concurrent use.
type Tree struct {
	root      *Node
	count     int    // nodes, the root included
	nextIno   uint64 // next inode number to hand out
	fileBytes int64  // sum of the sizes of distinct regular files
	frozen    bool
}

// Node is one path of the tree. Hard links are distinct Nodes (one per
// path) that share one inode: every metadata getter answers for the shared
// inode, so both paths report the same Ino, Nlink, Entry and Layer.
type Node struct {
	path   string // clean path from the root ("" for the root)
	name   string // last component of path
	parent *Node  // nil for the root

	// link, when set, is the node holding this path's inode: this path is a
	// hard link to it. Metadata below is then unused.
	link *Node

	entry   *index.Entry // tar metadata; for implied and synthetic nodes a tree-owned Entry
	layer   int          // index of the layer the entry comes from, or SyntheticLayer
	ino     uint64
	nlink   uint32
	content []byte // inline content of synthetic regular files

	children []*Node // sorted by name; directories only (while merging: insertion order, nil for removed)
	slot     int32   // while merging: index in parent.children
}

// Root is the root directory.
func (t *Tree) Root() *Node { return t.root }

// Len is the number of paths in the tree, the root included.
func (t *Tree) Len() int { return t.count }

// FileBytes is the total size of the distinct regular files (hard links
// counted once).
func (t *Tree) FileBytes() int64 { return t.fileBytes }

// Freeze makes the tree immutable: further Add* calls fail. It is
// idempotent.
func (t *Tree) Freeze() { t.frozen = true }

// Lookup finds a path. Leading "/" or "./" and repeated slashes are
// accepted; "" and "/" are the root. Symlinks are not followed.
func (t *Tree) Lookup(p string) (*Node, bool) {
	clean, ok := index.CleanPath(p)
	if !ok {
		return nil, false
	}
	n := t.root
	for clean != "" {
		var comp string
		comp, clean, _ = strings.Cut(clean, "/")
		n = n.Child(comp)
		if n == nil {
			return nil, false
		}
	}
	return n, true
}

// Walk visits every node in depth-first, name-sorted order, parents before
// children, with the node's absolute path ("/" for the root). If fn returns
// io/fs.SkipDir for a directory its children are skipped; io/fs.SkipAll
// stops the walk without error; any other error stops it and is returned.
func (t *Tree) Walk(fn func(p string, n *Node) error) error {
	err := walk("/", t.root, fn)
	if errors.Is(err, iofs.SkipAll) {
		return nil
	}
	return err
}

func walk(p string, n *Node, fn func(string, *Node) error) error {
	if err := fn(p, n); err != nil {
		if errors.Is(err, iofs.SkipDir) && n.IsDir() {
			return nil
		}
		return err
	}
	prefix := p
	if prefix != "/" {
		prefix += "/"
	}
	for _, c := range n.children {
		if err := walk(prefix+c.name, c, fn); err != nil {
			return err
		}
	}
	return nil
}

// meta is the node carrying this path's inode.
func (n *Node) meta() *Node {
	if n.link != nil {
		return n.link
	}
	return n
}

// Name is the last path component ("" for the root).
func (n *Node) Name() string { return n.name }

// Parent is the containing directory; nil for the root.
func (n *Node) Parent() *Node { return n.parent }

// Path is the absolute path of this node ("/" for the root).
func (n *Node) Path() string { return "/" + n.path }

// Children are the entries of a directory, sorted by name. The slice is
// shared: do not modify it.
func (n *Node) Children() []*Node { return n.children }

// Child finds a direct child by name (binary search).
func (n *Node) Child(name string) *Node {
	cs := n.children
	i := sort.Search(len(cs), func(i int) bool { return cs[i].name >= name })
	if i < len(cs) && cs[i].name == name {
		return cs[i]
	}
	return nil
}

// Entry is the tar metadata of the inode. Implied directories share one
// tree-owned Entry (Name empty); synthetic nodes have their own. Do not
// modify it.
func (n *Node) Entry() *index.Entry { return n.meta().entry }

// Layer is the index (manifest order, base 0) of the layer whose entry
// describes the inode and holds its content, or SyntheticLayer. For an
// implied directory it is the layer whose entry implied it.
func (n *Node) Layer() int { return n.meta().layer }

// Synthetic reports whether the node was added by AddDir/AddFile/AddSymlink.
func (n *Node) Synthetic() bool { return n.meta().layer == SyntheticLayer }

// Content is the inline content of a synthetic regular file (nil otherwise).
func (n *Node) Content() []byte { return n.meta().content }

// Ino is the stable inode number; hard links share it.
func (n *Node) Ino() uint64 { return n.meta().ino }

// Nlink is the link count: 2 + subdirectories for a directory, the number
// of paths sharing the inode otherwise.
func (n *Node) Nlink() uint32 { return n.meta().nlink }

// Type is the entry type (never TypeHardlink, TypeWhiteout or TypeOpaque).
func (n *Node) Type() index.EntryType { return n.meta().entry.Type }

// IsDir reports whether the node is a directory.
func (n *Node) IsDir() bool { return n.Type() == index.TypeDir }

// Perm is the permission bits plus setuid, setgid and sticky (07777).
func (n *Node) Perm() uint32 { return n.meta().entry.Mode & 07777 }

// Mode is the full st_mode: file type bits plus Perm.
func (n *Node) Mode() uint32 { return typeBits(n.Type()) | n.Perm() }

// UID is the owner.
func (n *Node) UID() uint32 { return n.meta().entry.UID }

// GID is the group.
func (n *Node) GID() uint32 { return n.meta().entry.GID }

// ModTime is the modification time, to the nanosecond.
func (n *Node) ModTime() time.Time { return n.meta().entry.ModTime }

// Linkname is the target of a symlink, verbatim.
func (n *Node) Linkname() string {
	if n.Type() != index.TypeSymlink {
		return ""
	}
	return n.meta().entry.Linkname
}

// Xattrs are the extended attributes. Do not modify the map.
func (n *Node) Xattrs() map[string]string { return n.meta().entry.Xattrs }

// Size is st_size: content length of a regular file, target length of a
// symlink, 4096 for a directory, 0 otherwise.
func (n *Node) Size() int64 {
	e := n.meta().entry
	switch e.Type {
	case index.TypeReg:
		return e.Size
	case index.TypeSymlink:
		return int64(len(e.Linkname))
	case index.TypeDir:
		return 4096
	}
	return 0
}

// Devmajor and Devminor are the device numbers of character and block
// devices.
func (n *Node) Devmajor() uint32 { return n.meta().entry.Devmajor }

// Devminor is the minor device number.
func (n *Node) Devminor() uint32 { return n.meta().entry.Devminor }

// typeBits maps an entry type to the S_IFMT bits of st_mode.
func typeBits(t index.EntryType) uint32 {
	switch t {
	case index.TypeDir:
		return syscall.S_IFDIR
	case index.TypeSymlink:
		return syscall.S_IFLNK
	case index.TypeChar:
		return syscall.S_IFCHR
	case index.TypeBlock:
		return syscall.S_IFBLK
	case index.TypeFifo:
		return syscall.S_IFIFO
	}
	return syscall.S_IFREG
}

// splitPath splits a clean, non-root path into its directory ("" for the
// root) and last component.
func splitPath(p string) (dir, base string) {
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return "", p
	}
	return p[:i], p[i+1:]
}

// joinPath is the inverse of splitPath.
func joinPath(dir, base string) string {
	if dir == "" {
		return base
	}
	return dir + "/" + base
}
