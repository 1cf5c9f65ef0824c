package index

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/imgfs/imgfs/manifest"
)

// FileVersion is the version of the index file encoding this imgfs reads
// and writes: an index artifact in a registry records it per layer, and a
// reader skips blobs of another version.
const FileVersion = indexVersion

// metaOrigin is the Meta key recording where an index that was not built
// here came from ("artifact sha256:<index blob digest>"); "" for local
// builds.
const metaOrigin = "origin"

// Encode returns the bytes of ix's index file: what Open stores under the
// cache dir, and what an index artifact carries. The encoding is
// deterministic: two builds of one verified layer give the same bytes.
func (ix *Index) Encode() []byte { return encodeIndex(ix) }

// Origin is where the index came from: "" for an index built on this
// machine (or stored by one), "artifact <digest>" for one taken from an
// index artifact in a registry.
func (ix *Index) Origin() string { return ix.Meta[metaOrigin] }

// Pushable reports whether ix may be published as an index artifact: a
// local build of a gzip layer (verified: every span carries the sha256 of
// its compressed bytes) or of an uncompressed tar layer (whose header walk
// costs many range requests). TOC formats are cheap to index from their
// TOC, plain zstd indexes describe a local copy, and an index taken from
// an artifact is not published again.
func (ix *Index) Pushable() bool {
	if ix.Origin() != "" {
		return false
	}
	return ix.Format == manifest.FormatGzip && ix.verified || ix.Format == manifest.FormatTar
}

// Import decodes an index file that was not built here (a blob of an
// index artifact) for layer l served from scope; origin says where it
// came from and is recorded in the index (see Origin).
//
// The file is checked as a stored one is (checksum, version, every bound
// the read path relies on), and must describe l: its digest, its format
// (gzip or tar only: see Pushable) and its compressed size. What it cannot
// be checked for without the whole blob (the file tree it claims, and how
// compressed spans decode: checkpoint windows and bit offsets) is trusted
// as far as the scope is: the index is marked unverified, so it is stored
// and cached under names carrying the scope and the origin (identity.go),
// never under those of an index built from verified bytes. Spans keep
// their digests: bytes fetched from the blob are still checked against
// them, so a registry that serves other blob bytes than the index's author
// saw is caught on read.
func Import(data []byte, l manifest.Layer, scope, origin string) (*Index, error) {
	ix, err := decodeIndex(data)
	if err != nil {
		return nil, err
	}
	switch {
	case ix.Layer != l.Digest:
		return nil, fmt.Errorf("index describes layer %s, not %s: %w", ix.Layer, l.Digest, ErrCorrupt)
	case ix.Format != manifest.FormatGzip && ix.Format != manifest.FormatTar:
		return nil, fmt.Errorf("index of a %s layer: only gzip and tar indexes are taken from a registry: %w", ix.Format, ErrUnsupported)
	case l.Format != ix.Format && !(l.Format == manifest.FormatGzip && ix.Format == manifest.FormatTar):
		return nil, fmt.Errorf("index of a %s layer for a layer declared %s: %w", ix.Format, l.Format, ErrCorrupt)
	case l.Size >= 0 && ix.blobSize != l.Size:
		return nil, fmt.Errorf("index of a %d-byte blob for a %d-byte layer: %w", ix.blobSize, l.Size, ErrCorrupt)
	case hasLocalSpans(ix):
		return nil, fmt.Errorf("index names a local copy: %w", ErrCorrupt)
	}
	ix.verified = false
	if ix.Meta == nil {
		ix.Meta = map[string]string{}
	}
	ix.Meta[metaScope] = scope
	ix.Meta[metaOrigin] = origin
	if err := ix.validate(); err != nil {
		return nil, err
	}
	return ix, nil
}

// Cached reports whether a file named as an index usable for layer l
// served from scope is in one of cacheDirs: a cheap test (one stat per
// name, nothing read) of whether Open will find one; Lookup still checks
// what it finds.
func Cached(cacheDirs []string, l manifest.Layer, scope string) bool {
	for _, d := range cacheDirs {
		dir, err := indexDir(d, l.Digest)
		if err != nil {
			return false
		}
		for _, name := range candidateNames(l, scope) {
			if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
				return true
			}
		}
	}
	return false
}
