package index

import (
	"testing"

	digest "github.com/opencontainers/go-digest"

	"github.com/imgfs/imgfs/manifest"
)

// TestContentKey: a file's content key is bound to the digests of the
// spans it covers, not only to its place in the stream: two TOC indexes of
// one layer and TOC that lay a file out at the same place, with other
// chunks, give two keys (a copy made for one is never used for the other).
func TestContentKey(t *testing.T) {
	layer := digest.FromString("layer")
	reader := func(chunk byte) *Reader {
		ix := &Index{Layer: layer, Format: manifest.FormatEstargz, verified: true, Meta: map[string]string{metaTOCDigest: "sha256:toc"},
			Spans: []Span{
				{UOff: 0, ULen: 100, Check: CheckDecoded, Digest: [32]byte{1}},
				{UOff: 100, ULen: 100, Check: CheckDecoded, Digest: [32]byte{chunk}},
				{UOff: 200, ULen: 100, Check: CheckDecoded, Digest: [32]byte{3}},
			}}
		return &Reader{ix: ix, prefix: ix.cacheKeyPrefix()}
	}
	e := &Entry{Name: "f", Type: TypeReg, Offset: 50, Size: 100} // spans 0 and 1
	a, b, c := reader(2), reader(2), reader(9)
	if a.ContentKey(e) != b.ContentKey(e) {
		t.Error("one layout, two keys")
	}
	if a.ContentKey(e) == c.ContentKey(e) {
		t.Error("a file over other chunks has the same key")
	}
	if a.ContentKey(e) == a.ContentKey(&Entry{Name: "g", Type: TypeReg, Offset: 50, Size: 99}) {
		t.Error("another size, same key")
	}
	// Only the spans the file covers count.
	f := &Entry{Name: "h", Type: TypeReg, Offset: 210, Size: 50}
	if a.ContentKey(f) != c.ContentKey(f) {
		t.Error("a chunk the file does not cover changed its key")
	}
}
