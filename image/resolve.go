package image

import (
	"context"
	"fmt"
	"strings"

	digest "github.com/opencontainers/go-digest"

	"github.com/imgfs/imgfs/fetch"
	"github.com/imgfs/imgfs/manifest"
)

// Resolve describes an image without opening its layers: the manifest
// chosen for the platform, verified, its config and layer descriptors.
func Resolve(ctx context.Context, reference string, opts Options) (*manifest.Image, error) {
	img, src, _, err := resolve(ctx, reference, opts)
	if err != nil {
		return nil, err
	}
	src.Close()
	return img, nil
}

// resolve parses the reference, opens its source (for a registry the
// repository, through the mirrors of the registries configuration:
// authentication is negotiated once, for the manifests and every blob; for
// a local layout or archive its files) and resolves the image. It is the
// one place a registry client is made.
func resolve(ctx context.Context, reference string, opts Options) (*manifest.Image, source, Reference, error) {
	ref, err := ParseReference(reference, opts.Registry.PlainHTTP)
	if err != nil {
		return nil, nil, ref, err
	}
	src, err := openSource(ctx, ref, opts)
	if err != nil {
		return nil, nil, ref, err
	}
	mo := manifest.Options{
		Platform:     opts.Platform,
		PlatformFrom: opts.PlatformFrom,
		Logger:       opts.logger(),
	}
	// Index artifacts live in registries: a local source has none to
	// discover.
	if rs, ok := src.(registrySource); ok && opts.imageManifest != nil {
		early, repo, scope := opts.imageManifest, rs.Repository, ref.Registry.Registry+"/"+ref.Registry.Repository
		mo.ImageManifest = func(d digest.Digest, mediaType string, _ int64, layers []manifest.Layer) {
			early(repo, scope, d, mediaType, layers)
		}
	}
	img, err := manifest.Resolve(ctx, src, ref.manifestReference(), mo)
	if err != nil {
		src.Close()
		return nil, nil, ref, withHint(err)
	}
	return img, src, ref, nil
}

// openSource opens where ref's manifests and blobs are: the files of a
// local source, or the registry's repository through the mirrors the
// registries configuration gives it.
func openSource(ctx context.Context, ref Reference, opts Options) (source, error) {
	if ref.IsLocal() {
		return openLocalSource(ctx, ref)
	}
	fo := opts.Registry
	if fo.Logger == nil {
		fo.Logger = opts.logger()
	}
	repoName, fo, err := opts.pullOptions(ref.Registry, fo)
	if err != nil {
		return nil, err
	}
	repo, err := fetch.NewRepository(ctx, repoName, fo)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ref.Registry, withHint(err))
	}
	return registrySource{repo}, nil
}

// Tags lists the tags of a repository (reference without a tag, or with
// one, which is ignored), or the image names of a local layout or archive.
func Tags(ctx context.Context, reference string, opts Options) ([]string, error) {
	ref, err := ParseReference(reference, opts.Registry.PlainHTTP)
	if err != nil {
		return nil, err
	}
	src, err := openSource(ctx, ref, opts)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	tags, err := src.Tags(ctx)
	if err != nil {
		return nil, withHint(err)
	}
	return tags, nil
}

// checkReadable refuses, with the reason, images imgfs cannot serve in
// full: it never shows a tree with a layer silently left out.
func checkReadable(img *manifest.Image) error {
	for i, l := range img.Layers {
		switch l.Format {
		case manifest.FormatForeign:
			where := "no URLs"
			if len(l.URLs) > 0 {
				where = "URLs " + strings.Join(l.URLs, ", ")
			}
			return fmt.Errorf("layer %d (%s) is non-distributable (%s): imgfs reads layers from the registry only", i+1, l.Digest, where)
		case manifest.FormatUnknown:
			return fmt.Errorf("layer %d (%s) has media type %q, which imgfs cannot read", i+1, l.Digest, l.MediaType)
		}
	}
	return nil
}
