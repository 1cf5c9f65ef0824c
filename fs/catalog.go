package fs

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// A catalog mount serves many images in one FUSE mount (imgfs serve): its
// directories are made up on lookup by a Catalog, which attaches an
// image's merged tree where a name resolves to an image, answers
// symbolic links (a tag to its digest) and generated files (status). The
// images' nodes are the same as a single mount's, with inode numbers moved
// to a range of their own.

// Catalog makes up the directories of a catalog mount. Its methods are
// called from FUSE requests, concurrently.
type Catalog interface {
	// Lookup resolves name in the catalog directory dir (the path
	// components from the mount's root). An error that wraps a
	// syscall.Errno is answered with it; any other with ENOENT.
	Lookup(ctx context.Context, dir []string, name string) (CatalogEntry, error)
	// List is what the directory holds now, for readdir.
	List(dir []string) []CatalogEntry
}

// CatalogKind is what a catalog name is.
type CatalogKind int

const (
	CatalogDir   CatalogKind = iota // a directory of the catalog
	CatalogImage                    // an image's root directory
	CatalogLink                     // a symbolic link
	CatalogFile                     // a read-only file generated when opened
)

// CatalogEntry is one name of a catalog directory.
type CatalogEntry struct {
	Name    string
	Kind    CatalogKind
	Image   *ServedImage  // CatalogImage
	Target  string        // CatalogLink
	Content func() []byte // CatalogFile: made at each open and getattr
	// TTL is how long the kernel may keep the name and its attributes; 0:
	// the mount's (an hour); negative: not at all (ask every time).
	TTL time.Duration
}

// ServedImage is an image attached in a catalog.
type ServedImage struct {
	Tree    *Tree
	Readers []ContentReader
	// InoBase is added to the tree's inode numbers: each image of a mount
	// needs a range of its own (trees number from RootIno). Keep it below
	// 1<<62 (catalog nodes use the numbers above).
	InoBase  uint64
	Activity *Activity // told of opens and use; nil: nobody
}

// Activity is what the kernel does in a served image: files open and the
// time of the last request (lookup, open, read, directory listing), so that
// an idle image can be released.
type Activity struct {
	open atomic.Int64
	last atomic.Int64 // unix nanoseconds
}

func (a *Activity) touch() {
	if a != nil {
		a.last.Store(time.Now().UnixNano())
	}
}

func (a *Activity) opened() {
	if a != nil {
		a.open.Add(1)
		a.touch()
	}
}

func (a *Activity) released() {
	if a != nil {
		a.open.Add(-1)
		a.touch()
	}
}

// Touch records a use now.
func (a *Activity) Touch() { a.touch() }

// OpenFiles is the number of files open in the image.
func (a *Activity) OpenFiles() int64 { return a.open.Load() }

// LastUse is when the image was last used.
func (a *Activity) LastUse() time.Time { return time.Unix(0, a.last.Load()) }

// catalogMount is what the catalog nodes of one mount share.
type catalogMount struct {
	cat         Catalog
	readTimeout time.Duration
	log         *slog.Logger
	uid, gid    uint32
	started     time.Time
}

// catalogIno is the inode number of a catalog node: a hash of what it is,
// in the top quarter of the range (image trees use the numbers below).
func catalogIno(parts ...string) uint64 {
	h := fnv.New64a()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return 3<<62 | h.Sum64()>>2
}

// catalogDir is a directory of the catalog.
type catalogDir struct {
	gofs.Inode
	m    *catalogMount
	path []string
}

var (
	_ gofs.NodeLookuper  = (*catalogDir)(nil)
	_ gofs.NodeReaddirer = (*catalogDir)(nil)
	_ gofs.NodeGetattrer = (*catalogDir)(nil)
	_ gofs.NodeStatfser  = (*catalogDir)(nil)
)

func (d *catalogDir) dirAttr(a *fuse.Attr) {
	a.Mode = syscall.S_IFDIR | 0o555
	a.Nlink = 2
	a.Uid, a.Gid = d.m.uid, d.m.gid
	t := uint64(d.m.started.Unix())
	a.Atime, a.Mtime, a.Ctime = t, t, t
}

func (d *catalogDir) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	d.dirAttr(&out.Attr)
	out.Attr.Ino = d.StableAttr().Ino
	return 0
}

func (d *catalogDir) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	out.Bsize, out.Frsize, out.NameLen = 4096, 4096, 255
	return 0
}

// noCache is the smallest timeout there is: the kernel keeps nothing.
const noCache = time.Nanosecond

func ttl(d time.Duration) time.Duration {
	if d < 0 {
		return noCache
	}
	return d
}

func (d *catalogDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	e, err := d.m.cat.Lookup(ctx, d.path, name)
	if err != nil {
		// A name that fails now may work later (a tag pushed, a registry
		// back): the kernel must not remember that it failed.
		out.SetEntryTimeout(noCache)
		var errno syscall.Errno
		if errors.As(err, &errno) {
			return nil, errno
		}
		return nil, syscall.ENOENT
	}
	return d.attach(ctx, e, out)
}

