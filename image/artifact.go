package image

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/imgfs/imgfs/fetch"
	"github.com/imgfs/imgfs/index"
	"github.com/imgfs/imgfs/manifest"
)

// An index artifact publishes an image's layer indexes in its own
// repository, so that a node that never saw the image reads a few hundred
// KiB instead of streaming every gzip layer: an OCI image manifest with
//
//	artifactType  ArtifactType
//	config        the empty descriptor ({})
//	layers        one blob per layer index (an index file, index.Encode),
//	              media type IndexMediaType, annotated with the layer's
//	              digest (AnnotationLayer), the index file version
//	              (AnnotationVersion) and the layer format (AnnotationFormat);
//	              an index up to maxInlineIndex is also in the descriptor's
//	              data field (checked against its digest like the blob)
//	subject       the image manifest
//	annotations   org.opencontainers.image.created
//
// found through the referrers API or the referrers tag schema, and tagged
// ArtifactTag(image manifest digest) too: the newest is found with a HEAD
// and a GET by digest.
const (
	ArtifactType      = "application/vnd.imgfs.index.v1"
	IndexMediaType    = "application/vnd.imgfs.index.layer.v1"
	AnnotationLayer   = "io.github.imgfs.index.layer"
	AnnotationVersion = "io.github.imgfs.index.version"
	AnnotationFormat  = "io.github.imgfs.index.format"
	maxIndexBlob      = 512 << 20 // an index is ~1% of its layer's uncompressed size
	maxArtifactsTried = 4         // newest first
	// maxInlineIndex bounds an index carried in the artifact manifest
	// itself (the descriptor's data field, as well as in its blob): one
	// request fewer for a node, and manifests are served faster than
	// blobs. Larger ones are only blobs.
	maxInlineIndex     = 512 << 10
	artifactOriginWord = "artifact"
)

// IndexSource says where Open may take layer indexes from.
type IndexSource string

const (
	// IndexAuto uses a matching index artifact when the registry has one,
	// else builds locally (the default).
	IndexAuto IndexSource = "auto"
	// IndexRegistry uses index artifacts only: a layer without a usable
	// one fails (as a check that an artifact is there and usable).
	IndexRegistry IndexSource = "registry"
	// IndexLocal never looks for an artifact: indexes are built here.
	IndexLocal IndexSource = "local"
)

// ParseIndexSource checks a --index-source value ("" is auto).
func ParseIndexSource(s string) (IndexSource, error) {
	switch IndexSource(s) {
	case "", IndexAuto:
		return IndexAuto, nil
	case IndexRegistry, IndexLocal:
		return IndexSource(s), nil
	}
	return "", fmt.Errorf("invalid index source %q: want auto, registry or local", s)
}

// artifacts finds and serves the index artifacts of one image, once.
type artifacts struct {
	repo      *fetch.Repository
	subject   digest.Digest // the image manifest
	mediaType string        // of the image manifest
	scope     string

	once    sync.Once
	byLayer map[digest.Digest]artifactLayer
	err     error // discovery failed, or there is none

	mu       sync.Mutex
	problems []string // layers an artifact was found for but unusable
}

// artifactLayer is one layer's index blob in an artifact.
type artifactLayer struct {
	artifact digest.Digest // the artifact manifest
	desc     ocispec.Descriptor
}

func newArtifacts(repo *fetch.Repository, subject digest.Digest, mediaType, scope string) *artifacts {
	return &artifacts{repo: repo, subject: subject, mediaType: mediaType, scope: scope}
}

// earlyDiscovery is Options.imageManifest for Open: as soon as the image
// manifest is known, it sets *a and, if some layer has no index in the
// cache dirs, starts looking for the image's index artifact while the
// config is fetched.
func earlyDiscovery(ctx context.Context, opts Options, a **artifacts) func(*fetch.Repository, string, digest.Digest, string, []manifest.Layer) {
	return func(repo *fetch.Repository, scope string, d digest.Digest, mediaType string, layers []manifest.Layer) {
		dirs := opts.ReadOnlyCacheDirs
		if opts.CacheDir != "" {
			dirs = append([]string{opts.CacheDir}, dirs...)
		}
		missing := false
		for _, l := range layers {
			missing = missing || artifactFormat(l.Format) && !index.Cached(dirs, l, scope)
		}
		*a = newArtifacts(repo, d, mediaType, scope)
		if missing {
			go (*a).discover(ctx) //nolint:errcheck // the result is kept for layerIndex
		}
	}
}

