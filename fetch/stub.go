package fetch

// Placeholder implementation; replaced by the real client.

import (
	"context"
	"errors"
	"io"

	"github.com/google/go-containerregistry/pkg/name"
	digest "github.com/opencontainers/go-digest"
)

var errTODO = errors.New("not implemented")

type repository struct{}

func newRepository(ctx context.Context, repo name.Repository, opts Options) (*repository, error) {
	return nil, errTODO
}
func (r *repository) manifest(ctx context.Context, ref string, accept []string) (*ManifestResponse, error) {
	return nil, errTODO
}
func (r *repository) fetchBlob(ctx context.Context, d digest.Digest, max int64) ([]byte, error) {
	return nil, errTODO
}
func (r *repository) openBlob(ctx context.Context, d digest.Digest, size int64) (*Blob, error) {
	return nil, errTODO
}

type blob struct {
	dgst digest.Digest
	size int64
}

func (b *blob) readAt(p []byte, off int64) (int, error)         { return 0, errTODO }
func (b *blob) open(ctx context.Context) (io.ReadCloser, error) { return nil, errTODO }
func (b *blob) stats() BlobStats                                { return BlobStats{} }
