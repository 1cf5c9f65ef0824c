package image

import (
	"context"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	digest "github.com/opencontainers/go-digest"

	"github.com/imgfs/imgfs/fetch"
	"github.com/imgfs/imgfs/manifest"
)

// Resolve describes an image without opening its layers: the manifest
// chosen for the platform, verified, its config and layer descriptors.
func Resolve(ctx context.Context, reference string, opts Options) (*manifest.Image, error) {
	img, _, err := resolve(ctx, reference, opts)
	return img, err
}

// resolve parses the reference, opens the repository (authentication is
// negotiated once, for the manifests and every blob) and resolves the
// image. It is the one place a registry client is made.
func resolve(ctx context.Context, reference string, opts Options) (*manifest.Image, *fetch.Repository, error) {
	var nameOpts []name.Option
	if opts.Registry.PlainHTTP {
		nameOpts = append(nameOpts, name.Insecure)
	}
	ref, err := manifest.ParseReference(reference, nameOpts...)
	if err != nil {
		return nil, nil, err
	}
	fo := opts.Registry
	if fo.Logger == nil {
		fo.Logger = opts.logger()
	}
	repoName, fo, err := opts.pullOptions(ref, fo)
	if err != nil {
		return nil, nil, err
	}
	repo, err := fetch.NewRepository(ctx, repoName, fo)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", ref, err)
	}
	mo := manifest.Options{
		Platform:     opts.Platform,
		PlatformFrom: opts.PlatformFrom,
		Logger:       opts.logger(),
	}
	if early := opts.imageManifest; early != nil {
		mo.ImageManifest = func(d digest.Digest, mediaType string, _ int64, layers []manifest.Layer) {
			early(repo, ref.Registry+"/"+ref.Repository, d, mediaType, layers)
		}
	}
	img, err := manifest.Resolve(ctx, repo, ref, mo)
	if err != nil {
		return nil, nil, err
	}
	return img, repo, nil
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