// artifactFormat reports whether artifacts may carry indexes of layers of
// format f (see index.Index.Pushable): gzip and tar.
func artifactFormat(f manifest.Format) bool {
	return f == manifest.FormatGzip || f == manifest.FormatTar
}

var errNoArtifact = errors.New("the registry has no imgfs index artifact for this image")

// discover lists the image's index artifacts, newest first, and notes for
// each layer the first that has a blob of this imgfs's index version.
func (a *artifacts) discover(ctx context.Context) error {
	a.once.Do(func() {
		a.byLayer = map[digest.Digest]artifactLayer{}
		if a.mediaType == "application/vnd.docker.distribution.manifest.v1+prettyjws" || a.mediaType == "application/vnd.docker.distribution.manifest.v1+json" {
			a.err = errNoArtifact
			return
		}
		// The tag of the newest artifact first (a HEAD, then the artifact by
		// digest); only without it, the referrers (the standard way, for
		// artifacts pushed otherwise): a registry on a node's critical path
		// gets as few requests as can be.
		if a.fromTag(ctx) {
			return
		}
		refs, err := a.repo.Referrers(ctx, a.subject, ArtifactType)
		if err != nil {
			a.err = err
			return
		}
		slices.SortStableFunc(refs, func(x, y ocispec.Descriptor) int {
			return cmp.Compare(y.Annotations[ocispec.AnnotationCreated], x.Annotations[ocispec.AnnotationCreated])
		})
		for i, ref := range refs {
			if i == maxArtifactsTried {
				break
			}
			resp, err := a.repo.Manifest(ctx, ref.Digest.String(), []string{ocispec.MediaTypeImageManifest})
			if err != nil {
				a.problem(fmt.Sprintf("artifact %s: %v", ref.Digest, err))
				continue
			}
			a.use(ref.Digest, resp.Body)
		}
		if len(a.byLayer) == 0 && len(a.problems) == 0 {
			a.err = errNoArtifact
		}
	})
	return a.err
}

// fromTag takes the artifact tagged ArtifactTag(subject), if there is one
// and it is usable; false: look among the referrers.
func (a *artifacts) fromTag(ctx context.Context) bool {
	accept := []string{ocispec.MediaTypeImageManifest}
	d, err := a.repo.HeadManifest(ctx, ArtifactTag(a.subject), accept)
	if err != nil {
		return false
	}
	resp, err := a.repo.Manifest(ctx, d.String(), accept) // by digest: cache, mirrors, registry
	if err != nil {
		a.problem(fmt.Sprintf("artifact %s: %v", d, err))
		return false
	}
	a.use(d, resp.Body)
	return len(a.byLayer) > 0
}

