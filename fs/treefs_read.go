package fs

import (
	"context"
	"errors"
	"io"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

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

func (t *treeFS) Open(cancel <-chan struct{}, input *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	n := t.node(input.NodeId)
	if n == nil {
		return errStale
	}
	if input.Flags&syscall.O_ACCMODE != syscall.O_RDONLY || input.Flags&syscall.O_TRUNC != 0 {
		return fuse.EROFS
	}
	// Reads need no handle (they name the inode). The image never changes:
	// let the kernel keep its page cache across opens, and skip the FLUSH
	// round trip on close (nothing to flush).
	out.Fh = 0
	out.OpenFlags = fuse.FOPEN_KEEP_CACHE | fuse.FOPEN_NOFLUSH
	if key, ok := t.copyKey(n); ok {
		// A file that may have a copy: the kernel reads the copy itself
		// when there is one.
		t.pt.open(input.NodeId, key, n.Size(), out)
	}
	return fuse.OK
}

func (t *treeFS) Read(cancel <-chan struct{}, input *fuse.ReadIn, dest []byte) (fuse.ReadResult, fuse.Status) {
	n := t.node(input.NodeId)
	if n == nil {
		return nil, errStale
	}
	size := n.Size()
	off := int64(input.Offset)
	if n.Type() != index.TypeReg || off < 0 {
		return nil, fuse.EINVAL
	}
	if off >= size {
		return fuse.ReadResultData(nil), fuse.OK
	}
	buf := dest[:min(int64(len(dest)), size-off)]
	if n.Synthetic() {
		return dataResult(buf[:copy(buf, n.Content()[off:])]), fuse.OK
	}
	layer := n.Layer()
	if layer < 0 || layer >= len(t.readers) || t.readers[layer] == nil {
		t.log.Error("read: no reader for layer", "path", n.Path(), "layer", layer)
		return nil, fuse.EIO
	}
	rctx := newReaderContext(&fuse.Context{Caller: input.Caller, Cancel: cancel}, t.readTimeout)
	defer rctx.stop()
	got, err := t.readers[layer].ReadAt(rctx, n.Entry(), buf, off)
	if err != nil && !(errors.Is(err, io.EOF) && got == len(buf)) {
		t.log.Error("read failed", "path", n.Path(), "layer", layer, "offset", off, "length", len(buf), "err", err)
		return nil, fuse.EIO
	}
	if t.pt != nil {
		t.pt.lastRead.Store(time.Now().UnixNano()) // copies wait for a pause
		if input.Fh == fhCached && got > 0 {
			if key, ok := t.copyKey(n); ok {
				t.noteRead(input.NodeId, n, key, off, got)
			}
		}
	}
	return dataResult(buf[:got]), fuse.OK
}

// dataResult answers a read with bytes in memory. A vector result is
// written to the kernel with one writev, header and bytes together, with no
// copy into a contiguous reply. (The mount also turns go-fuse's splice off:
// it cannot help bytes already in memory, and a full 1 MiB reply with its
// header does not fit the default pipe, which go-fuse logged each time.)
func dataResult(b []byte) fuse.ReadResult { return fuse.ReadResultVector([][]byte{b}) }

// Release has nothing to free but the count of a file that may have a
// copy (the other opens hand out no handle).
func (t *treeFS) Release(cancel <-chan struct{}, input *fuse.ReleaseIn) {
	if t.pt != nil && input.Fh != 0 {
		t.pt.release(input.NodeId, input.Fh)
	}
}

func (t *treeFS) Flush(cancel <-chan struct{}, input *fuse.FlushIn) fuse.Status { return fuse.OK }

func (t *treeFS) Fsync(cancel <-chan struct{}, input *fuse.FsyncIn) fuse.Status {
	return fuse.OK // nothing is ever dirty
}
