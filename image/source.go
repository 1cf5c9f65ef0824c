package image

import (
	"context"
	"fmt"
	"io"
	"sync/atomic"

	digest "github.com/opencontainers/go-digest"

	"github.com/imgfs/imgfs/fetch"
	"github.com/imgfs/imgfs/index"
	"github.com/imgfs/imgfs/manifest"
)

// source is where an image's manifests and blobs come from: a registry
// repository (fetch.Repository) or a local OCI layout, OCI archive or
// docker archive. manifest.Resolve reads manifests and the config through
// it (verified small blobs); layers are opened as Blobs, read at random
// and verified by the index builders and span checks as any registry blob.
type source interface {
	manifest.Source
	// OpenBlob opens a layer blob for random access (size < 0: unknown).
	OpenBlob(ctx context.Context, dgst digest.Digest, size int64) (Blob, error)
	// Tags lists the names of the images the source holds.
	Tags(ctx context.Context) ([]string, error)
	// Close releases open files; blobs are unusable afterwards.
	Close() error
}

// Blob is a layer blob: random access (index.Blob), a stream of the whole
// blob for one-pass index builds (index.Streamer), and what reading it
// cost.
type Blob interface {
	index.Blob
	index.Streamer
	Stats() fetch.BlobStats
}

var (
	_ Blob = (*fetch.Blob)(nil)
	_ Blob = (*localBlob)(nil)
)

// registrySource is a repository of a registry.
type registrySource struct{ *fetch.Repository }

func (r registrySource) OpenBlob(ctx context.Context, dgst digest.Digest, size int64) (Blob, error) {
	return r.Repository.OpenBlob(ctx, dgst, size)
}

func (r registrySource) Close() error { return nil }

// localBlob is a blob in a local file: a whole file of an OCI layout, or a
// member of an archive, read in place.
type localBlob struct {
	r     io.ReaderAt
	base  int64 // where the blob starts in r
	size  int64
	what  string // for errors: the file and member
	reads atomic.Int64
	bytes atomic.Int64
}

func (b *localBlob) Size() int64 { return b.size }

// ReadAt reads as io.ReaderAt does, within the blob.
func (b *localBlob) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if off < 0 || off > b.size {
		return 0, fmt.Errorf("%s: read at %d of %d bytes", b.what, off, b.size)
	}
	want := p
	if rest := b.size - off; int64(len(want)) > rest {
		want = want[:rest]
	}
	n, err := b.r.ReadAt(want, b.base+off)
	b.reads.Add(1)
	b.bytes.Add(int64(n))
	if err == io.EOF && n == len(want) {
		err = nil
	}
	if err != nil {
		return n, fmt.Errorf("%s: %w", b.what, err)
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// Open streams the whole blob.
func (b *localBlob) Open(ctx context.Context) (io.ReadCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b.reads.Add(1)
	return io.NopCloser(&countingReader{r: io.NewSectionReader(b.r, b.base, b.size), n: &b.bytes}), nil
}

// Stats counts reads (as requests) and bytes read.
func (b *localBlob) Stats() fetch.BlobStats {
	return fetch.BlobStats{Requests: b.reads.Load(), Bytes: b.bytes.Load()}
}

type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}
