package fs

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/imgfs/imgfs/index"
)

// ContentReader reads the content of a regular file of one layer. The
// mount holds one per layer, in manifest order; *index.Reader satisfies it.
// It must be safe for concurrent use. ctx ends when the process that
// issued the read is gone (see readerContext).
type ContentReader interface {
	ReadAt(ctx context.Context, e *index.Entry, p []byte, off int64) (int, error)
}

var _ ContentReader = (*index.Reader)(nil)

// mountState is what every FUSE node of one mount shares (of one image,
// in a catalog: see catalog.go).
type mountState struct {
	tree        *Tree
	readers     []ContentReader
	readTimeout time.Duration
	log         *slog.Logger
	inoBase     uint64    // added to the tree's inode numbers (images of a catalog)
	activity    *Activity // told of opens and use (images of a catalog); nil: nobody
}

// fuseNode serves one inode of the tree. Hard-linked paths resolve to one
// go-fuse Inode because they share StableAttr.Ino, so node is whichever of
// the paths was looked up first; all metadata getters answer for the
// shared inode.
type fuseNode struct {
	gofs.Inode
	m    *mountState
	node *Node
}

var (
	_ gofs.NodeLookuper       = (*fuseNode)(nil)
	_ gofs.NodeGetattrer      = (*fuseNode)(nil)
	_ gofs.NodeOpendirHandler = (*fuseNode)(nil)
	_ gofs.NodeOpener         = (*fuseNode)(nil)
	_ gofs.NodeReader         = (*fuseNode)(nil)
	_ gofs.NodeReleaser       = (*fuseNode)(nil)
	_ gofs.NodeReadlinker     = (*fuseNode)(nil)
	_ gofs.NodeGetxattrer     = (*fuseNode)(nil)
	_ gofs.NodeListxattrer    = (*fuseNode)(nil)
	_ gofs.NodeStatfser       = (*fuseNode)(nil)
	_ gofs.NodeAccesser       = (*fuseNode)(nil)
	_ gofs.NodeFsyncer        = (*fuseNode)(nil)
	_ gofs.FileReaddirenter   = (*dirHandle)(nil)
	_ gofs.FileSeekdirer      = (*dirHandle)(nil)
)

func (m *mountState) newChild(parent *fuseNode, ctx context.Context, c *Node) *gofs.Inode {
	return parent.NewInode(ctx, &fuseNode{m: m, node: c}, gofs.StableAttr{Mode: typeBits(c.Type()), Ino: m.inoBase + c.Ino()})
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

func (f *fuseNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	f.m.activity.touch()
	c := f.node.Child(name)
	if c == nil {
		return nil, syscall.ENOENT
	}
	fillAttr(c, &out.Attr)
	out.Attr.Ino += f.m.inoBase
	return f.m.newChild(f, ctx, c), 0
}

func (f *fuseNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	fillAttr(f.node, &out.Attr)
	out.Attr.Ino += f.m.inoBase
	return 0
}

// Access answers access(2) and chdir checks. It is only asked when the
// kernel does not check permissions itself (MountOptions.DefaultPermissions
// off), and then answers as for a sandbox the caller unpacked: anything may
// be read and searched, nothing written, and only files with an execute bit
// executed.
func (f *fuseNode) Access(ctx context.Context, mask uint32) syscall.Errno {
	return checkAccess(f.node, mask)
}

func checkAccess(n *Node, mask uint32) syscall.Errno {
	switch {
	case mask&unix.W_OK != 0:
		return syscall.EROFS
	case mask&unix.X_OK != 0 && !n.IsDir() && n.Perm()&0o111 == 0:
		return syscall.EACCES
	}
	return 0
}

func (f *fuseNode) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY || flags&syscall.O_TRUNC != 0 {
		return nil, 0, syscall.EROFS
	}
	// The image never changes: let the kernel keep its page cache across
	// opens, and skip the FLUSH round trip on close (nothing to flush).
	const openFlags = fuse.FOPEN_KEEP_CACHE | fuse.FOPEN_NOFLUSH
	if f.m.activity != nil {
		// A served image counts its open files: a handle makes go-fuse
		// call Release.
		f.m.activity.opened()
		return servedFile{}, openFlags, 0
	}
	return nil, openFlags, 0
}

// servedFile is the handle of a file open in a served image.
type servedFile struct{}

// Release ends an open of a served image (see Activity).
func (f *fuseNode) Release(ctx context.Context, fh gofs.FileHandle) syscall.Errno {
	f.m.activity.released()
	return 0
}

