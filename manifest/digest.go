package manifest

import (
	_ "crypto/sha256" // registers sha256 with go-digest
	_ "crypto/sha512" // registers sha384/sha512 with go-digest
	"fmt"

	digest "github.com/opencontainers/go-digest"

	"github.com/imgfs/imgfs/fetch"
)

// manifestBytes is a manifest body with the bytes its digest is over: the
// body itself, or for a signed schema 1 manifest the JWS payload (see
// schema1Payload).
type manifestBytes struct {
	body    []byte
	payload []byte // signed schema 1 only
}

func newManifestBytes(body []byte, mediaType string) (manifestBytes, error) {
	mb := manifestBytes{body: body}
	if kindOf(mediaType) == kindSchema1 {
		payload, signed, err := schema1Payload(body)
		if err != nil {
			return mb, err
		}
		if signed {
			mb.payload = payload
		}
	}
	return mb, nil
}

// digest is the sha256 digest registries name this manifest by.
func (m manifestBytes) digest() digest.Digest {
	if m.payload != nil {
		return digest.SHA256.FromBytes(m.payload)
	}
	return digest.SHA256.FromBytes(m.body)
}

// verify checks want against the bytes. A signed schema 1 manifest matches
// by its payload (what registries report) or by its raw bytes (what a client
// that hashed the response would have recorded).
func (m manifestBytes) verify(want digest.Digest) error {
	if err := want.Validate(); err != nil {
		return fmt.Errorf("invalid digest %q: %w", want, err)
	}
	alg := want.Algorithm()
	if alg.FromBytes(m.body) == want {
		return nil
	}
	if m.payload != nil && alg.FromBytes(m.payload) == want {
		return nil
	}
	got := alg.FromBytes(m.body)
	if m.payload != nil {
		got = alg.FromBytes(m.payload)
	}
	return fmt.Errorf("%w: expected %s, received bytes hash to %s", fetch.ErrDigest, want, got)
}
