package index

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"

	digest "github.com/opencontainers/go-digest"

	"github.com/imgfs/imgfs/manifest"
)

// What a stored index (and a cached span) may be reused for is part of its
// name, so that no registry can plant one that another image then uses:
//
//   - An index built from bytes that matched the layer digest (gzip, plain
//     zstd) describes whatever blob has that digest, for every manifest and
//     registry that names it: <hex>.gzip, <hex>.zstd.
//   - An index of an eStargz or zstd:chunked layer whose manifest pins the
//     TOC is a property of the digest and that TOC: <hex>.estargz.<toc hex>.
//   - Anything else is unverified: an uncompressed tar (checking its digest
//     means downloading it), a TOC no annotation pins, a TOC without chunk
//     digests. It is only reused for the registry and repository that
//     served it (the scope): <hex>.tar.<scope tag>, <hex>.estargz.<scope
//     tag>, <hex>.estargz.<toc hex>.<scope tag>.
//   - An index taken from an index artifact in a registry (see Import) is
//     unverified whatever its format: <hex>.gzip.artifact.<scope tag>,
//     <hex>.tar.artifact.<scope tag>. It is looked for after the local
//     names, so a local build, once there, wins.
//
// A declared media type is never trusted across formats: a layer declared
// gzip whose bytes turn out to be a tar gets a scoped tar index, and a
// later mount of the real gzip layer never finds it.

// metaScope is the Meta key holding the scope of an unverified index.
const metaScope = "scope"

// scopeTag is the short form of a scope used in names.
func scopeTag(scope string) string {
	sum := sha256.Sum256([]byte(scope))
	return hex.EncodeToString(sum[:8])
}

// formatTag is a format as it appears in names.
func formatTag(f manifest.Format) string { return strings.ReplaceAll(string(f), ":", "-") }

// fileName is the name ix is stored under in <cacheDir>/index/<algorithm>/.
func (ix *Index) fileName() string {
	name := ix.Layer.Encoded() + "." + formatTag(ix.Format)
	if ix.Meta[metaTOCPinned] == "true" {
		name += "." + digest.Digest(ix.Meta[metaTOCDigest]).Encoded()
	}
	if !ix.verified {
		if ix.Meta[metaOrigin] != "" {
			name += ".artifact"
		}
		name += "." + scopeTag(ix.Meta[metaScope])
	}
	return name
}

// candidateNames are the names under which an index usable for layer l,
// served from scope, may be stored, most trusted first.
func candidateNames(l manifest.Layer, scope string) []string {
	hex, scoped := l.Digest.Encoded(), scopeTag(scope)
	switch l.Format {
	case manifest.FormatEstargz, manifest.FormatZstdChunked:
		base := hex + "." + formatTag(l.Format)
		_, pin := tocPin(l)
		toc, err := digest.Parse(pin)
		if pin == "" || err != nil {
			return []string{base + "." + scoped}
		}
		return []string{base + "." + toc.Encoded(), base + "." + toc.Encoded() + "." + scoped}
	}
	// The content decides between these (magic bytes): any of them.
	return []string{hex + ".gzip", hex + ".zstd", hex + ".tar." + scoped,
		hex + ".gzip.artifact." + scoped, hex + ".tar.artifact." + scoped}
}

// usableFor reports whether a loaded index may serve layer l from scope:
// it describes that digest, is stored under the name its own identity
// gives, and an unverified one came from the same scope.
func (ix *Index) usableFor(name string, l manifest.Layer, scope string) bool {
	if ix.Layer != l.Digest || ix.fileName() != name {
		return false
	}
	return ix.verified || ix.Meta[metaScope] == scope
}
