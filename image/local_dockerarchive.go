package image

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/imgfs/imgfs/fetch"
	"github.com/imgfs/imgfs/manifest"
)

// Media types of the Docker schema 2 manifest a docker archive is read as.
const (
	dockerManifestType  = "application/vnd.docker.distribution.manifest.v2+json"
	dockerConfigType    = "application/vnd.docker.container.image.v1+json"
	dockerLayerTar      = "application/vnd.docker.image.rootfs.diff.tar"
	dockerLayerGzip     = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	dockerLayerZstdType = "application/vnd.docker.image.rootfs.diff.tar.zstd"
)

// dockerArchive is the tar 'docker save' and 'skopeo copy ...
// docker-archive:' write: manifest.json lists each image's config and
// layer members. There is no manifest in it: one is made up, as
// containers/image does, a Docker schema 2 manifest whose config and
// layers are the archive's members. A layer's digest is the one its member
// name carries (blobs/sha256/<hex>, Docker 25 and later), else, for an
// uncompressed layer, its diff ID from the config (the digest of the tar
// itself), else the member is hashed once.
type dockerArchive struct {
	files    *tarFiles
	ref      Reference
	tags     []string
	manifest []byte
	digest   digest.Digest
	config   []byte
	members  map[digest.Digest]string // blob digest -> member
}

// dockerArchiveImage is one entry of manifest.json.
type dockerArchiveImage struct {
	Config   string
	RepoTags []string
	Layers   []string
}

func openDockerArchive(files *tarFiles, ref Reference) (*dockerArchive, error) {
	data, err := readLocal(files, "manifest.json", maxLocalMetadata)
	if err != nil {
		return nil, fmt.Errorf("%s: not a docker archive: %w", ref.Given, err)
	}
	var images []dockerArchiveImage
	if err := json.Unmarshal(data, &images); err != nil {
		return nil, fmt.Errorf("%s: manifest.json: %w", ref.Given, err)
	}
	a := &dockerArchive{files: files, ref: ref, members: map[digest.Digest]string{}}
	for _, img := range images {
		a.tags = append(a.tags, img.RepoTags...)
	}
	img, err := a.choose(images)
	if err != nil {
		return nil, err
	}
	if err := a.describe(img); err != nil {
		return nil, fmt.Errorf("%s: %w", ref.Given, err)
	}
	return a, nil
}

// choose picks the image the reference names: by RepoTags entry, by
// index (@N), or the archive's only one.
func (a *dockerArchive) choose(images []dockerArchiveImage) (dockerArchiveImage, error) {
	switch {
	case a.ref.Index >= 0:
		if a.ref.Index >= len(images) {
			return dockerArchiveImage{}, fmt.Errorf("%s: no image @%d: the archive holds %d: %w", a.ref.Given, a.ref.Index, len(images), fetch.ErrNotFound)
		}
		return images[a.ref.Index], nil
	case a.ref.Tag != "":
		want, err := name.NewTag(a.ref.Tag)
		if err != nil {
			return dockerArchiveImage{}, err
		}
		for _, img := range images {
			for _, t := range img.RepoTags {
				if got, err := name.NewTag(t); err == nil && got.Name() == want.Name() {
					return img, nil
				}
			}
		}
		return dockerArchiveImage{}, fmt.Errorf("%s: no image tagged %s (%s): %w", a.ref.Path, a.ref.Tag, tagList(a.tags), fetch.ErrNotFound)
	case len(images) == 1:
		return images[0], nil
	case len(images) == 0:
		return dockerArchiveImage{}, fmt.Errorf("%s: manifest.json lists no image: %w", a.ref.Path, fetch.ErrNotFound)
	}
	return dockerArchiveImage{}, fmt.Errorf("%s holds %d images: name one, docker-archive:%s:NAME:TAG or docker-archive:%s:@N (%s): %w",
		a.ref.Path, len(images), a.ref.Path, a.ref.Path, tagList(a.tags), fetch.ErrNotFound)
}

