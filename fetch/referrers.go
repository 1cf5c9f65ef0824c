package fetch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Referrers lists the manifests of this repository whose subject is the
// manifest with digest subject and whose artifactType is artifactType
// ("" for any): through the OCI 1.1 referrers API, or, for registries
// without it (docker-registry 2.8), the referrers tag schema: the tag
// sha256-<hex> holding an index of them. The tag is resolved with a HEAD
// request and its index fetched by digest (from the manifest cache or a
// mirror when there is one), so that asking costs no manifest GET at the
// registry when there is nothing, or nothing new. (go-containerregistry's
// remote.Referrers GETs the tag each time.)
func (r *Repository) Referrers(ctx context.Context, subject digest.Digest, artifactType string) ([]ocispec.Descriptor, error) {
	ri := r.impl
	what := fmt.Sprintf("referrers of %s@%s", ri.repo, subject)
	if err := subject.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	u := ri.url("referrers", subject.String())
	if artifactType != "" {
		u += "?artifactType=" + url.QueryEscape(artifactType)
	}
	// The referrers API and the tag schema are asked at once: registries
	// without the API (most, today) then cost one round trip, not two.
	tag := strings.Replace(subject.String(), ":", "-", 1)
	type headResult struct {
		d   digest.Digest
		err error
	}
	head := make(chan headResult, 1)
	go func() {
		d, err := ri.headManifest(ctx, tag, []string{ocispec.MediaTypeImageIndex})
		head <- headResult{d, err}
	}()
	header, body, err := ri.getWhole(ctx, what, u, []string{ocispec.MediaTypeImageIndex}, maxManifestSize)
	var re *RegistryError
	switch {
	case err == nil && mediaType(header.Get("Content-Type")) == ocispec.MediaTypeImageIndex:
	case err == nil || errors.As(err, &re) && (re.StatusCode == http.StatusNotFound || re.StatusCode == http.StatusBadRequest ||
		re.StatusCode == http.StatusNotAcceptable || re.StatusCode == http.StatusMethodNotAllowed):
		// No referrers API: the tag schema.
		h := <-head
		if h.err != nil {
			if errors.Is(h.err, errHeadNotFound) {
				return nil, nil
			}
			return nil, fmt.Errorf("%s: referrers tag %s: %w", what, tag, h.err)
		}
		m, merr := ri.manifest(ctx, h.d.String(), []string{ocispec.MediaTypeImageIndex})
		if merr != nil {
			return nil, fmt.Errorf("%s: %w", what, merr)
		}
		body = m.Body
	default:
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	var list ocispec.Index
	if err := json.Unmarshal(body, &list); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	var out []ocispec.Descriptor
	for _, d := range list.Manifests { // the tag schema is not filtered by the registry
		if artifactType == "" || d.ArtifactType == artifactType {
			out = append(out, d)
		}
	}
	return out, nil
}

// ArtifactBlob is one blob of an artifact to push.
type ArtifactBlob struct {
	MediaType string
	Data      []byte
}

// PushArtifact uploads blobs (skipping those the registry has) and then
// the image manifest body (which names them, and may name a subject) by
// digest; for a manifest with a subject on a registry without the
// referrers API, it also adds it to the subject's referrers tag. Push
// rights are negotiated now, with the repository's credentials. The
// manifest is also tagged with each of tags.
func (r *Repository) PushArtifact(ctx context.Context, blobs []ArtifactBlob, body []byte, tags ...string) (digest.Digest, error) {
	ri := r.impl
	pushT, err := transport.NewWithContext(ctx, ri.repo.Registry, ri.auth, ri.inner, []string{ri.repo.Scope(transport.PushScope)})
	if err != nil {
		return "", fmt.Errorf("authenticate to %s for push to %s: %w", ri.repo.RegistryStr(), ri.repo.RepositoryStr(), mapTransportError(err))
	}
	opts := []remote.Option{remote.WithContext(ctx), remote.WithTransport(pushT)}
	for _, b := range blobs {
		if err := remote.WriteLayer(ri.repo, static.NewLayer(b.Data, types.MediaType(b.MediaType)), opts...); err != nil {
			return "", fmt.Errorf("push blob to %s: %w", ri.repo, mapTransportError(err))
		}
	}
	d := digest.FromBytes(body)
	if err := remote.Put(ri.repo.Digest(d.String()), rawManifest{body: body, mediaType: ocispec.MediaTypeImageManifest}, opts...); err != nil {
		return "", fmt.Errorf("push manifest to %s: %w", ri.repo, mapTransportError(err))
	}
	for _, tag := range tags {
		if !validTag(tag) {
			return d, fmt.Errorf("tag %q: invalid", tag)
		}
		if err := remote.Put(ri.repo.Tag(tag), rawManifest{body: body, mediaType: ocispec.MediaTypeImageManifest}, opts...); err != nil {
			return d, fmt.Errorf("tag manifest %s:%s: %w", ri.repo, tag, mapTransportError(err))
		}
	}
	return d, nil
}

// rawManifest is manifest bytes as go-containerregistry's remote.Put takes them.
type rawManifest struct {
	body      []byte
	mediaType string
}

func (m rawManifest) RawManifest() ([]byte, error)        { return m.body, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return types.MediaType(m.mediaType), nil }
