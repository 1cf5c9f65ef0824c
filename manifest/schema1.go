package manifest

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// schema1LayerMediaType is what schema 1 layers are: the format predates
// media types, and every schema 1 layer is a gzipped tar.
const schema1LayerMediaType = "application/vnd.docker.image.rootfs.diff.tar.gzip"

// schema1Manifest is a Docker image manifest, schema version 1. fsLayers and
// history are parallel arrays, newest layer first.
type schema1Manifest struct {
	SchemaVersion int    `json:"schemaVersion"`
	Name          string `json:"name"`
	Tag           string `json:"tag"`
	Architecture  string `json:"architecture"`
	FSLayers      []struct {
		BlobSum string `json:"blobSum"`
	} `json:"fsLayers"`
	History []struct {
		V1Compatibility string `json:"v1Compatibility"`
	} `json:"history"`
}

// v1Compatibility is the legacy v1 image JSON embedded per layer. The newest
// entry carries the image's runtime config.
type v1Compatibility struct {
	Created         string             `json:"created"`
	Author          string             `json:"author"`
	Architecture    string             `json:"architecture"`
	Variant         string             `json:"variant"`
	OS              string             `json:"os"`
	Comment         string             `json:"comment"`
	Throwaway       bool               `json:"throwaway"`
	Config          *v1ContainerConfig `json:"config"`
	ContainerConfig *struct {
		Cmd stringList `json:"Cmd"`
	} `json:"container_config"`
}

type v1ContainerConfig struct {
	User         string              `json:"User"`
	ExposedPorts map[string]struct{} `json:"ExposedPorts"`
	Env          []string            `json:"Env"`
	Cmd          stringList          `json:"Cmd"`
	Entrypoint   stringList          `json:"Entrypoint"`
	Volumes      map[string]struct{} `json:"Volumes"`
	WorkingDir   string              `json:"WorkingDir"`
	Labels       map[string]string   `json:"Labels"`
	StopSignal   string              `json:"StopSignal"`
	ArgsEscaped  bool                `json:"ArgsEscaped"`
}

// stringList accepts a JSON array of strings or a single string, as old
// Docker versions wrote Cmd and Entrypoint both ways.
type stringList []string

func (s *stringList) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*s = stringList{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return err
	}
	*s = many
	return nil
}

// schema1Image is what a schema 1 manifest yields: layers base-first and a
// config rebuilt from the newest history entry.
type schema1Image struct {
	Layers []Layer
	Config ocispec.Image
}

// parseSchema1 converts a schema 1 manifest. Layers whose history entry is
// marked "throwaway" (empty layers of metadata-only instructions) are
// dropped, as Docker's schema 1 puller does.
func parseSchema1(body []byte) (*schema1Image, error) {
	var m schema1Manifest
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, fmt.Errorf("schema 1 manifest: %w", err)
	}
	if m.SchemaVersion != 1 {
		return nil, fmt.Errorf("schema 1 manifest: schemaVersion is %d", m.SchemaVersion)
	}
	if len(m.FSLayers) == 0 {
		return nil, errors.New("schema 1 manifest: no fsLayers")
	}
	if len(m.FSLayers) != len(m.History) {
		return nil, fmt.Errorf("schema 1 manifest: %d fsLayers but %d history entries", len(m.FSLayers), len(m.History))
	}

	compat := make([]v1Compatibility, len(m.History))
	for i, h := range m.History {
		if err := json.Unmarshal([]byte(h.V1Compatibility), &compat[i]); err != nil {
			return nil, fmt.Errorf("schema 1 manifest: history[%d].v1Compatibility: %w", i, err)
		}
	}

	img := &schema1Image{Layers: []Layer{}}
	// Walk from the oldest (last) entry to the newest (first).
	for i := len(m.FSLayers) - 1; i >= 0; i-- {
		c := compat[i]
		img.Config.History = append(img.Config.History, ocispec.History{
			Created:    parseTime(c.Created),
			CreatedBy:  createdBy(c),
			Author:     c.Author,
			Comment:    c.Comment,
			EmptyLayer: c.Throwaway,
		})
		if c.Throwaway {
			continue
		}
		d, err := digest.Parse(m.FSLayers[i].BlobSum)
		if err != nil {
			return nil, fmt.Errorf("schema 1 manifest: fsLayers[%d].blobSum %q: %w", i, m.FSLayers[i].BlobSum, err)
		}
		img.Layers = append(img.Layers, Layer{
			Digest:    d,
			MediaType: schema1LayerMediaType,
			Size:      -1,
			Format:    FormatGzip,
		})
	}

	newest := compat[0]
	img.Config.Created = parseTime(newest.Created)
	img.Config.Author = newest.Author
	img.Config.OS = newest.OS
	if img.Config.OS == "" {
		img.Config.OS = "linux"
	}
	img.Config.Architecture = newest.Architecture
	if img.Config.Architecture == "" {
		img.Config.Architecture = m.Architecture
	}
	img.Config.Variant = newest.Variant
	img.Config.Platform = NormalizePlatform(img.Config.Platform)
	img.Config.RootFS.Type = "layers" // diff IDs are unknown until the layers are read
	if c := newest.Config; c != nil {
		img.Config.Config = ocispec.ImageConfig{
			User:         c.User,
			ExposedPorts: c.ExposedPorts,
			Env:          c.Env,
			Entrypoint:   c.Entrypoint,
			Cmd:          c.Cmd,
			Volumes:      c.Volumes,
			WorkingDir:   c.WorkingDir,
			Labels:       c.Labels,
			StopSignal:   c.StopSignal,
			ArgsEscaped:  c.ArgsEscaped,
		}
	}
	return img, nil
}

func createdBy(c v1Compatibility) string {
	if c.ContainerConfig == nil {
		return ""
	}
	return strings.Join(c.ContainerConfig.Cmd, " ")
}

// parseTime is lenient: a malformed timestamp in legacy metadata is not worth
// refusing an image for.
func parseTime(s string) *time.Time {
	if s == "" {
		return nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return nil
	}
	return &t
}
