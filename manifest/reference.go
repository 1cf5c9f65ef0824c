package manifest

import (
	"errors"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	digest "github.com/opencontainers/go-digest"
)

// dockerTransport is the only transport prefix accepted; Singularity and
// Apptainer users write docker://ubuntu out of habit.
const dockerTransport = "docker://"

// Reference is a parsed, normalised image reference. The embedded
// name.Reference is what fetch needs (Context() is the repository).
type Reference struct {
	// Transport is "" for an image in a registry; for a local source it
	// names its kind (skopeo's transport names: oci, oci-archive,
	// docker-archive), Repository is then its absolute path and Registry
	// is empty.
	Transport  string
	Registry   string        // e.g. index.docker.io, 127.0.0.1:5000
	Repository string        // e.g. library/ubuntu
	Tag        string        // "latest" when neither tag nor digest was given; "" when only a digest was
	Digest     digest.Digest // "" unless the reference pinned one
	name.Reference
}

// String is the fully normalised reference: registry/repository[:tag][@digest],
// or transport:path[:tag][@digest] for a local source.
func (r Reference) String() string {
	s := r.Registry + "/" + r.Repository
	if r.Transport != "" {
		s = r.Transport + ":" + r.Repository
	}
	if r.Tag != "" {
		s += ":" + r.Tag
	}
	if r.Digest != "" {
		s += "@" + r.Digest.String()
	}
	return s
}

// Identifier is what to ask the registry for: the digest when pinned (it
// wins over a tag, as in Docker), else the tag.
func (r Reference) Identifier() string {
	if r.Digest != "" {
		return r.Digest.String()
	}
	return r.Tag
}

// ParseReference parses "[docker://][host[:port]/]path[:tag][@digest]" with
// Docker Hub defaults (ubuntu -> index.docker.io/library/ubuntu:latest).
// opts are passed to go-containerregistry (e.g. name.Insecure for plain HTTP).
func ParseReference(s string, opts ...name.Option) (Reference, error) {
	ref, err := parseReference(s, opts...)
	if err == nil && len(ref.Repository) > maxRepositoryLength {
		// go-containerregistry checks the length before adding Docker Hub's
		// "library/": the name it would then use is itself invalid.
		err = fmt.Errorf("repository %s is longer than %d characters", ref.Repository, maxRepositoryLength)
	}
	if err != nil {
		return Reference{}, fmt.Errorf("invalid reference %q: %w", s, err)
	}
	return ref, nil
}

// maxRepositoryLength is the distribution spec's bound on a repository name.
const maxRepositoryLength = 255

func parseReference(s string, opts ...name.Option) (Reference, error) {
	trimmed := strings.TrimSpace(s)
	if trimmed != s {
		return Reference{}, errors.New("leading or trailing white space")
	}
	if t, ok := strings.CutPrefix(s, dockerTransport); ok {
		s = t
		if strings.Contains(s, "://") {
			// "docker://://" once parsed, into a name that did not parse again.
			return Reference{}, errors.New("a second transport after docker://")
		}
	} else if transport, _, ok := strings.Cut(s, "://"); ok {
		return Reference{}, fmt.Errorf("unsupported transport %q: only docker:// (or no prefix) is supported", transport+"://")
	}
	if s == "" {
		return Reference{}, errors.New("empty image name")
	}

	if base, dgst, pinned := strings.Cut(s, "@"); pinned {
		d, err := name.NewDigest(s, opts...)
		if err != nil {
			return Reference{}, err
		}
		parsed, err := digest.Parse(dgst)
		if err != nil {
			return Reference{}, fmt.Errorf("digest %q: %w", dgst, err)
		}
		ref := Reference{
			Registry:   d.Context().RegistryStr(),
			Repository: d.Context().RepositoryStr(),
			Digest:     parsed,
			Reference:  d,
		}
		// name.NewDigest drops a tag given with the digest; keep it for display.
		if hasExplicitTag(base) {
			t, err := name.NewTag(base, opts...)
			if err != nil {
				return Reference{}, err
			}
			ref.Tag = t.TagStr()
		}
		return ref, nil
	}

	t, err := name.NewTag(s, opts...)
	if err != nil {
		return Reference{}, err
	}
	return Reference{
		Registry:   t.Context().RegistryStr(),
		Repository: t.Context().RepositoryStr(),
		Tag:        t.TagStr(),
		Reference:  t,
	}, nil
}

// hasExplicitTag reports whether base ("host:port/repo:tag") names a tag: a
// colon after the last slash. A colon before it is a port.
func hasExplicitTag(base string) bool {
	i := strings.LastIndex(base, ":")
	return i >= 0 && !strings.Contains(base[i+1:], "/")
}
