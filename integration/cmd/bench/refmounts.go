package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync/atomic"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/imgfs/imgfs/fs"
	"github.com/imgfs/imgfs/index"
)

// memoryReader is the cheapest backend imgfs's mount can have: the file's
// bytes sit in RAM and a read is one copy into the reply, which is what a
// memory-tier hit costs. Reading through it bounds from above what any
// cache tier can reach through the same FUSE layer.
type memoryReader struct {
	data  []byte
	reads *atomic.Int64
}

func (r memoryReader) ReadAt(_ context.Context, e *index.Entry, p []byte, off int64) (int, error) {
	r.reads.Add(1)
	if off >= int64(len(r.data)) {
		return 0, io.EOF
	}
	n := copy(p, r.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// mountRAM mounts, with imgfs's own mount code and defaults, a tree holding
// one file of size bytes served from RAM.
func mountRAM(dir string, size int64, reads *atomic.Int64) (func() error, error) {
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i*7 + i>>12)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	tree := fs.Merge([][]index.Entry{{{Name: "file", Type: index.TypeReg, Mode: 0o644, Size: size}}}, fs.MergeOptions{Logger: quiet})
	m, err := fs.Mount(context.Background(), dir, tree, []fs.ContentReader{memoryReader{data: data, reads: reads}}, fs.MountOptions{Logger: quiet})
	if err != nil {
		return nil, fmt.Errorf("RAM mount: %w", err)
	}
	return m.Unmount, nil
}

// mountPassthrough mounts a tree of one file backed by the local file path,
// which the kernel reads itself (FUSE passthrough: Linux 6.9 and later, as
// root): what a mount could reach for files kept whole on local disk, with
// no READ request, copy or check of the server's on the way. Where
// passthrough is not available, go-fuse serves READs instead and counts
// them in reads.
func mountPassthrough(dir, path string, reads *atomic.Int64) (func() error, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	root := &passthroughRoot{file: &passthroughFile{path: path, size: info.Size(), reads: reads}}
	srv, err := gofs.Mount(dir, root, &gofs.Options{MountOptions: fuse.MountOptions{
		FsName: "bench-passthrough", MaxWrite: 1 << 20, DirectMount: true, DisableSplice: true}})
	if err != nil {
		return nil, fmt.Errorf("passthrough mount: %w", err)
	}
	return srv.Unmount, nil
}

type passthroughRoot struct {
	gofs.Inode
	file *passthroughFile
}

func (r *passthroughRoot) OnAdd(ctx context.Context) {
	r.AddChild("file", r.NewPersistentInode(ctx, r.file, gofs.StableAttr{Mode: syscall.S_IFREG}), false)
}

type passthroughFile struct {
	gofs.Inode
	path  string
	size  int64
	reads *atomic.Int64
}

func (f *passthroughFile) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Size, out.Mode = uint64(f.size), syscall.S_IFREG|0o444
	return 0
}

func (f *passthroughFile) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	fd, err := syscall.Open(f.path, syscall.O_RDONLY, 0)
	if err != nil {
		return nil, 0, gofs.ToErrno(err)
	}
	return &passthroughHandle{fd: fd, reads: f.reads}, 0, 0
}

// passthroughHandle offers its descriptor for passthrough, and serves (and
// counts) the READs that come anyway when passthrough is not in effect.
type passthroughHandle struct {
	fd    int
	reads *atomic.Int64
}

func (h *passthroughHandle) PassthroughFd() (int, bool) { return h.fd, true }

func (h *passthroughHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	h.reads.Add(1)
	n, err := syscall.Pread(h.fd, dest, off)
	if err != nil {
		return nil, gofs.ToErrno(err)
	}
	return fuse.ReadResultData(dest[:n]), 0
}

func (h *passthroughHandle) Release(ctx context.Context) syscall.Errno {
	return gofs.ToErrno(syscall.Close(h.fd))
}
