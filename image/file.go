package image

import (
	"context"
	"fmt"
	"io"

	"github.com/imgfs/imgfs/fs"
	"github.com/imgfs/imgfs/index"
)

// File is a regular file of an image, open for reading. Its reads run
// under the context it was opened with.
type File struct {
	ctx    context.Context
	node   *fs.Node
	reader fs.ContentReader // nil for synthetic files
}

// Open opens the regular file at p, following symlinks inside the image.
func (img *Image) Open(ctx context.Context, p string) (*File, error) {
	n, err := img.Lookup(p, true)
	if err != nil {
		return nil, err
	}
	return img.openNode(ctx, n)
}

func (img *Image) openNode(ctx context.Context, n *fs.Node) (*File, error) {
	if n.IsDir() {
		return nil, fmt.Errorf("%s: is a directory", n.Path())
	}
	if n.Type() != index.TypeReg {
		return nil, fmt.Errorf("%s: not a regular file", n.Path())
	}
	f := &File{ctx: ctx, node: n}
	if !n.Synthetic() {
		f.reader = img.layers[n.Layer()].Reader
	}
	return f, nil
}

// Size is the file's length.
func (f *File) Size() int64 { return f.node.Size() }

// ReadAt reads as io.ReaderAt does. Every byte is verified (see index) or
// the read fails.
func (f *File) ReadAt(p []byte, off int64) (int, error) {
	if f.reader == nil {
		content := f.node.Content()
		if off >= int64(len(content)) {
			return 0, io.EOF
		}
		n := copy(p, content[off:])
		if n < len(p) {
			return n, io.EOF
		}
		return n, nil
	}
	return f.reader.ReadAt(f.ctx, f.node.Entry(), p, off)
}

// copyChunk is the read size of WriteTo: a gzip layer is then fetched and
// inflated a span or so at a time.
const copyChunk = 1 << 20

// WriteTo writes the whole file to w in large reads.
func (f *File) WriteTo(w io.Writer) (int64, error) {
	buf := make([]byte, min(copyChunk, max(f.Size(), 1)))
	var off int64
	for off < f.Size() {
		n, err := f.ReadAt(buf, off)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return off, werr
			}
			off += int64(n)
		}
		switch {
		case err == io.EOF && off >= f.Size():
		case err == io.EOF || (err == nil && n == 0):
			return off, fmt.Errorf("read %s: unexpected end at %d of %d bytes", f.node.Path(), off, f.Size())
		case err != nil:
			return off, fmt.Errorf("read %s: %w", f.node.Path(), err)
		}
	}
	return off, nil
}