// attach makes the inode of a catalog entry.
func (d *catalogDir) attach(ctx context.Context, e CatalogEntry, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if t := ttl(e.TTL); t > 0 {
		out.SetEntryTimeout(t)
		out.SetAttrTimeout(t)
	}
	path := append(append([]string{}, d.path...), e.Name)
	switch e.Kind {
	case CatalogDir:
		child := &catalogDir{m: d.m, path: path}
		ino := catalogIno(append([]string{"dir"}, path...)...)
		child.dirAttr(&out.Attr)
		out.Attr.Ino = ino
		return d.NewInode(ctx, child, gofs.StableAttr{Mode: syscall.S_IFDIR, Ino: ino}), 0
	case CatalogImage:
		img := e.Image
		if img == nil || img.Tree == nil {
			return nil, syscall.EIO
		}
		img.Tree.Freeze()
		ms := &mountState{tree: img.Tree, readers: img.Readers, readTimeout: d.m.readTimeout, log: d.m.log,
			inoBase: img.InoBase, activity: img.Activity}
		root := img.Tree.Root()
		fillAttr(root, &out.Attr)
		out.Attr.Ino += img.InoBase
		img.Activity.touch()
		return d.NewInode(ctx, &fuseNode{m: ms, node: root}, gofs.StableAttr{Mode: syscall.S_IFDIR, Ino: img.InoBase + root.Ino()}), 0
	case CatalogLink:
		l := &catalogLink{target: e.Target, uid: d.m.uid, gid: d.m.gid, mtime: d.m.started}
		ino := catalogIno(append([]string{"link", e.Target}, path...)...)
		l.attr(&out.Attr)
		out.Attr.Ino = ino
		return d.NewInode(ctx, l, gofs.StableAttr{Mode: syscall.S_IFLNK, Ino: ino}), 0
	case CatalogFile:
		f := &catalogFile{content: e.Content, uid: d.m.uid, gid: d.m.gid}
		ino := catalogIno(append([]string{"file"}, path...)...)
		f.attr(&out.Attr)
		out.Attr.Ino = ino
		out.SetEntryTimeout(noCache)
		out.SetAttrTimeout(noCache)
		return d.NewInode(ctx, f, gofs.StableAttr{Mode: syscall.S_IFREG, Ino: ino}), 0
	}
	return nil, syscall.EIO
}

func (d *catalogDir) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	var out []fuse.DirEntry
	for _, e := range d.m.cat.List(d.path) {
		path := append(append([]string{}, d.path...), e.Name)
		de := fuse.DirEntry{Name: e.Name}
		switch e.Kind {
		case CatalogDir:
			de.Mode, de.Ino = syscall.S_IFDIR, catalogIno(append([]string{"dir"}, path...)...)
		case CatalogImage:
			if e.Image == nil {
				continue
			}
			de.Mode, de.Ino = syscall.S_IFDIR, e.Image.InoBase+RootIno
		case CatalogLink:
			de.Mode, de.Ino = syscall.S_IFLNK, catalogIno(append([]string{"link", e.Target}, path...)...)
		case CatalogFile:
			de.Mode, de.Ino = syscall.S_IFREG, catalogIno(append([]string{"file"}, path...)...)
		}
		out = append(out, de)
	}
	return gofs.NewListDirStream(out), 0
}

// catalogLink is a symbolic link of the catalog.
type catalogLink struct {
	gofs.Inode
	target   string
	uid, gid uint32
	mtime    time.Time
}

var (
	_ gofs.NodeReadlinker = (*catalogLink)(nil)
	_ gofs.NodeGetattrer  = (*catalogLink)(nil)
)

func (l *catalogLink) attr(a *fuse.Attr) {
	a.Mode = syscall.S_IFLNK | 0o777
	a.Nlink = 1
	a.Size = uint64(len(l.target))
	a.Uid, a.Gid = l.uid, l.gid
	t := uint64(l.mtime.Unix())
	a.Atime, a.Mtime, a.Ctime = t, t, t
}

func (l *catalogLink) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	return []byte(l.target), 0
}

func (l *catalogLink) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	l.attr(&out.Attr)
	out.Attr.Ino = l.StableAttr().Ino
	return 0
}

// catalogFile is a read-only file whose content is made when it is opened
// (status files).
type catalogFile struct {
	gofs.Inode
	content  func() []byte
	uid, gid uint32
}

var (
	_ gofs.NodeOpener    = (*catalogFile)(nil)
	_ gofs.NodeReader    = (*catalogFile)(nil)
	_ gofs.NodeGetattrer = (*catalogFile)(nil)
)

func (f *catalogFile) attr(a *fuse.Attr) {
	a.Mode = syscall.S_IFREG | 0o444
	a.Nlink = 1
	a.Size = uint64(len(f.content()))
	a.Uid, a.Gid = f.uid, f.gid
	t := uint64(time.Now().Unix())
	a.Atime, a.Mtime, a.Ctime = t, t, t
}

func (f *catalogFile) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	f.attr(&out.Attr)
	out.Attr.Ino = f.StableAttr().Ino
	out.SetTimeout(noCache)
	return 0
}

