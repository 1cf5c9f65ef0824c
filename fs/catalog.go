package fs

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"
)

// A catalog mount serves many images in one FUSE mount (imgfs serve): its
// directories are made up on lookup by a Catalog, which attaches an
// image's merged tree where a name resolves to an image, answers
// symbolic links (a tag to its digest) and generated files (status).
// It is served through go-fuse's raw API like a single mount (catalogFS):
// each attached image is a treeFS of its own, in a range of node IDs, so
// requests inside an image cost what they cost in a mount of that image
// alone.

// Catalog makes up the directories of a catalog mount. Its methods are
// called from FUSE requests, concurrently.
type Catalog interface {
	// Lookup resolves name in the catalog directory dir (the path
	// components from the mount's root). An error that wraps a
	// syscall.Errno is answered with it; any other with ENOENT. Failed
	// lookups are never cached by the kernel.
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

// ServedImage is an image attached in a catalog. The mount gives it a
// range of node IDs (and inode numbers) when it is first looked up or
// listed, until CatalogMount.Release.
type ServedImage struct {
	Tree     *Tree
	Readers  []ContentReader
	Activity *Activity // told of opens and use; nil: nobody
	// FileCopies, when set, keeps whole copies of the image's files read
	// to their end for FUSE passthrough, as MountOptions.FileCopies does
	// for a single mount.
	FileCopies FileCopies

	// Under the catalogFS's lock.
	attached *servedFS // nil: not attached (yet)
	released bool
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

// CatalogMount is a live catalog mount.
type CatalogMount struct {
	*Mounted
	fs *catalogFS
}

// Release lets go of an image the catalog no longer serves (released when
// idle), attached at dir/name: the kernel is told to forget the name (the
// next lookup asks the catalog again), and the image's node IDs are
// answered from its tree only until the kernel has forgotten all it was
// given (a process may still have a directory of it as its working
// directory); then its range is freed. The catalog must not return img
// again.
func (c *CatalogMount) Release(dir []string, name string, img *ServedImage) {
	c.fs.release(img)
	c.Forget(dir, name)
	if s := c.fs.attachedOf(img); s != nil && s.pt != nil {
		s.pt.drain() // before the caller closes the image's readers
	}
}

// Forget tells the kernel to drop the name at dir/name and its listing of
// dir (an image released, a tag moved): the next lookup asks the catalog
// again. Nothing happens when the kernel has nothing of dir.
func (c *CatalogMount) Forget(dir []string, name string) {
	c.fs.forgetEntry(dir, name)
}

// MountCatalog serves cat read-only at dir until Unmount, or until ctx is
// cancelled. Options are Mount's (FSName and Subtype aside: the mount is
// of type fuse.imgfs, from "imgfs-serve" unless Source says otherwise);
// the kernel is never told that the mount has no extended attributes
// (images with and without share it), and the catalog's own directories
// belong to the mounting user, mode 0555.
func MountCatalog(ctx context.Context, dir string, cat Catalog, opts MountOptions) (*CatalogMount, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("mount %s: %w", dir, err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	if err := CheckMountPoint(dir, opts.NonEmpty); err != nil {
		return nil, err
	}
	source := opts.Source
	if source == "" {
		source = "imgfs-serve"
	}
	opts.FileCopies = nil // per image: ServedImage.FileCopies
	cfs := newCatalogFS(cat, imageOptions(opts, log))
	mt := &Mounted{dir: dir, stopped: make(chan struct{}), requests: new(requestCounters), xattrs: true, drain: cfs.drainCopies}
	if err := mt.serve(ctx, newRequestFS(cfs, mt.requests, false), fuseMountOptions(ctx, log, opts, source, "imgfs"), opts, log); err != nil {
		return nil, err
	}
	return &CatalogMount{Mounted: mt, fs: cfs}, nil
}

// CatalogPath joins catalog path components for messages.
func CatalogPath(dir []string, name string) string {
	return "/" + strings.Join(append(append([]string{}, dir...), name), "/")
}
