package manifest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// schema1Payload returns the bytes a signed schema 1 manifest's digest is
// computed over: the manifest as it was before it was signed. libtrust's
// "pretty JWS" appends a "signatures" key to the JSON; each signature's
// protected header records formatLength (how many leading bytes of the body
// belong to the payload) and formatTail (the bytes that closed the payload,
// usually "\n}"). The payload is body[:formatLength] + formatTail, exactly as
// libtrust's ParsePrettySignature rebuilds it; registries report this
// payload's digest in Docker-Content-Digest and accept it in by-digest GETs.
//
// ok is false when the body has no signatures (an unsigned schema 1
// manifest, whose digest is over the raw bytes). Signatures are not verified
// cryptographically: like Docker, we rely on the digest, not on the key.
func schema1Payload(body []byte) (payload []byte, ok bool, err error) {
	var envelope struct {
		Signatures []struct {
			Protected string `json:"protected"`
		} `json:"signatures"`
	}
	if err := json.Unmarshal(body, &envelope); err != nil {
		return nil, false, fmt.Errorf("schema 1 signatures: %w", err)
	}
	if len(envelope.Signatures) == 0 {
		return nil, false, nil
	}
	formatLength := -1
	var formatTail []byte
	for i, sig := range envelope.Signatures {
		raw, err := decodeJOSEBase64(sig.Protected)
		if err != nil {
			return nil, false, fmt.Errorf("schema 1 signature %d: protected header: %w", i, err)
		}
		var header struct {
			FormatLength *int    `json:"formatLength"`
			FormatTail   *string `json:"formatTail"`
		}
		if err := json.Unmarshal(raw, &header); err != nil {
			return nil, false, fmt.Errorf("schema 1 signature %d: protected header: %w", i, err)
		}
		if header.FormatLength == nil || header.FormatTail == nil {
			return nil, false, fmt.Errorf("schema 1 signature %d: protected header lacks formatLength/formatTail", i)
		}
		tail, err := decodeJOSEBase64(*header.FormatTail)
		if err != nil {
			return nil, false, fmt.Errorf("schema 1 signature %d: formatTail: %w", i, err)
		}
		if formatLength >= 0 && (formatLength != *header.FormatLength || !bytes.Equal(formatTail, tail)) {
			return nil, false, errors.New("schema 1 signatures disagree on the signed payload")
		}
		formatLength, formatTail = *header.FormatLength, tail
	}
	if formatLength < 0 || formatLength > len(body) {
		return nil, false, fmt.Errorf("schema 1 signature: formatLength %d outside the %d-byte manifest", formatLength, len(body))
	}
	payload = make([]byte, 0, formatLength+len(formatTail))
	payload = append(payload, body[:formatLength]...)
	payload = append(payload, formatTail...)
	return payload, true, nil
}

// decodeJOSEBase64 decodes base64url with the padding JOSE leaves out.
func decodeJOSEBase64(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}