// fileSnapshot is an open status file: its content as of the open.
type fileSnapshot struct{ data []byte }

func (f *catalogFile) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY {
		return nil, 0, syscall.EROFS
	}
	// Direct I/O: the size the kernel saw at getattr may have changed.
	return &fileSnapshot{data: f.content()}, fuse.FOPEN_DIRECT_IO, 0
}

func (f *catalogFile) Read(ctx context.Context, fh gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	s, ok := fh.(*fileSnapshot)
	if !ok {
		return nil, syscall.EBADF
	}
	if off >= int64(len(s.data)) {
		return fuse.ReadResultData(nil), 0
	}
	return fuse.ReadResultData(s.data[off:min(int64(len(s.data)), off+int64(len(dest)))]), 0
}

// CatalogMount is a live catalog mount.
type CatalogMount struct {
	*Mounted
	root *catalogDir
}

// Forget tells the kernel to drop the name at path (an image released, a
// tag moved): the next lookup asks the catalog again. Failures (nothing
// cached) are ignored.
func (c *CatalogMount) Forget(dir []string, name string) {
	n := c.root.EmbeddedInode()
	for _, p := range dir {
		if n = n.GetChild(p); n == nil {
			return
		}
	}
	n.NotifyEntry(name)
	n.NotifyContent(0, 0) // its listing too
}

// MountCatalog serves cat read-only at dir until Unmount, or until ctx is
// cancelled. Options are Mount's; the kernel is never told that the mount
// has no extended attributes (images with and without share it), and the
// catalog's own directories belong to the mounting user, mode 0555.
func MountCatalog(ctx context.Context, dir string, cat Catalog, opts MountOptions) (*CatalogMount, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("mount %s: %w", dir, err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	cm := &catalogMount{cat: cat, readTimeout: orDefault(opts.ReadTimeout, DefaultReadTimeout), log: log,
		uid: uint32(os.Geteuid()), gid: uint32(os.Getegid()), started: time.Now()}
	if opts.ReadTimeout < 0 {
		cm.readTimeout = 0
	}
	root := &catalogDir{m: cm}
	if err := CheckMountPoint(dir, opts.NonEmpty); err != nil {
		return nil, err
	}
	source := opts.Source
	if source == "" {
		source = "imgfs-serve"
	}
	entryTimeout := orDefault(opts.EntryTimeout, time.Hour)
	attrTimeout := orDefault(opts.AttrTimeout, time.Hour)
	maxRead := opts.MaxReadSize
	if maxRead <= 0 {
		maxRead = 1 << 20
	}
	mountOpts := []string{"ro", "nosuid", "nodev"}
	if opts.DefaultPermissions || opts.AllowOther {
		mountOpts = append(mountOpts, "default_permissions")
	}
	gopts := &gofs.Options{
		MountOptions: fuse.MountOptions{
			AllowOther:           opts.AllowOther,
			Options:              mountOpts,
			FsName:               source,
			Name:                 "imgfs",
			MaxWrite:             maxRead,
			MaxReadAhead:         maxRead,
			MaxBackground:        64,
			DirectMount:          opts.Method == MountDirect || opts.Method == MountAuto && os.Geteuid() == 0,
			DirectMountStrict:    opts.Method == MountDirect,
			Debug:                opts.Debug,
			Logger:               slog.NewLogLogger(log.Handler(), fuseLogLevel(ctx, log, opts.Debug)),
			EnableSymlinkCaching: true,
		},
		EntryTimeout:    &entryTimeout,
		AttrTimeout:     &attrTimeout,
		NegativeTimeout: &entryTimeout, // inside images; catalog names are never cached negative
		NullPermissions: true,
		RootStableAttr:  &gofs.StableAttr{Ino: RootIno},
		Logger:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	mt := &Mounted{dir: dir, stopped: make(chan struct{}), requests: new(requestCounters), xattrs: true}
	rawFS := newRequestFS(gofs.NewNodeFS(root, gopts), mt.requests, false)
	server, err := fuse.NewServer(rawFS, dir, &gopts.MountOptions)
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", dir, err)
	}
	go server.Serve()
	if err := server.WaitMount(); err != nil {
		return nil, fmt.Errorf("mount %s: %w", dir, err)
	}
	mt.server = server
	if opts.KernelReadAheadKB >= 0 {
		raiseKernelReadahead(dir, orDefaultInt(opts.KernelReadAheadKB, defaultKernelReadAheadKB), log)
	}
	go func() {
		server.Wait()
		close(mt.stopped)
	}()
	if ctx.Done() != nil {
		go func() {
			select {
			case <-ctx.Done():
				if err := mt.Unmount(); err != nil {
					log.Error("unmount after cancel", "dir", dir, "err", err)
				}
			case <-mt.stopped:
			}
		}()
	}
	return &CatalogMount{Mounted: mt, root: root}, nil
}

// CatalogPath joins catalog path components for messages.
func CatalogPath(dir []string, name string) string {
	return "/" + strings.Join(append(append([]string{}, dir...), name), "/")
}
