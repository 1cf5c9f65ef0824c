package manifest

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/imgfs/imgfs/fetch"
)

// Source is what Resolve needs from a registry. *fetch.Repository satisfies
// it; tests use an in-memory fake.
type Source interface {
	Manifest(ctx context.Context, reference string, accept []string) (*fetch.ManifestResponse, error)
	FetchBlob(ctx context.Context, dgst digest.Digest, maxSize int64) ([]byte, error)
}

var _ Source = (*fetch.Repository)(nil)

// Options configure Resolve.
type Options struct {
	// Platform is the one to pick from an index (see WantedPlatform);
	// PlatformFrom says where it came from, for logs and errors. A zero
	// Platform means the host's.
	Platform     ocispec.Platform
	PlatformFrom string
	Logger       *slog.Logger // nil: slog.Default()
	// ImageManifest, when set, hears about the image manifest chosen as
	// soon as it is verified, before its config is fetched: callers start
	// work that needs only the manifest (index artifact discovery).
	ImageManifest func(dgst digest.Digest, mediaType string, size int64, layers []Layer)
}

// maxConfigSize bounds a config blob whose descriptor does not say its size
// (or says something absurd): configs are kilobytes, history can make them
// a few megabytes.
const maxConfigSize = 32 << 20

// Resolve fetches ref's manifest from src (choosing a platform from an
// index), verifies it and its config, and describes the layers.
func Resolve(ctx context.Context, src Source, ref Reference, opts Options) (*Image, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	want, wantFrom := opts.Platform, opts.PlatformFrom
	if want.OS == "" && want.Architecture == "" {
		want, wantFrom = HostPlatform(), "host"
	}
	log.Info("image reference", "registry", ref.Registry, "repository", ref.Repository,
		"tag", ref.Tag, "digest", ref.Digest.String())
	r := &resolver{src: src, log: log, ref: ref, want: NormalizePlatform(want), wantFrom: wantFrom, early: opts.ImageManifest}
	img, err := r.resolve(ctx)
	if err != nil {
		if strings.Contains(err.Error(), ref.String()) {
			return nil, err // the source's error names the image already
		}
		return nil, fmt.Errorf("%s: %w", ref, err)
	}
	return img, nil
}

// resolver carries one resolution's state.
type resolver struct {
	src      Source
	log      *slog.Logger
	ref      Reference
	want     ocispec.Platform
	wantFrom string
	early    func(digest.Digest, string, int64, []Layer)
}

func (r *resolver) resolve(ctx context.Context) (*Image, error) {
	img := &Image{
		Transport:  r.ref.Transport,
		Registry:   r.ref.Registry,
		Repository: r.ref.Repository,
		Tag:        r.ref.Tag,
		Name:       r.ref.String(),
	}

	top, err := r.getManifest(ctx, r.ref.Identifier(), AcceptedManifestTypes(), r.ref.Digest)
	if err != nil {
		return nil, err
	}

	var fromIndex *ocispec.Descriptor
	switch kindOf(top.mediaType) {
	case kindIndex:
		img.IndexDigest, img.IndexMediaType, img.RawIndex = top.digest, top.mediaType, top.body
		chosen, platforms, err := r.choose(top)
		if err != nil {
			return nil, err
		}
		img.Platforms = platforms
		child, err := r.getManifest(ctx, chosen.Digest.String(), imageManifestTypes(), chosen.Digest)
		if err != nil {
			return nil, fmt.Errorf("manifest %s for %s: %w", chosen.Digest, platformOf(chosen), err)
		}
		if chosen.Size > 0 && int64(len(child.body)) != chosen.Size {
			return nil, fmt.Errorf("manifest %s: index says %d bytes, got %d", chosen.Digest, chosen.Size, len(child.body))
		}
		if kindOf(child.mediaType) != kindImage {
			return nil, fmt.Errorf("index entry %s for %s is %q, not an image manifest", chosen.Digest, platformOf(chosen), child.mediaType)
		}
		if chosen.MediaType != "" && normaliseMediaType(chosen.MediaType) != child.mediaType {
			r.log.Warn("index entry media type differs from the manifest's", "digest", chosen.Digest,
				"index", chosen.MediaType, "manifest", child.mediaType)
		}
		top, fromIndex = child, &chosen
	case kindImage, kindSchema1:
	default:
		return nil, fmt.Errorf("unsupported manifest media type %q", top.mediaType)
	}

	img.Digest, img.MediaType, img.RawManifest = top.digest, top.mediaType, top.body
	switch kindOf(top.mediaType) {
	case kindSchema1:
		if err := r.fillSchema1(img, top.body); err != nil {
			return nil, err
		}
	default:
		if err := r.fillImage(ctx, img, top.body); err != nil {
			return nil, err
		}
	}

	if img.Platform.OS == "" && fromIndex != nil && fromIndex.Platform != nil {
		img.Platform = NormalizePlatform(*fromIndex.Platform)
	}
	if fromIndex == nil && img.Platform.OS != "" && !MatchPlatform(r.want, img.Platform) {
		// Like Docker: a single-platform image is used as it is, with a warning.
		r.log.Warn("image platform does not match the wanted platform",
			"image", FormatPlatform(img.Platform), "wanted", FormatPlatform(r.want), "from", r.wantFrom)
	}
	return img, nil
}

// fetchedManifest is a manifest whose digest has been checked.
type fetchedManifest struct {
	body      []byte
	mediaType string
	digest    digest.Digest
}

// getManifest GETs a manifest, classifies it and checks its digest against
// pinned (when the reference or index pinned one) and against
// Docker-Content-Digest (when the registry sent it).
func (r *resolver) getManifest(ctx context.Context, reference string, accept []string, pinned digest.Digest) (*fetchedManifest, error) {
	r.log.Info("manifest GET", "reference", reference, "accept", strings.Join(accept, ", "))
	resp, err := r.src.Manifest(ctx, reference, accept)
	if err != nil {
		return nil, err // names the manifest (fetch: "manifest repo:tag: ...")
	}
	if resp == nil {
		return nil, fmt.Errorf("get manifest %s: empty response", reference)
	}
	mediaType, err := classifyManifest(resp.MediaType, resp.Body)
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", reference, err)
	}
	r.log.Debug("manifest received", "reference", reference, "contentType", resp.MediaType,
		"mediaType", mediaType, "bytes", len(resp.Body), "dockerContentDigest", resp.DockerContentDigest.String())

	mb, err := newManifestBytes(resp.Body, mediaType)
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", reference, err)
	}
	dgst := mb.digest()
	if pinned != "" {
		if err := mb.verify(pinned); err != nil {
			return nil, fmt.Errorf("manifest %s: %w", reference, err)
		}
		dgst = pinned
	}
	if dcd := resp.DockerContentDigest; dcd != "" {
		if err := mb.verify(dcd); err != nil {
			return nil, fmt.Errorf("manifest %s: Docker-Content-Digest: %w", reference, err)
		}
		if pinned == "" {
			dgst = dcd
		}
	}
	return &fetchedManifest{body: resp.Body, mediaType: mediaType, digest: dgst}, nil
}
