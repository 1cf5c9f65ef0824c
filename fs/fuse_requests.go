package fs

import (
	iofs "io/fs"
	"sync/atomic"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// requestFS sits between go-fuse's server and treeFS. It counts
// every request the kernel sends, by kind (Mounted.Requests), and answers
// some itself so that the kernel stops sending them:
//
//   - GETXATTR and LISTXATTR, when no path of the tree has an extended
//     attribute: ENOSYS. The kernel (fs/fuse/xattr.c) then sets
//     no_getxattr / no_listxattr for the whole mount and answers every later
//     getxattr(2) and listxattr(2) itself with EOPNOTSUPP, as for a file
//     system without xattr support; POSIX ACL lookups stop too
//     (fs/fuse/acl.c returns no ACL once no_getxattr is set). Without this,
//     overlayfs (Apptainer mounts one over every directory image) asks for
//     trusted.overlay.* of every path it looks up, each question a round
//     trip answered ENODATA. A tree with xattrs is served exactly, each
//     question a request.
//   - OPENDIR, when the kernel offers NO_OPENDIR_SUPPORT (Linux 5.1 and
//     later): ENOSYS. The kernel then sets no_opendir, stops sending
//     OPENDIR and RELEASEDIR (two round trips per directory per listing,
//     even when the listing is cached), and opens directories itself with
//     FOPEN_KEEP_CACHE | FOPEN_CACHE_DIR: a listing read once is served from
//     its cache for as long as the inode stays. READDIR(PLUS) requests then
//     come without a handle, which treeFS does not need.
type requestFS struct {
	fuse.RawFileSystem
	counts   *requestCounters
	noXattrs bool
	server   atomic.Pointer[fuse.Server]
}

func newRequestFS(inner fuse.RawFileSystem, counts *requestCounters, noXattrs bool) *requestFS {
	return &requestFS{RawFileSystem: inner, counts: counts, noXattrs: noXattrs}
}

// requestKind indexes requestCounters.
type requestKind int

const (
	reqLookup requestKind = iota
	reqForget
	reqGetattr
	reqAccess
	reqReadlink
	reqGetxattr
	reqListxattr
	reqOpendir
	reqReaddir
	reqReaddirplus
	reqReleasedir
	reqOpen
	reqRead
	reqRelease
	reqFlush
	reqStatfs
	reqOther
	numRequestKinds
)

// requestNames are the kinds as Requests reports them, in that order.
var requestNames = [numRequestKinds]string{
	"lookup", "forget", "getattr", "access", "readlink", "getxattr", "listxattr",
	"opendir", "readdir", "readdirplus", "releasedir",
	"open", "read", "release", "flush", "statfs", "other",
}

type requestCounters [numRequestKinds]atomic.Uint64

func (c *requestCounters) add(k requestKind) { c[k].Add(1) }

// RequestCount is how many FUSE requests of one kind a mount received.
type RequestCount struct {
	Kind string // lookup, forget (inodes forgotten), getattr, ..., other
	N    uint64
}

// RequestStats are a mount's FUSE requests by kind, every kind in a fixed
// order, zeros included.
type RequestStats []RequestCount

// Total is the number of requests of every kind.
func (s RequestStats) Total() uint64 {
	var n uint64
	for _, c := range s {
		n += c.N
	}
	return n
}

// Count is the number of requests of one kind (0 for an unknown kind).
func (s RequestStats) Count(kind string) uint64 {
	for _, c := range s {
		if c.Kind == kind {
			return c.N
		}
	}
	return 0
}

func (c *requestCounters) snapshot() RequestStats {
	out := make(RequestStats, numRequestKinds)
	for k := range numRequestKinds {
		out[k] = RequestCount{Kind: requestNames[k], N: c[k].Load()}
	}
	return out
}

// treeHasXattrs reports whether any path of t carries an extended
// attribute.
func treeHasXattrs(t *Tree) bool {
	found := false
	_ = t.Walk(func(_ string, n *Node) error {
		if len(n.Xattrs()) > 0 {
			found = true
			return iofs.SkipAll
		}
		return nil
	})
	return found
}

func (r *requestFS) Init(s *fuse.Server) {
	r.server.Store(s)
	r.RawFileSystem.Init(s)
}

// kernelOffers reports whether the kernel's INIT offered a capability.
func (r *requestFS) kernelOffers(flag uint64) bool {
	s := r.server.Load()
	return s != nil && s.KernelSettings().Flags64()&flag != 0
}

func (r *requestFS) GetXAttr(cancel <-chan struct{}, header *fuse.InHeader, attr string, dest []byte) (uint32, fuse.Status) {
	r.counts.add(reqGetxattr)
	if r.noXattrs {
		return 0, fuse.ENOSYS
	}
	return r.RawFileSystem.GetXAttr(cancel, header, attr, dest)
}

func (r *requestFS) ListXAttr(cancel <-chan struct{}, header *fuse.InHeader, dest []byte) (uint32, fuse.Status) {
	r.counts.add(reqListxattr)
	if r.noXattrs {
		return 0, fuse.ENOSYS
	}
	return r.RawFileSystem.ListXAttr(cancel, header, dest)
}

func (r *requestFS) OpenDir(cancel <-chan struct{}, input *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	r.counts.add(reqOpendir)
	if r.kernelOffers(fuse.CAP_NO_OPENDIR_SUPPORT) {
		return fuse.ENOSYS
	}
	return r.RawFileSystem.OpenDir(cancel, input, out)
}

func (r *requestFS) ReadDir(cancel <-chan struct{}, input *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	r.counts.add(reqReaddir)
	return r.RawFileSystem.ReadDir(cancel, input, out)
}

func (r *requestFS) ReadDirPlus(cancel <-chan struct{}, input *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	r.counts.add(reqReaddirplus)
	return r.RawFileSystem.ReadDirPlus(cancel, input, out)
}

func (r *requestFS) ReleaseDir(input *fuse.ReleaseIn) {
	r.counts.add(reqReleasedir)
	r.RawFileSystem.ReleaseDir(input)
}

func (r *requestFS) Lookup(cancel <-chan struct{}, header *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	r.counts.add(reqLookup)
	return r.RawFileSystem.Lookup(cancel, header, name, out)
}

func (r *requestFS) Forget(nodeid, nlookup uint64) {
	r.counts.add(reqForget)
	r.RawFileSystem.Forget(nodeid, nlookup)
}

func (r *requestFS) GetAttr(cancel <-chan struct{}, input *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	r.counts.add(reqGetattr)
	return r.RawFileSystem.GetAttr(cancel, input, out)
}

func (r *requestFS) Access(cancel <-chan struct{}, input *fuse.AccessIn) fuse.Status {
	r.counts.add(reqAccess)
	return r.RawFileSystem.Access(cancel, input)
}

func (r *requestFS) Readlink(cancel <-chan struct{}, header *fuse.InHeader) ([]byte, fuse.Status) {
	r.counts.add(reqReadlink)
	return r.RawFileSystem.Readlink(cancel, header)
}

func (r *requestFS) Open(cancel <-chan struct{}, input *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	r.counts.add(reqOpen)
	return r.RawFileSystem.Open(cancel, input, out)
}

func (r *requestFS) Read(cancel <-chan struct{}, input *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	r.counts.add(reqRead)
	return r.RawFileSystem.Read(cancel, input, buf)
}

func (r *requestFS) Release(cancel <-chan struct{}, input *fuse.ReleaseIn) {
	r.counts.add(reqRelease)
	r.RawFileSystem.Release(cancel, input)
}

func (r *requestFS) Flush(cancel <-chan struct{}, input *fuse.FlushIn) fuse.Status {
	r.counts.add(reqFlush)
	return r.RawFileSystem.Flush(cancel, input)
}

func (r *requestFS) StatFs(cancel <-chan struct{}, input *fuse.InHeader, out *fuse.StatfsOut) fuse.Status {
	r.counts.add(reqStatfs)
	return r.RawFileSystem.StatFs(cancel, input, out)
}

// The kinds below are rare on a read-only mount (the kernel refuses writes
// before they reach the server); they are counted as "other".

func (r *requestFS) SetAttr(cancel <-chan struct{}, input *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	r.counts.add(reqOther)
	return r.RawFileSystem.SetAttr(cancel, input, out)
}

func (r *requestFS) Lseek(cancel <-chan struct{}, in *fuse.LseekIn, out *fuse.LseekOut) fuse.Status {
	r.counts.add(reqOther)
	return r.RawFileSystem.Lseek(cancel, in, out)
}

func (r *requestFS) Statx(cancel <-chan struct{}, input *fuse.StatxIn, out *fuse.StatxOut) fuse.Status {
	r.counts.add(reqOther)
	return r.RawFileSystem.Statx(cancel, input, out)
}

func (r *requestFS) Fsync(cancel <-chan struct{}, input *fuse.FsyncIn) fuse.Status {
	r.counts.add(reqOther)
	return r.RawFileSystem.Fsync(cancel, input)
}

func (r *requestFS) FsyncDir(cancel <-chan struct{}, input *fuse.FsyncIn) fuse.Status {
	r.counts.add(reqOther)
	return r.RawFileSystem.FsyncDir(cancel, input)
}

func (r *requestFS) Ioctl(cancel <-chan struct{}, input *fuse.IoctlIn, inbuf []byte, output *fuse.IoctlOut, outbuf []byte) fuse.Status {
	r.counts.add(reqOther)
	return r.RawFileSystem.Ioctl(cancel, input, inbuf, output, outbuf)
}

func (r *requestFS) GetLk(cancel <-chan struct{}, input *fuse.LkIn, out *fuse.LkOut) fuse.Status {
	r.counts.add(reqOther)
	return r.RawFileSystem.GetLk(cancel, input, out)
}

func (r *requestFS) SetLk(cancel <-chan struct{}, input *fuse.LkIn) fuse.Status {
	r.counts.add(reqOther)
	return r.RawFileSystem.SetLk(cancel, input)
}

func (r *requestFS) SetLkw(cancel <-chan struct{}, input *fuse.LkIn) fuse.Status {
	r.counts.add(reqOther)
	return r.RawFileSystem.SetLkw(cancel, input)
}

func (r *requestFS) SetXAttr(cancel <-chan struct{}, input *fuse.SetXAttrIn, attr string, data []byte) fuse.Status {
	r.counts.add(reqOther)
	return r.RawFileSystem.SetXAttr(cancel, input, attr, data)
}

func (r *requestFS) RemoveXAttr(cancel <-chan struct{}, header *fuse.InHeader, attr string) fuse.Status {
	r.counts.add(reqOther)
	return r.RawFileSystem.RemoveXAttr(cancel, header, attr)
}

func (r *requestFS) Create(cancel <-chan struct{}, input *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	r.counts.add(reqOther)
	return r.RawFileSystem.Create(cancel, input, name, out)
}

func (r *requestFS) Mknod(cancel <-chan struct{}, input *fuse.MknodIn, name string, out *fuse.EntryOut) fuse.Status {
	r.counts.add(reqOther)
	return r.RawFileSystem.Mknod(cancel, input, name, out)
}

func (r *requestFS) Mkdir(cancel <-chan struct{}, input *fuse.MkdirIn, name string, out *fuse.EntryOut) fuse.Status {
	r.counts.add(reqOther)
	return r.RawFileSystem.Mkdir(cancel, input, name, out)
}

func (r *requestFS) Unlink(cancel <-chan struct{}, header *fuse.InHeader, name string) fuse.Status {
	r.counts.add(reqOther)
	return r.RawFileSystem.Unlink(cancel, header, name)
}

func (r *requestFS) Rmdir(cancel <-chan struct{}, header *fuse.InHeader, name string) fuse.Status {
	r.counts.add(reqOther)
	return r.RawFileSystem.Rmdir(cancel, header, name)
}

func (r *requestFS) Rename(cancel <-chan struct{}, input *fuse.RenameIn, oldName, newName string) fuse.Status {
	r.counts.add(reqOther)
	return r.RawFileSystem.Rename(cancel, input, oldName, newName)
}

func (r *requestFS) Link(cancel <-chan struct{}, input *fuse.LinkIn, filename string, out *fuse.EntryOut) fuse.Status {
	r.counts.add(reqOther)
	return r.RawFileSystem.Link(cancel, input, filename, out)
}

func (r *requestFS) Symlink(cancel <-chan struct{}, header *fuse.InHeader, pointedTo, linkName string, out *fuse.EntryOut) fuse.Status {
	r.counts.add(reqOther)
	return r.RawFileSystem.Symlink(cancel, header, pointedTo, linkName, out)
}

func (r *requestFS) Tmpfile(cancel <-chan struct{}, input *fuse.CreateIn, out *fuse.CreateOut) fuse.Status {
	r.counts.add(reqOther)
	return r.RawFileSystem.Tmpfile(cancel, input, out)
}

func (r *requestFS) Write(cancel <-chan struct{}, input *fuse.WriteIn, data []byte) (uint32, fuse.Status) {
	r.counts.add(reqOther)
	return r.RawFileSystem.Write(cancel, input, data)
}

func (r *requestFS) Writev(cancel <-chan struct{}, input *fuse.WriteIn, data [][]byte) (uint32, fuse.Status) {
	r.counts.add(reqOther)
	return r.RawFileSystem.Writev(cancel, input, data)
}

func (r *requestFS) CopyFileRange(cancel <-chan struct{}, input *fuse.CopyFileRangeIn) (uint32, fuse.Status) {
	r.counts.add(reqOther)
	return r.RawFileSystem.CopyFileRange(cancel, input)
}

func (r *requestFS) Fallocate(cancel <-chan struct{}, input *fuse.FallocateIn) fuse.Status {
	r.counts.add(reqOther)
	return r.RawFileSystem.Fallocate(cancel, input)
}
