package image

import (
	"strings"

	"github.com/imgfs/imgfs/fs"
	"github.com/imgfs/imgfs/manifest"
)

// provenance is where the image came from, as Apptainer records it in a
// sandbox it builds from the same reference.
func provenance(ref Reference, m *manifest.Image) fs.Provenance {
	if ref.IsLocal() {
		from := ref.Path
		if ref.Tag != "" {
			from += ":" + ref.Tag
		}
		return fs.Provenance{Bootstrap: ref.Transport, From: from}
	}
	p := fs.Provenance{Bootstrap: "docker", From: strings.TrimPrefix(ref.Given, "docker://")}
	// What containers/image calls the docker reference: Docker Hub as
	// docker.io, the tag and the digest as given.
	r := ref.Registry
	if r.Registry == "index.docker.io" {
		r.Registry = "docker.io"
	}
	p.BaseName = r.String()
	p.BaseDigest = m.Digest.String()
	if m.IndexDigest != "" && r.Digest != m.Digest {
		p.BaseDigest = m.IndexDigest.String() // what the reference resolved to
	}
	return p
}