func (f *fuseNode) Read(ctx context.Context, fh gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	n := f.node
	size := n.Size()
	if n.Type() != index.TypeReg {
		return nil, syscall.EINVAL
	}
	if off < 0 {
		return nil, syscall.EINVAL
	}
	if off >= size {
		return fuse.ReadResultData(nil), 0
	}
	buf := dest[:min(int64(len(dest)), size-off)]
	f.m.activity.touch()
	if n.Synthetic() {
		return dataResult(buf[:copy(buf, n.Content()[off:])]), 0
	}
	layer := n.Layer()
	if layer < 0 || layer >= len(f.m.readers) || f.m.readers[layer] == nil {
		f.m.log.Error("read: no reader for layer", "path", n.Path(), "layer", layer)
		return nil, syscall.EIO
	}
	fc, _ := ctx.(*fuse.Context)
	rctx := newReaderContext(fc, f.m.readTimeout)
	defer rctx.stop()
	got, err := f.m.readers[layer].ReadAt(rctx, n.Entry(), buf, off)
	if err != nil && !(errors.Is(err, io.EOF) && got == len(buf)) {
		f.m.log.Error("read failed", "path", n.Path(), "layer", layer, "offset", off, "length", len(buf), "err", err)
		return nil, syscall.EIO
	}
	return dataResult(buf[:got]), 0
}

// dataResult answers a read with bytes in memory. A vector result is
// written to the kernel with one writev, header and bytes together, with no
// copy into a contiguous reply. (The mount also turns go-fuse's splice off:
// it cannot help bytes already in memory, and a full 1 MiB reply with its
// header does not fit the default pipe, which go-fuse logged each time.)
func dataResult(b []byte) fuse.ReadResult { return fuse.ReadResultVector([][]byte{b}) }

func (f *fuseNode) Fsync(ctx context.Context, fh gofs.FileHandle, flags uint32) syscall.Errno {
	return 0 // nothing is ever dirty
}

func (f *fuseNode) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	if f.node.Type() != index.TypeSymlink {
		return nil, syscall.EINVAL
	}
	return []byte(f.node.Linkname()), 0
}

// Getxattr follows getxattr(2): with a buffer too small (go-fuse passes an
// empty one for a size probe) it answers the size and ERANGE, which go-fuse
// turns into a plain size answer for probes.
func (f *fuseNode) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	v, ok := f.node.Xattrs()[attr]
	if !ok {
		return 0, syscall.ENODATA
	}
	if len(dest) < len(v) {
		return uint32(len(v)), syscall.ERANGE
	}
	return uint32(copy(dest, v)), 0
}

func (f *fuseNode) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	xs := f.node.Xattrs()
	if len(xs) == 0 {
		return 0, 0
	}
	names := make([]string, 0, len(xs))
	size := 0
	for k := range xs {
		names = append(names, k)
		size += len(k) + 1
	}
	if len(dest) < size {
		return uint32(size), syscall.ERANGE
	}
	slices.Sort(names)
	var b strings.Builder
	for _, k := range names {
		b.WriteString(k)
		b.WriteByte(0)
	}
	return uint32(copy(dest, b.String())), 0
}

func (f *fuseNode) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	const bsize = 4096
	t := f.m.tree
	out.Bsize, out.Frsize = bsize, bsize
	out.Blocks = uint64((t.FileBytes() + bsize - 1) / bsize)
	out.Files = uint64(t.Len())
	out.NameLen = 255
	return 0
}

func (f *fuseNode) OpendirHandle(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if !f.node.IsDir() {
		return nil, 0, syscall.ENOTDIR
	}
	f.m.activity.touch()
	// The listing never changes: let the kernel cache it.
	return &dirHandle{node: f.node, inoBase: f.m.inoBase}, fuse.FOPEN_CACHE_DIR | fuse.FOPEN_KEEP_CACHE, 0
}

// dirHandle lists a directory: ".", "..", then the children in name order.
// Offsets are positions in that sequence, so seeking is trivial.
type dirHandle struct {
	node    *Node
	pos     int
	inoBase uint64 // see mountState
}

func (d *dirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	n := d.node
	var de fuse.DirEntry
	switch i := d.pos; {
	case i == 0:
		de = fuse.DirEntry{Name: ".", Mode: syscall.S_IFDIR, Ino: n.Ino()}
	case i == 1:
		p := n.Parent()
		if p == nil {
			p = n
		}
		de = fuse.DirEntry{Name: "..", Mode: syscall.S_IFDIR, Ino: p.Ino()}
	case i-2 < len(n.children):
		c := n.children[i-2]
		de = fuse.DirEntry{Name: c.name, Mode: typeBits(c.Type()), Ino: c.Ino()}
	default:
		return nil, 0
	}
	d.pos++
	de.Off = uint64(d.pos)
	de.Ino += d.inoBase
	return &de, 0
}

func (d *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	if off > uint64(len(d.node.children)+2) {
		return syscall.EINVAL
	}
	d.pos = int(off)
	return 0
}
