package fs

import (
	"log/slog"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/imgfs/imgfs/index"
)

// treeFS answers the kernel's FUSE requests straight from a frozen Tree,
// through go-fuse's raw protocol API rather than its node API. The tree
// never changes, so each inode's number can be its FUSE node ID: a LOOKUP
// or READDIRPLUS entry is a slice index and a struct fill, with no inode
// object, lookup count, lock or allocation per entry, and a FORGET has
// nothing to free. go-fuse's node API spent most of a cold walk's server
// time on exactly that bookkeeping (and on the garbage collection of its
// objects). Hard links share an inode number, so the kernel sees one inode
// for all their paths, as on a local file system. In a catalog mount
// (catalogFS), each image's treeFS adds the start of the image's range to
// its inode numbers, and counts the node IDs it hands out.
//
// Requests not answered here (STATX, LSEEK, IOCTL, locks) get ENOSYS from
// the embedded default. The kernel then answers them itself: STATX falls
// back to GETATTR, LSEEK to the generic seek (SEEK_DATA: all data),
// IOCTL fails with ENOTTY, and locks stay local (they are not negotiated).
type treeFS struct {
	readOnlyFS

	tree        *Tree
	inodes      []*Node       // by inode number; nil where no inode has that number
	idBase      uint64        // node ID = idBase + inode number (see treeFSOptions)
	refs        *atomic.Int64 // see treeFSOptions; nil: not counted
	readers     []ContentReader
	readTimeout time.Duration // 0: none
	log         *slog.Logger

	entryTimeout    time.Duration
	attrTimeout     time.Duration
	negativeTimeout time.Duration

	pt *passthrough // nil: files are not copied, every read is a READ
}

// treeFSOptions are what a treeFS needs besides the tree and readers.
type treeFSOptions struct {
	readTimeout     time.Duration // 0: none
	entryTimeout    time.Duration
	attrTimeout     time.Duration
	negativeTimeout time.Duration
	log             *slog.Logger

	// idBase is added to inode numbers to make node IDs (and the inode
	// numbers the kernel sees): 0 for a mount of one tree, an image's
	// range in a catalog mount (see catalogFS).
	idBase uint64
	// refs, when set, counts the node IDs handed to the kernel (each
	// LOOKUP and READDIRPLUS entry; a FORGET takes its count back), so that
	// a catalog knows when the kernel holds nothing of a released image.
	refs *atomic.Int64
	// copies, when set, keeps whole copies of files read to their end,
	// handed to the kernel on later opens (see FileCopies).
	copies FileCopies
}

// newTreeFS serves t, which must be frozen: the inode table is built once,
// here.
func newTreeFS(t *Tree, readers []ContentReader, o treeFSOptions) *treeFS {
	tfs := &treeFS{
		readOnlyFS:      readOnlyFS{fuse.NewDefaultRawFileSystem()},
		tree:            t,
		inodes:          inodeTable(t),
		idBase:          o.idBase,
		refs:            o.refs,
		readers:         readers,
		readTimeout:     o.readTimeout,
		log:             o.log,
		entryTimeout:    o.entryTimeout,
		attrTimeout:     o.attrTimeout,
		negativeTimeout: o.negativeTimeout,
	}
	if o.copies != nil {
		tfs.pt = newPassthrough(o.copies, o.log)
	}
	return tfs
}

func (t *treeFS) String() string { return "imgfs" }

// Init is given the server before any request: passthrough opens need it
// to register backing files.
func (t *treeFS) Init(s *fuse.Server) {
	if t.pt != nil {
		t.pt.server.Store(s)
	}
}

// node is the inode the kernel names by id, or nil for an id this mount
// never handed out.
func (t *treeFS) node(id uint64) *Node {
	id -= t.idBase // below idBase: wraps around, past the table
	if id >= uint64(len(t.inodes)) {
		return nil
	}
	return t.inodes[id]
}

// errStale answers a request about a node ID the mount never gave out.
const errStale = fuse.Status(syscall.ESTALE)

func (t *treeFS) Lookup(cancel <-chan struct{}, header *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	parent := t.node(header.NodeId)
	if parent == nil {
		return errStale
	}
	var c *Node
	switch name {
	case ".": // the kernel asks these only to reconnect file handles
		c = parent
	case "..":
		if c = parent.Parent(); c == nil {
			c = parent
		}
	default:
		c = parent.Child(name)
	}
	if c == nil {
		// Node ID 0 with a timeout is a negative entry: the kernel caches
		// the name's absence instead of asking again.
		out.NodeId = 0
		out.SetEntryTimeout(t.negativeTimeout)
		return fuse.OK
	}
	t.fillEntry(c, out)
	return fuse.OK
}

// Forget has nothing to do: every inode lives as long as the tree (a
// catalog counts what its images' nodes are forgotten: catalogFS.Forget).
func (t *treeFS) Forget(nodeid, nlookup uint64) {}

func (t *treeFS) GetAttr(cancel <-chan struct{}, input *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	n := t.node(input.NodeId)
	if n == nil {
		return errStale
	}
	fillAttr(n, &out.Attr)
	out.Attr.Ino += t.idBase
	out.SetTimeout(t.attrTimeout)
	return fuse.OK
}

// Access answers access(2) and chdir checks. It is only asked when the
// kernel does not check permissions itself (MountOptions.DefaultPermissions
// off), and then answers as for a sandbox the caller unpacked: anything may
// be read and searched, nothing written, and only files with an execute bit
// executed.
func (t *treeFS) Access(cancel <-chan struct{}, input *fuse.AccessIn) fuse.Status {
	n := t.node(input.NodeId)
	if n == nil {
		return errStale
	}
	return fuse.Status(checkAccess(n, input.Mask))
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

func (t *treeFS) Readlink(cancel <-chan struct{}, header *fuse.InHeader) ([]byte, fuse.Status) {
	n := t.node(header.NodeId)
	switch {
	case n == nil:
		return nil, errStale
	case n.Type() != index.TypeSymlink:
		return nil, fuse.EINVAL
	}
	return []byte(n.Linkname()), fuse.OK
}

func (t *treeFS) StatFs(cancel <-chan struct{}, header *fuse.InHeader, out *fuse.StatfsOut) fuse.Status {
	const bsize = 4096
	out.Bsize, out.Frsize = bsize, bsize
	out.Blocks = uint64((t.tree.FileBytes() + bsize - 1) / bsize)
	out.Files = uint64(t.tree.Len())
	out.NameLen = 255
	return fuse.OK
}