// use notes, for each layer, the index blob the artifact manifest body
// (with digest d) has for it, unless an earlier artifact had one.
func (a *artifacts) use(d digest.Digest, body []byte) {
	var m ocispec.Manifest
	if err := json.Unmarshal(body, &m); err != nil || m.ArtifactType != ArtifactType || m.Subject == nil || m.Subject.Digest != a.subject {
		a.problem(fmt.Sprintf("artifact %s is not an imgfs index artifact of this image", d))
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, l := range m.Layers {
		ld, err := digest.Parse(l.Annotations[AnnotationLayer])
		if err != nil || l.MediaType != IndexMediaType {
			continue
		}
		if l.Annotations[AnnotationVersion] != strconv.Itoa(index.FileVersion) {
			a.problems = append(a.problems, fmt.Sprintf("layer %s: index version %q, this imgfs reads %d", ld, l.Annotations[AnnotationVersion], index.FileVersion))
			continue
		}
		if _, ok := a.byLayer[ld]; !ok {
			a.byLayer[ld] = artifactLayer{artifact: d, desc: l}
		}
	}
}

// ArtifactTag is the tag an index artifact is also pushed under, next to
// the referrers of its image (as cosign tags signatures): sha256-<hex>.imgfs.
// A node finds the newest artifact with a HEAD of it and a GET of the
// manifest by digest (which a mirror or the manifest cache may serve).
func ArtifactTag(subject digest.Digest) string {
	return strings.Replace(subject.String(), ":", "-", 1) + ".imgfs"
}

func (a *artifacts) problem(p string) {
	a.mu.Lock()
	a.problems = append(a.problems, p)
	a.mu.Unlock()
}

// layerIndex fetches, verifies and imports layer l's index from the
// artifact; an error means "build it".
func (a *artifacts) layerIndex(ctx context.Context, l manifest.Layer) (*index.Index, error) {
	if !artifactFormat(l.Format) {
		return nil, errNoArtifact
	}
	if err := a.discover(ctx); err != nil {
		return nil, err
	}
	al, ok := a.byLayer[l.Digest]
	if !ok {
		return nil, errNoArtifact
	}
	if al.desc.Annotations[AnnotationFormat] != "" && al.desc.Annotations[AnnotationFormat] != string(l.Format) {
		err := fmt.Errorf("layer %s: artifact has a %s index, the layer is %s", l.Digest, al.desc.Annotations[AnnotationFormat], l.Format)
		a.problem(err.Error())
		return nil, err
	}
	data := al.desc.Data
	if len(data) == 0 || int64(len(data)) != al.desc.Size || digest.FromBytes(data) != al.desc.Digest {
		var err error
		data, err = a.repo.FetchBlob(ctx, al.desc.Digest, min(max(al.desc.Size, 1), maxIndexBlob)) // digest-verified
		if err != nil {
			a.problem(fmt.Sprintf("layer %s: %v", l.Digest, err))
			return nil, err
		}
	}
	ix, err := index.Import(data, l, a.scope, artifactOriginWord+" "+al.desc.Digest.String())
	if err != nil {
		a.problem(fmt.Sprintf("layer %s: index blob %s: %v", l.Digest, al.desc.Digest, err))
		return nil, err
	}
	return ix, nil
}

// report logs, in one line, the layers an artifact was found for but
// could not serve (they were built locally); for IndexRegistry it is an
// error, as is a layer left without an artifact index.
func (img *Image) reportArtifacts(source IndexSource) error {
	a := img.artifacts
	if a == nil {
		return nil
	}
	a.mu.Lock()
	problems := slices.Clone(a.problems)
	a.mu.Unlock()
	if source == IndexRegistry {
		for i, l := range img.layers {
			if artifactFormat(l.Format) && l.Index.How() != index.HowArtifact && l.Index.How() != index.HowCached {
				why := "no index artifact for it"
				if len(problems) > 0 {
					why = problems[0]
				} else if a.err != nil {
					why = a.err.Error()
				}
				return fmt.Errorf("layer %d (%s): --index-source registry: %s", i+1, l.Digest, why)
			}
		}
		return nil
	}
	if len(problems) > 0 {
		img.log.Warn("index artifact unusable; built those indexes locally", "problems", len(problems), "first", problems[0])
	}
	return nil
}

// PushResult says what PushIndexes did.
type PushResult struct {
	Artifact digest.Digest // the artifact manifest pushed (or found)
	Layers   int           // layer indexes it carries
	Existing bool          // an identical artifact was there: nothing pushed
}

// PushIndexes publishes the image's pushable layer indexes (index.Pushable:
// gzip and tar layers indexed here) as an index artifact in the image's
// repository, unless an artifact with the same index blobs is there.
func (img *Image) PushIndexes(ctx context.Context) (PushResult, error) {
	m := img.Manifest
	if img.repo == nil {
		return PushResult{}, errors.New("index artifacts are in registries: a local image has none")
	}
	if len(m.RawManifest) == 0 || m.ConfigDigest == "" {
		return PushResult{}, errors.New("index artifacts need an OCI or Docker schema 2 image in a registry")
	}
	var blobs []fetch.ArtifactBlob
	var layers []ocispec.Descriptor
	seen := map[digest.Digest]bool{}
	for _, l := range img.layers {
		if !l.Index.Pushable() || seen[l.Digest] {
			continue
		}
		seen[l.Digest] = true
		data := l.Index.Encode()
		blobs = append(blobs, fetch.ArtifactBlob{MediaType: IndexMediaType, Data: data})
		desc := ocispec.Descriptor{MediaType: IndexMediaType, Digest: digest.FromBytes(data), Size: int64(len(data)),
			Annotations: map[string]string{AnnotationLayer: l.Digest.String(), AnnotationVersion: strconv.Itoa(index.FileVersion), AnnotationFormat: string(l.Index.Format)}}
		if len(data) <= maxInlineIndex {
			desc.Data = data
		}
		layers = append(layers, desc)
	}
	if len(layers) == 0 {
		return PushResult{}, errors.New("no layer index to publish: only gzip and tar layers indexed here are (eStargz and zstd:chunked carry their own TOC; plain zstd is not lazy)")
	}
	if d, ok := img.existingArtifact(ctx, layers); ok {
		return PushResult{Artifact: d, Layers: len(layers), Existing: true}, nil
	}
	empty := ocispec.DescriptorEmptyJSON
	empty.Data = nil
	am := ocispec.Manifest{
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: ArtifactType,
		Config:       empty,
		Layers:       layers,
		Subject:      &ocispec.Descriptor{MediaType: m.MediaType, Digest: m.Digest, Size: int64(len(m.RawManifest))},
		Annotations:  map[string]string{ocispec.AnnotationCreated: time.Now().UTC().Format(time.RFC3339)},
	}
	am.SchemaVersion = 2
	body, err := json.Marshal(am)
	if err != nil {
		return PushResult{}, err
	}
	blobs = append(blobs, fetch.ArtifactBlob{MediaType: ocispec.MediaTypeEmptyJSON, Data: []byte("{}")})
	d, err := img.repo.PushArtifact(ctx, blobs, body, ArtifactTag(m.Digest))
	if err != nil {
		return PushResult{}, err
	}
	return PushResult{Artifact: d, Layers: len(layers)}, nil
}

// existingArtifact finds an artifact of the image carrying exactly these
// index blobs.
func (img *Image) existingArtifact(ctx context.Context, want []ocispec.Descriptor) (digest.Digest, bool) {
	refs, err := img.repo.Referrers(ctx, img.Manifest.Digest, ArtifactType)
	if err != nil {
		return "", false
	}
	for _, ref := range refs {
		resp, err := img.repo.Manifest(ctx, ref.Digest.String(), []string{ocispec.MediaTypeImageManifest})
		if err != nil {
			continue
		}
		var m ocispec.Manifest
		if json.Unmarshal(resp.Body, &m) != nil {
			continue
		}
		have := map[digest.Digest]bool{}
		for _, l := range m.Layers {
			have[l.Digest] = true
		}
		all := true
		for _, l := range want {
			all = all && have[l.Digest]
		}
		if all {
			return ref.Digest, true
		}
	}
	return "", false
}

// VerifyResult is one layer's comparison by VerifyIndexes.
type VerifyResult struct {
	Layer    manifest.Layer
	Artifact digest.Digest // the index blob in the registry; "" when none
	Local    digest.Digest // the index built here
	Match    bool
}

// VerifyIndexes compares, layer by layer, the index artifact in the
// registry with indexes built here from verified bytes: img must have been
// opened with IndexLocal. Identical bytes mean the artifact claims exactly
// what the layer holds (the encoding is deterministic).
func (img *Image) VerifyIndexes(ctx context.Context) ([]VerifyResult, error) {
	if img.repo == nil {
		return nil, errors.New("index artifacts are in registries: a local image has none")
	}
	a := newArtifacts(img.repo, img.Manifest.Digest, img.Manifest.MediaType, Scope(img.Manifest))
	if err := a.discover(ctx); err != nil {
		return nil, err
	}
	var out []VerifyResult
	for _, l := range img.layers {
		al, ok := a.byLayer[l.Digest]
		if !ok {
			continue
		}
		local := digest.FromBytes(l.Index.Encode())
		out = append(out, VerifyResult{Layer: l.Layer, Artifact: al.desc.Digest, Local: local, Match: local == al.desc.Digest})
	}
	return out, nil
}
