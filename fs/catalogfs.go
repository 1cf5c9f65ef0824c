package fs

import (
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// catalogFS answers a catalog mount's FUSE requests through go-fuse's raw
// API. It owns the node IDs, which are also the inode numbers the kernel
// sees:
//
//   - RootIno (1): the catalog's root directory;
//   - slot<<slotBits + inode number: an inode of the image attached in
//     slot (1 ≤ slot ≤ maxSlot). Its requests go to the image's treeFS,
//     which answers as in a mount of the image alone (no per-inode state),
//     and counts the node IDs it hands out;
//   - catalogIDs and above: the catalog's own directories, links and
//     files, a hash of what they are (kind, path, link target): a name
//     keeps its number while it means the same, and a tag whose target
//     moved becomes a new inode. These are kept, with the kernel's lookup
//     count, while the kernel knows them.
//
// An image is attached (given a slot) when first looked up or listed. When
// the catalog releases it (idle), the kernel is told to forget its name;
// its slot stays while the kernel still holds nodes of it, answered from
// its tree, and is freed once the kernel has forgotten every node ID it
// was given. A slot is never reused, so a node ID the kernel still holds
// never names another image's inode.
//
// A failed catalog lookup is answered with an error, never with a negative
// entry, so the kernel keeps no record of it and asks again next time. The
// catalog's listings change as images are opened: a lookup that adds a
// name tells the kernel to drop its cached listing of the directory (the
// mount answers OPENDIR with ENOSYS, see requestFS, so the kernel caches
// every listing), as does a release.
type catalogFS struct {
	readOnlyFS

	cat      Catalog
	image    treeFSOptions // of every image (idBase and refs aside)
	log      *slog.Logger
	uid, gid uint32
	started  time.Time
	server   atomic.Pointer[fuse.Server]

	// slots holds the attached images by slot. It is replaced whole,
	// under mu, when an image is attached or detached, so that requests to
	// images read it without a lock.
	slots atomic.Pointer[map[uint64]*servedFS]

	mu       sync.Mutex
	nodes    map[uint64]*catalogNode // by node ID: the root, and what the kernel was given
	nextSlot uint64
	files    map[uint64][]byte // open status files by handle: their content when opened
	nextFile uint64
}

// Node ID layout (see catalogFS).
const (
	slotBits   = 40 // a tree has fewer than 1<<40 inodes
	maxSlot    = 1<<(62-slotBits) - 1
	catalogIDs = 3 << 62
)

// servedFS is an image attached in a catalog mount.
type servedFS struct {
	*treeFS
	img      *ServedImage
	slot     uint64
	refs     atomic.Int64 // node IDs given to the kernel and not forgotten
	released atomic.Bool  // set under catalogFS.mu
}

// catalogNode is a directory, link or file of the catalog itself.
type catalogNode struct {
	id      uint64
	key     string      // what it is (kind, path, target): tells a hash collision
	kind    CatalogKind // CatalogDir, CatalogLink or CatalogFile
	path    []string    // from the root; empty for the root
	target  string      // CatalogLink
	content func() []byte
	lookups uint64 // the kernel's lookup count, under catalogFS.mu
}

func newCatalogFS(cat Catalog, image treeFSOptions) *catalogFS {
	c := &catalogFS{
		readOnlyFS: readOnlyFS{fuse.NewDefaultRawFileSystem()},
		cat:        cat,
		image:      image,
		log:        image.log,
		uid:        uint32(os.Geteuid()),
		gid:        uint32(os.Getegid()),
		started:    time.Now(),
		nodes:      map[uint64]*catalogNode{RootIno: {id: RootIno, key: "dir", kind: CatalogDir}},
		files:      map[uint64][]byte{},
	}
	c.slots.Store(&map[uint64]*servedFS{})
	return c
}

func (c *catalogFS) String() string { return "imgfs-serve" }

func (c *catalogFS) Init(s *fuse.Server) { c.server.Store(s) }

// served is the attached image whose range holds id, if any.
func (c *catalogFS) served(id uint64) *servedFS {
	if id>>62 != 0 {
		return nil
	}
	return (*c.slots.Load())[id>>slotBits]
}

// node is the catalog node with node ID id, or nil.
func (c *catalogFS) node(id uint64) *catalogNode {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[id]
}

// catalogParts says what a catalog node is; its node ID is their hash.
func catalogParts(kind CatalogKind, path []string, target string) []string {
	switch kind {
	case CatalogLink:
		return append([]string{"link", target}, path...)
	case CatalogFile:
		return append([]string{"file"}, path...)
	}
	return append([]string{"dir"}, path...)
}

// catalogIno is the node ID of a catalog node: a hash of what it is, in
// the top quarter of the range (images use the numbers below).
func catalogIno(parts ...string) uint64 {
	if len(parts) == 1 && parts[0] == "dir" {
		return RootIno
	}
	h := fnv.New64a()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	id := catalogIDs | h.Sum64()>>2
	if id == ^uint64(0) { // go-fuse's own (its poll hack)
		id--
	}
	return id
}

// dirID is the node ID of the catalog directory at path.
func dirID(path []string) uint64 { return catalogIno(catalogParts(CatalogDir, path, "")...) }

// remember records that the kernel is given the catalog node of kind at
// path (one more lookup), and reports whether it is new to the kernel.
func (c *catalogFS) remember(kind CatalogKind, path []string, target string, content func() []byte) (*catalogNode, bool, error) {
	parts := catalogParts(kind, path, target)
	id := catalogIno(parts...)
	key := strings.Join(parts, "\x00")
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.nodes[id]
	switch {
	case n == nil:
		n = &catalogNode{id: id, key: key, kind: kind, path: path, target: target, content: content}
		c.nodes[id] = n
	case n.key != key:
		return nil, false, fmt.Errorf("node ID %#x of %q taken by %q", id, key, n.key)
	}
	n.lookups++
	return n, n.lookups == 1, nil
}

// attach gives img a slot, unless it has one; it fails for an image
// released.
func (c *catalogFS) attach(img *ServedImage) (*servedFS, bool, error) {
	if img == nil || img.Tree == nil {
		return nil, false, errors.New("catalog: image without a tree")
	}
	c.mu.Lock()
	s, released := img.attached, img.released
	c.mu.Unlock()
	switch {
	case released:
		return nil, false, syscall.ESTALE
	case s != nil:
		return s, false, nil
	}
	// The inode table is built outside the lock: O(entries).
	img.Tree.Freeze()
	s = &servedFS{img: img}
	o := c.image
	o.refs = &s.refs
	o.copies = img.FileCopies
	tfs := newTreeFS(img.Tree, img.Readers, o)
	if tfs.pt != nil {
		tfs.pt.server.Store(c.server.Load()) // the mount's: Init came before any image
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case img.released:
		return nil, false, syscall.ESTALE
	case img.attached != nil: // attached meanwhile, by another request
		return img.attached, false, nil
	case c.nextSlot >= maxSlot:
		return nil, false, errors.New("catalog: every range of node IDs has been used")
	}
	c.nextSlot++
	s.slot = c.nextSlot
	tfs.idBase = s.slot << slotBits
	s.treeFS = tfs
	img.attached = s
	slots := maps.Clone(*c.slots.Load())
	slots[s.slot] = s
	c.slots.Store(&slots)
	return s, true, nil
}

// attachedOf is img's attachment, if any.
func (c *catalogFS) attachedOf(img *ServedImage) *servedFS {
	c.mu.Lock()
	defer c.mu.Unlock()
	return img.attached
}

// drainCopies finishes the file copies in flight of every attached image
// (the mount has ended).
func (c *catalogFS) drainCopies() {
	for _, s := range *c.slots.Load() {
		if s.pt != nil {
			s.pt.drain()
			s.pt.closeFiles()
		}
	}
}

// release marks img released, and frees its slot if the kernel holds
// nothing of it.
func (c *catalogFS) release(img *ServedImage) {
	c.mu.Lock()
	defer c.mu.Unlock()
	img.released = true
	if s := img.attached; s != nil {
		s.released.Store(true)
		c.detachIfForgotten(s)
	}
}

// detachIfForgotten frees the slot of a released image whose node IDs the
// kernel has all forgotten. c.mu is held.
func (c *catalogFS) detachIfForgotten(s *servedFS) {
	slots := *c.slots.Load()
	if s.refs.Load() > 0 || slots[s.slot] != s {
		return
	}
	slots = maps.Clone(slots)
	delete(slots, s.slot)
	c.slots.Store(&slots)
}

// forgetEntry tells the kernel to drop the name dir/name and its listing of
// dir.
func (c *catalogFS) forgetEntry(dir []string, name string) {
	id := dirID(dir)
	srv := c.server.Load()
	if srv == nil || c.node(id) == nil {
		return // the kernel has nothing under dir
	}
	srv.EntryNotify(id, name) // ENOENT when the kernel has no such name: fine
	srv.InodeNotify(id, 0, 0)
}

// listingChanged tells the kernel to drop its cached listing of the
// catalog directory id. It is called from the LOOKUP that added a name, so
// that the listing is dropped before the reply: a listing asked for after
// the lookup shows the name. (An inode invalidation takes no lock the
// kernel holds while it waits for the LOOKUP: not the directory's, and the
// pages of a cached listing are only locked while copied.)
func (c *catalogFS) listingChanged(id uint64) {
	if srv := c.server.Load(); srv != nil {
		srv.InodeNotify(id, 0, 0)
	}
}

func (c *catalogFS) Lookup(cancel <-chan struct{}, header *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	if s := c.served(header.NodeId); s != nil {
		s.img.Activity.touch()
		return s.Lookup(cancel, header, name, out)
	}
	d := c.node(header.NodeId)
	switch {
	case d == nil:
		return errStale
	case d.kind != CatalogDir:
		return fuse.ENOTDIR
	}
	e, err := c.cat.Lookup(&fuse.Context{Caller: header.Caller, Cancel: cancel}, d.path, name)
	if err != nil {
		// A name that fails now may work later (a tag pushed, a registry
		// back): an error, unlike a negative entry, leaves the kernel no
		// record of the name.
		var errno syscall.Errno
		if errors.As(err, &errno) && errno != 0 {
			return fuse.Status(errno)
		}
		return fuse.ENOENT
	}
	entryTimeout, attrTimeout := c.image.entryTimeout, c.image.attrTimeout
	if e.TTL != 0 {
		entryTimeout, attrTimeout = max(e.TTL, 0), max(e.TTL, 0)
	}
	path := append(slices.Clip(d.path), name)
	if e.Kind == CatalogImage {
		return c.lookupImage(d, name, e.Image, entryTimeout, attrTimeout, out)
	}
	if e.Kind != CatalogDir && e.Kind != CatalogLink && e.Kind != CatalogFile {
		return fuse.EIO
	}
	n, isNew, err := c.remember(e.Kind, path, e.Target, e.Content)
	if err != nil {
		c.log.Error("catalog lookup", "path", CatalogPath(d.path, name), "err", err)
		return fuse.EIO
	}
	if isNew {
		c.listingChanged(d.id)
	}
	if n.kind == CatalogFile { // made when read: never cached
		entryTimeout, attrTimeout = 0, 0
	}
	out.NodeId = n.id
	out.Generation = 0
	c.fillAttr(n, &out.Attr)
	out.SetEntryTimeout(entryTimeout)
	out.SetAttrTimeout(attrTimeout)
	return fuse.OK
}

// lookupImage answers the lookup of an image's root, name in the catalog
// directory d.
func (c *catalogFS) lookupImage(d *catalogNode, name string, img *ServedImage, entryTimeout, attrTimeout time.Duration, out *fuse.EntryOut) fuse.Status {
	s, isNew, err := c.attach(img)
	if errno := syscall.Errno(0); errors.As(err, &errno) {
		return fuse.Status(errno) // ESTALE, released meanwhile: the kernel looks up again
	} else if err != nil {
		c.log.Error("catalog lookup", "path", CatalogPath(d.path, name), "err", err)
		return fuse.EIO
	}
	s.img.Activity.touch()
	// The root's node ID is counted under the lock that release takes: an
	// image released from now on keeps its slot until it is forgotten.
	c.mu.Lock()
	released := s.released.Load()
	if !released {
		s.fillEntry(s.tree.Root(), out)
	}
	c.mu.Unlock()
	if released {
		return errStale
	}
	out.SetEntryTimeout(entryTimeout)
	out.SetAttrTimeout(attrTimeout)
	if isNew {
		c.listingChanged(d.id)
	}
	return fuse.OK
}

// Forget takes back nlookup references to a node ID.
func (c *catalogFS) Forget(nodeid, nlookup uint64) {
	if s := c.served(nodeid); s != nil {
		if s.refs.Add(-int64(nlookup)) <= 0 && s.released.Load() {
			c.mu.Lock()
			c.detachIfForgotten(s)
			c.mu.Unlock()
		}
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.nodes[nodeid]
	if n == nil || n.id == RootIno {
		return
	}
	n.lookups -= min(n.lookups, nlookup)
	if n.lookups == 0 {
		delete(c.nodes, nodeid)
	}
}

// fillAttr writes a catalog node's attributes.
func (c *catalogFS) fillAttr(n *catalogNode, a *fuse.Attr) {
	*a = fuse.Attr{Ino: n.id, Nlink: 1, Owner: fuse.Owner{Uid: c.uid, Gid: c.gid}}
	t := uint64(c.started.Unix())
	switch n.kind {
	case CatalogDir:
		a.Mode, a.Nlink = syscall.S_IFDIR|0o555, 2
	case CatalogLink:
		a.Mode, a.Size = syscall.S_IFLNK|0o777, uint64(len(n.target))
	case CatalogFile:
		a.Mode, a.Size = syscall.S_IFREG|0o444, uint64(len(n.content()))
		t = uint64(time.Now().Unix())
	}
	a.Atime, a.Mtime, a.Ctime = t, t, t
}

func (c *catalogFS) GetAttr(cancel <-chan struct{}, input *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	if s := c.served(input.NodeId); s != nil {
		return s.GetAttr(cancel, input, out)
	}
	n := c.node(input.NodeId)
	if n == nil {
		return errStale
	}
	c.fillAttr(n, &out.Attr)
	if n.kind == CatalogFile {
		out.SetTimeout(0)
	} else {
		out.SetTimeout(c.image.attrTimeout)
	}
	return fuse.OK
}

func (c *catalogFS) Access(cancel <-chan struct{}, input *fuse.AccessIn) fuse.Status {
	if s := c.served(input.NodeId); s != nil {
		return s.Access(cancel, input)
	}
	n := c.node(input.NodeId)
	switch {
	case n == nil:
		return errStale
	case input.Mask&unix.W_OK != 0:
		return fuse.EROFS
	case input.Mask&unix.X_OK != 0 && n.kind != CatalogDir:
		return fuse.EACCES
	}
	return fuse.OK
}

func (c *catalogFS) Readlink(cancel <-chan struct{}, header *fuse.InHeader) ([]byte, fuse.Status) {
	if s := c.served(header.NodeId); s != nil {
		return s.Readlink(cancel, header)
	}
	n := c.node(header.NodeId)
	switch {
	case n == nil:
		return nil, errStale
	case n.kind != CatalogLink:
		return nil, fuse.EINVAL
	}
	return []byte(n.target), fuse.OK
}

func (c *catalogFS) StatFs(cancel <-chan struct{}, header *fuse.InHeader, out *fuse.StatfsOut) fuse.Status {
	if s := c.served(header.NodeId); s != nil {
		return s.StatFs(cancel, header, out)
	}
	out.Bsize, out.Frsize, out.NameLen = 4096, 4096, 255
	return fuse.OK
}

func (c *catalogFS) GetXAttr(cancel <-chan struct{}, header *fuse.InHeader, attr string, dest []byte) (uint32, fuse.Status) {
	if s := c.served(header.NodeId); s != nil {
		return s.GetXAttr(cancel, header, attr, dest)
	}
	if c.node(header.NodeId) == nil {
		return 0, errStale
	}
	return 0, fuse.ENOATTR
}

func (c *catalogFS) ListXAttr(cancel <-chan struct{}, header *fuse.InHeader, dest []byte) (uint32, fuse.Status) {
	if s := c.served(header.NodeId); s != nil {
		return s.ListXAttr(cancel, header, dest)
	}
	if c.node(header.NodeId) == nil {
		return 0, errStale
	}
	return 0, fuse.OK
}

// Open counts the files open in an image (Activity); a status file is
// read from a snapshot of its content made here.
func (c *catalogFS) Open(cancel <-chan struct{}, input *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	if s := c.served(input.NodeId); s != nil {
		st := s.Open(cancel, input, out)
		if st == fuse.OK {
			s.img.Activity.opened()
		}
		return st
	}
	n := c.node(input.NodeId)
	switch {
	case n == nil:
		return errStale
	case n.kind == CatalogDir:
		return fuse.Status(syscall.EISDIR)
	case n.kind != CatalogFile:
		return fuse.EINVAL
	case input.Flags&syscall.O_ACCMODE != syscall.O_RDONLY || input.Flags&syscall.O_TRUNC != 0:
		return fuse.EROFS
	}
	data := n.content()
	c.mu.Lock()
	c.nextFile++
	out.Fh = c.nextFile
	c.files[out.Fh] = data
	c.mu.Unlock()
	// Direct I/O: the size the kernel saw at lookup may have changed.
	out.OpenFlags = fuse.FOPEN_DIRECT_IO
	return fuse.OK
}

func (c *catalogFS) Read(cancel <-chan struct{}, input *fuse.ReadIn, dest []byte) (fuse.ReadResult, fuse.Status) {
	if s := c.served(input.NodeId); s != nil {
		s.img.Activity.touch()
		return s.Read(cancel, input, dest)
	}
	c.mu.Lock()
	data, ok := c.files[input.Fh]
	c.mu.Unlock()
	if !ok {
		return nil, fuse.EBADF
	}
	if input.Offset >= uint64(len(data)) {
		return fuse.ReadResultData(nil), fuse.OK
	}
	end := min(uint64(len(data)), input.Offset+uint64(len(dest)))
	return fuse.ReadResultData(data[input.Offset:end]), fuse.OK
}

func (c *catalogFS) Release(cancel <-chan struct{}, input *fuse.ReleaseIn) {
	if s := c.served(input.NodeId); s != nil {
		s.img.Activity.released()
		s.Release(cancel, input)
		return
	}
	c.mu.Lock()
	delete(c.files, input.Fh)
	c.mu.Unlock()
}

func (c *catalogFS) Flush(cancel <-chan struct{}, input *fuse.FlushIn) fuse.Status { return fuse.OK }

func (c *catalogFS) Fsync(cancel <-chan struct{}, input *fuse.FsyncIn) fuse.Status { return fuse.OK }

// OpenDir is only asked by kernels without NO_OPENDIR_SUPPORT (requestFS
// answers it otherwise). Catalog listings change: not cached then.
func (c *catalogFS) OpenDir(cancel <-chan struct{}, input *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	if s := c.served(input.NodeId); s != nil {
		return s.OpenDir(cancel, input, out)
	}
	n := c.node(input.NodeId)
	switch {
	case n == nil:
		return errStale
	case n.kind != CatalogDir:
		return fuse.ENOTDIR
	}
	out.Fh, out.OpenFlags = 0, 0
	return fuse.OK
}

func (c *catalogFS) ReleaseDir(input *fuse.ReleaseIn) {}

func (c *catalogFS) FsyncDir(cancel <-chan struct{}, input *fuse.FsyncIn) fuse.Status { return fuse.OK }

func (c *catalogFS) ReadDir(cancel <-chan struct{}, input *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	if s := c.served(input.NodeId); s != nil {
		s.img.Activity.touch()
		return s.ReadDir(cancel, input, out)
	}
	return c.readCatalogDir(input, out, false)
}

func (c *catalogFS) ReadDirPlus(cancel <-chan struct{}, input *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	if s := c.served(input.NodeId); s != nil {
		s.img.Activity.touch()
		return s.ReadDirPlus(cancel, input, out)
	}
	return c.readCatalogDir(input, out, true)
}

// readCatalogDir lists a catalog directory by position, as treeFS does:
// ".", "..", then what the catalog lists now. READDIRPLUS entries carry no
// node (node ID 0): the kernel then only lists the names, and looks up
// those it needs, so that listing a directory opens nothing.
func (c *catalogFS) readCatalogDir(input *fuse.ReadIn, out *fuse.DirEntryList, plus bool) fuse.Status {
	d := c.node(input.NodeId)
	switch {
	case d == nil:
		return errStale
	case d.kind != CatalogDir:
		return fuse.ENOTDIR
	}
	entries := c.cat.List(d.path)
	end := uint64(len(entries)) + 2
	for pos := input.Offset; pos < end; pos++ {
		de := fuse.DirEntry{Off: pos + 1, Mode: syscall.S_IFDIR}
		switch pos {
		case 0:
			de.Name, de.Ino = ".", d.id
		case 1:
			de.Name, de.Ino = "..", dirID(d.path[:max(len(d.path)-1, 0)])
		default:
			e := entries[pos-2]
			de.Name = e.Name
			if de.Mode, de.Ino = c.direntOf(d, e); de.Ino == 0 {
				continue
			}
		}
		var added bool
		if plus {
			added = out.AddDirLookupEntry(de) != nil
		} else {
			added = out.AddDirEntry(de)
		}
		if !added {
			break
		}
	}
	return fuse.OK
}

// direntOf is the type and inode number of a catalog entry of d; 0 for
// one that cannot be listed.
func (c *catalogFS) direntOf(d *catalogNode, e CatalogEntry) (mode uint32, ino uint64) {
	path := append(slices.Clip(d.path), e.Name)
	switch e.Kind {
	case CatalogDir:
		return syscall.S_IFDIR, dirID(path)
	case CatalogImage:
		s, _, err := c.attach(e.Image)
		if err != nil {
			return 0, 0
		}
		return syscall.S_IFDIR, s.idBase + RootIno
	case CatalogLink:
		return syscall.S_IFLNK, catalogIno(catalogParts(CatalogLink, path, e.Target)...)
	case CatalogFile:
		return syscall.S_IFREG, catalogIno(catalogParts(CatalogFile, path, "")...)
	}
	return 0, 0
}
