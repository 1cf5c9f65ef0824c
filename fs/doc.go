// Package fs merges an image's layer indexes into one tree (Merge), adds
// what Singularity/Apptainer expects of a container directory
// (Synthesize), and serves the tree read-only over FUSE (Mount) with
// go-fuse v2.
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
package fs
