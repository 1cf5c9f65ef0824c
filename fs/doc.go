// Package fs merges an image's layer indexes into one tree (Merge), adds
// what Singularity/Apptainer expects of a container directory
// (Synthesize), and serves the tree read-only over FUSE with go-fuse v2:
// one image at a mount point (Mount), or any number in one mount whose
// directories a Catalog makes up (MountCatalog, for imgfs serve).
//
// The tree lives in memory and never changes once frozen; file content is
// read on demand through one ContentReader per layer, or from memory for
// synthetic files. The package knows nothing of registries, blobs or tar:
// it sees index.Entry values and ContentReaders only.
//
// FUSE behaviour: requests are answered straight from the tree (treeFS,
// through go-fuse's raw protocol API): the FUSE node ID is the inode
// number, so lookups and listings keep no per-inode state and allocate
// nothing, and READDIRPLUS gives every entry's attributes, so a walk that
// stats what it lists sends nothing but listings. Every write operation
// answers EROFS (the mount is also "ro"); entry, negative-entry and
// attribute timeouts default to one hour and opened files and directory
// listings keep the kernel cache, because the image is immutable; hard
// links share one inode number; inode numbers are assigned in sorted tree
// order, so they are the same on every mount of the same image; a failed
// read answers EIO, logs one line and leaves the mount up. A tree without
// extended attributes answers the first GETXATTR and LISTXATTR with
// ENOSYS, and OPENDIR is answered ENOSYS where the kernel offers
// NO_OPENDIR_SUPPORT, so that the kernel stops sending them (see
// requestFS, which also counts every request: Mounted.Requests).
//
// A catalog mount is served the same way (catalogFS, also on the raw API):
// it owns the node IDs, gives each image it attaches a range of them
// (inode numbers moved by the range's start, so images sharing the mount
// never share one), answers requests inside an image with that image's
// treeFS, and the catalog's own directories, links and status files from
// a few nodes it keeps while the kernel knows them. Failed catalog lookups
// are never cached by the kernel; a released image is forgotten by the
// kernel (it is told to), and its range freed once the kernel holds none
// of its node IDs. Catalog mounts answer extended attributes of every
// image (images with and without them share the mount).
package fs