// describe makes the manifest of img.
func (a *dockerArchive) describe(img dockerArchiveImage) error {
	cfg, err := readLocal(a.files, img.Config, maxLocalMetadata)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	a.config = cfg
	var parsed ocispec.Image
	if err := json.Unmarshal(cfg, &parsed); err != nil {
		return fmt.Errorf("config %s: %w", img.Config, err)
	}
	m := ocispec.Manifest{MediaType: dockerManifestType}
	m.SchemaVersion = 2
	m.Config = ocispec.Descriptor{MediaType: dockerConfigType, Digest: digest.FromBytes(cfg), Size: int64(len(cfg))}
	a.members[m.Config.Digest] = img.Config
	for i, member := range img.Layers {
		desc, err := a.layerDescriptor(member, i, parsed.RootFS.DiffIDs)
		if err != nil {
			return fmt.Errorf("layer %d (%s): %w", i+1, member, err)
		}
		a.members[desc.Digest] = member
		m.Layers = append(m.Layers, desc)
	}
	if a.manifest, err = json.Marshal(m); err != nil {
		return err
	}
	a.digest = digest.FromBytes(a.manifest)
	return nil
}

func (a *dockerArchive) layerDescriptor(member string, i int, diffIDs []digest.Digest) (ocispec.Descriptor, error) {
	r, base, size, err := a.files.section(member)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	desc := ocispec.Descriptor{MediaType: dockerLayerTar, Size: size}
	var magic [4]byte
	n, _ := r.ReadAt(magic[:], base)
	switch {
	case n >= 2 && magic[0] == 0x1f && magic[1] == 0x8b:
		desc.MediaType = dockerLayerGzip
	case n == 4 && magic == [4]byte{0x28, 0xb5, 0x2f, 0xfd}:
		desc.MediaType = dockerLayerZstdType
	}
	if parts := strings.Split(cleanMember(member), "/"); len(parts) == 3 && parts[0] == "blobs" {
		if d := digest.NewDigestFromEncoded(digest.Algorithm(parts[1]), parts[2]); d.Validate() == nil {
			desc.Digest = d // named by its digest (Docker 25 and later)
			return desc, nil
		}
	}
	if desc.MediaType == dockerLayerTar && i < len(diffIDs) && diffIDs[i].Validate() == nil {
		desc.Digest = diffIDs[i] // the diff ID is the digest of the uncompressed tar
		return desc, nil
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(r, base, size)); err != nil {
		return ocispec.Descriptor{}, err
	}
	desc.Digest = digest.NewDigest(digest.SHA256, h)
	return desc, nil
}

func (a *dockerArchive) Close() error { return a.files.close() }

// Tags are the RepoTags of every image of the archive.
func (a *dockerArchive) Tags(ctx context.Context) ([]string, error) { return a.tags, nil }

// Manifest answers manifest.Resolve with the made-up manifest, whatever
// the tag (the image was chosen when the archive was opened).
func (a *dockerArchive) Manifest(ctx context.Context, reference string, accept []string) (*fetch.ManifestResponse, error) {
	if d, err := digest.Parse(reference); err == nil && d != a.digest {
		return nil, fmt.Errorf("%s: no manifest %s: %w", a.ref.Path, d, fetch.ErrNotFound)
	}
	return &fetch.ManifestResponse{Body: a.manifest, MediaType: dockerManifestType, DockerContentDigest: a.digest}, nil
}

func (a *dockerArchive) FetchBlob(ctx context.Context, d digest.Digest, maxSize int64) ([]byte, error) {
	member, ok := a.members[d]
	if !ok {
		return nil, fmt.Errorf("%s: no blob %s: %w", a.ref.Path, d, fetch.ErrNotFound)
	}
	return readVerified(a.files, member, d, maxSize)
}

func (a *dockerArchive) OpenBlob(ctx context.Context, d digest.Digest, size int64) (Blob, error) {
	member, ok := a.members[d]
	if !ok {
		return nil, fmt.Errorf("%s: no blob %s: %w", a.ref.Path, d, fetch.ErrNotFound)
	}
	return openLocalBlob(a.files, "docker-archive:"+a.ref.Path+" member "+member, member, d, size)
}

var _ manifest.Source = (*dockerArchive)(nil)
