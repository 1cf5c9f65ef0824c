package fs

import (
	"context"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// Every operation that would change the image answers EROFS. The mount is
// also made with "ro", so the kernel normally refuses these before they
// reach us; these make the answer right even without that (go-fuse's
// defaults differ: Unlink and Rmdir would succeed, others give ENOTSUP).

var (
	_ gofs.NodeSetattrer      = (*fuseNode)(nil)
	_ gofs.NodeCreater        = (*fuseNode)(nil)
	_ gofs.NodeTmpfiler       = (*fuseNode)(nil)
	_ gofs.NodeMkdirer        = (*fuseNode)(nil)
	_ gofs.NodeMknoder        = (*fuseNode)(nil)
	_ gofs.NodeLinker         = (*fuseNode)(nil)
	_ gofs.NodeSymlinker      = (*fuseNode)(nil)
	_ gofs.NodeUnlinker       = (*fuseNode)(nil)
	_ gofs.NodeRmdirer        = (*fuseNode)(nil)
	_ gofs.NodeRenamer        = (*fuseNode)(nil)
	_ gofs.NodeWriter         = (*fuseNode)(nil)
	_ gofs.NodeAllocater      = (*fuseNode)(nil)
	_ gofs.NodeCopyFileRanger = (*fuseNode)(nil)
	_ gofs.NodeSetxattrer     = (*fuseNode)(nil)
	_ gofs.NodeRemovexattrer  = (*fuseNode)(nil)
)

func (f *fuseNode) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	return syscall.EROFS
}

func (f *fuseNode) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, syscall.EROFS
}

func (f *fuseNode) Tmpfile(ctx context.Context, flags, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, syscall.EROFS
}

func (f *fuseNode) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}

func (f *fuseNode) Mknod(ctx context.Context, name string, mode, dev uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}

func (f *fuseNode) Link(ctx context.Context, target gofs.InodeEmbedder, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}

func (f *fuseNode) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}

func (f *fuseNode) Unlink(ctx context.Context, name string) syscall.Errno { return syscall.EROFS }

func (f *fuseNode) Rmdir(ctx context.Context, name string) syscall.Errno { return syscall.EROFS }

func (f *fuseNode) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	return syscall.EROFS
}

func (f *fuseNode) Write(ctx context.Context, fh gofs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	return 0, syscall.EROFS
}

func (f *fuseNode) Allocate(ctx context.Context, fh gofs.FileHandle, off, size uint64, mode uint32) syscall.Errno {
	return syscall.EROFS
}

func (f *fuseNode) CopyFileRange(ctx context.Context, fhIn gofs.FileHandle, offIn uint64, out *gofs.Inode, fhOut gofs.FileHandle, offOut, length, flags uint64) (uint32, syscall.Errno) {
	return 0, syscall.EROFS
}

func (f *fuseNode) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	return syscall.EROFS
}

func (f *fuseNode) Removexattr(ctx context.Context, attr string) syscall.Errno {
	return syscall.EROFS
}
