package image

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	digest "github.com/opencontainers/go-digest"

	"github.com/imgfs/imgfs/manifest"
)

// Transports of local sources, with skopeo's (containers/image's) names.
const (
	TransportDocker        = "docker"         // a registry: [docker://]host/repo[:tag][@digest]
	TransportOCI           = "oci"            // oci:DIR[:TAG] or oci:DIR@sha256:...: an OCI image layout
	TransportOCIArchive    = "oci-archive"    // oci-archive:FILE[:TAG]: a tar of an OCI image layout
	TransportDockerArchive = "docker-archive" // docker-archive:FILE[:NAME:TAG|:@N]: 'docker save' / skopeo output
)

// Reference is an image reference as imgfs reads it: an image in a
// registry, or a local OCI layout, OCI archive or docker archive.
type Reference struct {
	// Transport is TransportDocker or one of the local ones.
	Transport string
	// Given is the reference as typed.
	Given string
	// Registry is the parsed registry reference (docker transport only).
	Registry manifest.Reference
	// Path is the absolute path of a local source.
	Path string
	// Tag names the image in a local source: a ref.name of an OCI layout's
	// index.json, or a RepoTags entry of a docker archive; "" when the
	// source holds one image.
	Tag string
	// Digest pins the manifest in an OCI layout (oci:DIR@sha256:...).
	Digest digest.Digest
	// Index selects the Nth image of a docker archive (docker-archive:FILE:@N),
	// -1 when not given.
	Index int
}

// IsLocal reports whether the reference names a local source.
func (r Reference) IsLocal() bool { return r.Transport != TransportDocker }

// String is the normalised reference: registry/repository[:tag][@digest],
// or transport:/abs/path[:tag][@digest].
func (r Reference) String() string { return r.manifestReference().String() }

// manifestReference is what manifest.Resolve names the image by.
func (r Reference) manifestReference() manifest.Reference {
	if !r.IsLocal() {
		return r.Registry
	}
	ref := manifest.Reference{Transport: r.Transport, Repository: r.Path, Tag: r.Tag, Digest: r.Digest}
	if r.Index >= 0 {
		ref.Tag = "@" + strconv.Itoa(r.Index)
	}
	return ref
}

// ParseReference parses a reference: transport:path[:tag] for the local
// transports (oci:, oci-archive:, docker-archive:; the path ends at the
// first colon, as in skopeo), otherwise [docker://]host/repo[:tag][@digest]
// in a registry. plainHTTP marks a registry reference as plain HTTP.
func ParseReference(s string, plainHTTP bool) (Reference, error) {
	for _, t := range []string{TransportOCIArchive, TransportOCI, TransportDockerArchive} {
		if rest, ok := strings.CutPrefix(s, t+":"); ok && !strings.HasPrefix(rest, "//") {
			return parseLocal(s, t, rest)
		}
	}
	if strings.HasPrefix(s, "/") || strings.HasPrefix(s, "./") || strings.HasPrefix(s, "../") {
		return Reference{}, fmt.Errorf("invalid reference %q: %s is a local path: for an OCI layout directory use oci:%s, for an archive oci-archive:%s or docker-archive:%s",
			s, s, s, s, s)
	}
	var opts []name.Option
	if plainHTTP {
		opts = append(opts, name.Insecure)
	}
	ref, err := manifest.ParseReference(s, opts...)
	if err != nil {
		if _, serr := os.Stat(s); serr == nil {
			return Reference{}, fmt.Errorf("%w (%s is a local path: for an OCI layout directory use oci:%s, for an archive oci-archive:%s or docker-archive:%s)",
				err, s, s, s, s)
		}
		return Reference{}, err
	}
	return Reference{Transport: TransportDocker, Given: s, Registry: ref, Index: -1}, nil
}

func parseLocal(given, transport, rest string) (Reference, error) {
	r := Reference{Transport: transport, Given: given, Index: -1}
	p, image, _ := strings.Cut(rest, ":")
	if transport == TransportOCI {
		// oci:DIR@sha256:HEX (no tag): the digest pins a manifest.
		if before, dgst, ok := strings.Cut(rest, "@"); ok && !strings.Contains(before, ":") {
			d, err := digest.Parse(dgst)
			if err != nil {
				return Reference{}, fmt.Errorf("invalid reference %q: digest %q: %w", given, dgst, err)
			}
			p, image, r.Digest = before, "", d
		}
	}
	if p == "" {
		return Reference{}, fmt.Errorf("invalid reference %q: no path after %s:", given, transport)
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return Reference{}, fmt.Errorf("invalid reference %q: %w", given, err)
	}
	r.Path = abs
	switch {
	case image == "":
	case transport == TransportDockerArchive && strings.HasPrefix(image, "@"):
		n, err := strconv.Atoi(image[1:])
		if err != nil || n < 0 {
			return Reference{}, fmt.Errorf("invalid reference %q: want @N, the index of an image in the archive", given)
		}
		r.Index = n
	case transport == TransportDockerArchive:
		// A docker reference (name:tag) matched against RepoTags.
		if _, err := name.NewTag(image); err != nil {
			return Reference{}, fmt.Errorf("invalid reference %q: %q: %w", given, image, err)
		}
		r.Tag = image
	default:
		if strings.ContainsAny(image, "/@ \t") {
			return Reference{}, fmt.Errorf("invalid reference %q: tag %q", given, image)
		}
		r.Tag = image
	}
	return r, nil
}
