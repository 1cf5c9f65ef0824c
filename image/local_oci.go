package image

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/imgfs/imgfs/fetch"
	"github.com/imgfs/imgfs/manifest"
)

// ociLayout is an OCI image layout (image-spec image-layout.md): a
// directory (oci:) or an uncompressed tar of one (oci-archive:).
// index.json names the images by the org.opencontainers.image.ref.name
// annotation, as skopeo writes them.
type ociLayout struct {
	files localFiles
	ref   Reference
	index ocispec.Index
	raw   []byte // index.json as read
}

func openOCILayout(files localFiles, ref Reference) (*ociLayout, error) {
	l := &ociLayout{files: files, ref: ref}
	data, err := readLocal(files, ocispec.ImageLayoutFile, 1<<16)
	if err != nil {
		return nil, fmt.Errorf("%s: not an OCI image layout: %w", ref.Given, err)
	}
	var layout ocispec.ImageLayout
	if err := json.Unmarshal(data, &layout); err != nil || layout.Version == "" {
		return nil, fmt.Errorf("%s: not an OCI image layout: bad %s: %q", ref.Given, ocispec.ImageLayoutFile, data)
	}
	if l.raw, err = readLocal(files, "index.json", maxLocalMetadata); err != nil {
		return nil, fmt.Errorf("%s: %w", ref.Given, err)
	}
	if err := json.Unmarshal(l.raw, &l.index); err != nil {
		return nil, fmt.Errorf("%s: index.json: %w", ref.Given, err)
	}
	return l, nil
}

func (l *ociLayout) Close() error { return l.files.close() }

// Tags are the ref.name annotations of index.json.
func (l *ociLayout) Tags(ctx context.Context) ([]string, error) {
	var tags []string
	for _, d := range l.index.Manifests {
		if n := d.Annotations[ocispec.AnnotationRefName]; n != "" && !slices.Contains(tags, n) {
			tags = append(tags, n)
		}
	}
	return tags, nil
}

// Manifest answers manifest.Resolve: reference is a digest (a manifest of
// the layout, or an index entry's), or the tag of the reference ("" when
// none was given: the layout's only image, or index.json itself when it
// lists one image per platform and no names).
func (l *ociLayout) Manifest(ctx context.Context, reference string, accept []string) (*fetch.ManifestResponse, error) {
	if d, err := digest.Parse(reference); err == nil {
		body, err := readVerified(l.files, blobPath(d), d, maxLocalMetadata)
		if err != nil {
			return nil, err
		}
		return &fetch.ManifestResponse{Body: body, DockerContentDigest: d}, nil
	}
	desc, whole, err := l.choose(reference)
	if err != nil {
		return nil, err
	}
	if whole {
		return &fetch.ManifestResponse{Body: l.raw, MediaType: ocispec.MediaTypeImageIndex}, nil
	}
	body, err := readVerified(l.files, blobPath(desc.Digest), desc.Digest, maxLocalMetadata)
	if err != nil {
		return nil, err
	}
	if desc.Size > 0 && int64(len(body)) != desc.Size {
		return nil, fmt.Errorf("%s: manifest %s has %d bytes, index.json says %d", l.ref.Given, desc.Digest, len(body), desc.Size)
	}
	return &fetch.ManifestResponse{Body: body, MediaType: desc.MediaType, DockerContentDigest: desc.Digest}, nil
}

// choose finds the descriptor of index.json the tag names; whole is set
// when index.json itself is the image's index.
func (l *ociLayout) choose(tag string) (desc ocispec.Descriptor, whole bool, err error) {
	ms := l.index.Manifests
	tags, _ := l.Tags(context.Background())
	if tag != "" {
		for _, d := range ms {
			if d.Annotations[ocispec.AnnotationRefName] == tag {
				return d, false, nil
			}
		}
		return desc, false, fmt.Errorf("%s: no image tagged %q (%s): %w", l.ref.Path, tag, tagList(tags), fetch.ErrNotFound)
	}
	switch {
	case len(ms) == 0:
		return desc, false, fmt.Errorf("%s: index.json lists no image: %w", l.ref.Path, fetch.ErrNotFound)
	case len(ms) == 1:
		return ms[0], false, nil
	case len(tags) == 0:
		return desc, true, nil // one image per platform, chosen by manifest.Resolve
	}
	return desc, false, fmt.Errorf("%s holds %d images: name one, %s:%s:TAG (%s): %w", l.ref.Path, len(ms),
		l.ref.Transport, l.ref.Path, tagList(tags), fetch.ErrNotFound)
}

func tagList(tags []string) string {
	if len(tags) == 0 {
		return "it names none"
	}
	return "it has " + strings.Join(tags, ", ")
}

func (l *ociLayout) FetchBlob(ctx context.Context, d digest.Digest, maxSize int64) ([]byte, error) {
	return readVerified(l.files, blobPath(d), d, maxSize)
}

func (l *ociLayout) OpenBlob(ctx context.Context, d digest.Digest, size int64) (Blob, error) {
	return openLocalBlob(l.files, l.ref.Transport+":"+l.ref.Path, blobPath(d), d, size)
}

var _ manifest.Source = (*ociLayout)(nil)
