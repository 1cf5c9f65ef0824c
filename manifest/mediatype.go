package manifest

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Manifest and config media types this package understands.
const (
	MediaTypeOCIIndex            = ocispec.MediaTypeImageIndex
	MediaTypeOCIManifest         = ocispec.MediaTypeImageManifest
	MediaTypeOCIConfig           = ocispec.MediaTypeImageConfig
	MediaTypeDockerManifestList  = "application/vnd.docker.distribution.manifest.list.v2+json"
	MediaTypeDockerManifest      = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerSchema1       = "application/vnd.docker.distribution.manifest.v1+json"
	MediaTypeDockerSchema1Signed = "application/vnd.docker.distribution.manifest.v1+prettyjws"
	MediaTypeDockerConfig        = "application/vnd.docker.container.image.v1+json"
)

// AcceptedManifestTypes is the Accept list of the first manifest request:
// indexes first so that multi-platform images resolve through the platform
// choice, schema 1 last as the fallback of old registries.
func AcceptedManifestTypes() []string {
	return []string{
		MediaTypeOCIIndex,
		MediaTypeDockerManifestList,
		MediaTypeOCIManifest,
		MediaTypeDockerManifest,
		MediaTypeDockerSchema1Signed,
		MediaTypeDockerSchema1,
	}
}

// imageManifestTypes is the Accept list for an index entry: it must be a
// single-platform image manifest.
func imageManifestTypes() []string {
	return []string{MediaTypeOCIManifest, MediaTypeDockerManifest}
}

type manifestKind int

const (
	kindUnknown manifestKind = iota
	kindIndex
	kindImage   // Docker schema 2 or OCI image manifest
	kindSchema1 // Docker schema 1, signed or not
)

func kindOf(mediaType string) manifestKind {
	switch mediaType {
	case MediaTypeOCIIndex, MediaTypeDockerManifestList:
		return kindIndex
	case MediaTypeOCIManifest, MediaTypeDockerManifest:
		return kindImage
	case MediaTypeDockerSchema1, MediaTypeDockerSchema1Signed:
		return kindSchema1
	}
	return kindUnknown
}

// isGenericContentType is true for Content-Types that say nothing about the
// manifest kind; registries and static file servers send them.
func isGenericContentType(ct string) bool {
	switch ct {
	case "", "application/json", "text/plain", "application/octet-stream", "binary/octet-stream":
		return true
	}
	return false
}

// manifestProbe holds just the keys that tell manifest kinds apart.
type manifestProbe struct {
	SchemaVersion *int            `json:"schemaVersion"`
	MediaType     string          `json:"mediaType"`
	Manifests     json.RawMessage `json:"manifests"`
	Config        json.RawMessage `json:"config"`
	Layers        json.RawMessage `json:"layers"`
	FSLayers      json.RawMessage `json:"fsLayers"`
	Signatures    json.RawMessage `json:"signatures"`
}

// classifyManifest decides the media type of a manifest from the
// Content-Type the registry sent and, when that is missing or generic, from
// the body's own keys. A body whose mediaType contradicts the Content-Type is
// rejected: which of the two to trust would be a guess.
func classifyManifest(contentType string, body []byte) (string, error) {
	ct := normaliseMediaType(contentType)
	var probe manifestProbe
	if err := json.Unmarshal(body, &probe); err != nil {
		return "", fmt.Errorf("manifest is not a JSON object: %w", err)
	}
	bodyType := normaliseMediaType(probe.MediaType)

	if !isGenericContentType(ct) {
		if kindOf(ct) == kindUnknown {
			return "", fmt.Errorf("unsupported manifest media type %q", contentType)
		}
		if bodyType != "" && bodyType != ct {
			return "", fmt.Errorf("registry sent Content-Type %q but the manifest says mediaType %q", ct, bodyType)
		}
		return ct, nil
	}

	if bodyType != "" {
		if kindOf(bodyType) == kindUnknown {
			return "", fmt.Errorf("unsupported manifest media type %q", probe.MediaType)
		}
		return bodyType, nil
	}
	if probe.SchemaVersion == nil {
		return "", errors.New("cannot tell the manifest type: no Content-Type, mediaType or schemaVersion")
	}
	switch *probe.SchemaVersion {
	case 1:
		if len(probe.Signatures) > 0 {
			return MediaTypeDockerSchema1Signed, nil
		}
		return MediaTypeDockerSchema1, nil
	case 2:
		// OCI allows mediaType to be absent; Docker schema 2 always has it.
		switch {
		case len(probe.Manifests) > 0:
			return MediaTypeOCIIndex, nil
		case len(probe.Config) > 0 || len(probe.Layers) > 0:
			return MediaTypeOCIManifest, nil
		}
	}
	return "", fmt.Errorf("cannot tell the manifest type (schemaVersion %d, no mediaType, manifests or layers)", *probe.SchemaVersion)
}

// normaliseMediaType lower-cases and strips parameters ("; charset=utf-8").
func normaliseMediaType(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return ""
	}
	if mt, _, err := mime.ParseMediaType(s); err == nil {
		return mt
	}
	mt, _, _ := strings.Cut(s, ";")
	return strings.ToLower(strings.TrimSpace(mt))
}
