package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"text/template"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"

	"github.com/imgfs/imgfs/image"
	"github.com/imgfs/imgfs/manifest"
)

func init() { registerCommand(newInspectCommand) }

// inspectCommand holds the flags of one inspect run.
type inspectCommand struct {
	app       *app
	jsonOut   bool
	raw       bool
	rawConfig bool
	format    string
}

func newInspectCommand(a *app) *cobra.Command {
	ic := &inspectCommand{app: a}
	cmd := &cobra.Command{
		Use:   "inspect IMAGE",
		Short: "Show an image's digest, platforms, layers and config",
		Long: `Resolve IMAGE in its registry and describe it: the reference's parts, the
digest and media type of the manifest, the index and the platforms it offers
(the chosen one marked *), every layer with its media type, format and
sizes (uncompressed once its index is cached: see 'imgfs index'), the total
size, the config (created, env, entrypoint, cmd, working directory, user,
labels, exposed ports, volumes) and its history (when each step was made,
by what command, and which made no layer).

IMAGE is a registry reference, or a local source: oci:DIR[:TAG],
oci-archive:FILE[:TAG], docker-archive:FILE[:NAME:TAG].

--json prints the same as a stable JSON document. --format prints it with a
Go template over that document's fields ({{.Digest}}, {{.Config.Created}},
{{json .Config.Config.Env}}, {{range .Layers}}{{.Digest}} {{end}}...;
functions json, join, upper, lower). --raw prints the manifest the reference
points at exactly as the registry sent it: for a multi-platform image that is
the index; inspect IMAGE@<digest> --raw shows one platform's. --config prints
the image's config blob exactly as stored.`,
		Example: `  imgfs inspect ubuntu:22.04
  imgfs inspect --platform linux/arm64 docker://alpine --json
  imgfs inspect --raw ghcr.io/org/app@sha256:...
  imgfs inspect --config alpine:3.20 | jq .history
  imgfs inspect --format '{{.Digest}} {{.Platform}}' debian:12
  imgfs inspect oci:./layout:v1
  imgfs --plain-http -v inspect 127.0.0.1:5000/app:dev`,
		Args: exactArgs("IMAGE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return ic.run(cmd, args[0])
		},
	}
	cmd.Flags().BoolVar(&ic.jsonOut, "json", false, "print a JSON document")
	cmd.Flags().BoolVar(&ic.raw, "raw", false, "print the manifest bytes exactly as received")
	cmd.Flags().BoolVar(&ic.rawConfig, "config", false, "print the config blob exactly as stored")
	cmd.Flags().StringVar(&ic.format, "format", "", "print with a Go template over the --json document")
	return cmd
}

func (ic *inspectCommand) run(cmd *cobra.Command, reference string) error {
	set := 0
	for _, on := range []bool{ic.jsonOut, ic.raw, ic.rawConfig, ic.format != ""} {
		if on {
			set++
		}
	}
	if set > 1 {
		if ic.jsonOut && ic.raw && set == 2 {
			return usageErrorf("--json and --raw cannot be used together")
		}
		return usageErrorf("--json, --format, --raw and --config cannot be used together")
	}
	var tmpl *template.Template
	if ic.format != "" {
		var err error
		if tmpl, err = parseFormat(ic.format); err != nil {
			return err
		}
	}
	opts, err := ic.app.imageOptions(cmd)
	if err != nil {
		return err
	}
	img, err := image.Resolve(cmd.Context(), reference, opts)
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	if ic.raw {
		raw := img.RawManifest
		if img.RawIndex != nil {
			raw = img.RawIndex
		}
		_, err := out.Write(raw)
		return err
	}
	if ic.rawConfig {
		if img.RawConfig == nil { // schema 1: the config is in the manifest
			return errors.New("the image has no config blob (a schema 1 manifest embeds it; see --raw)")
		}
		_, err := out.Write(img.RawConfig)
		return err
	}
	doc := newInspectOutput(img, func(l manifest.Layer) (int64, bool) {
		return image.UncompressedSize(opts.CacheDir, image.Scope(img), l)
	})
	if ic.jsonOut {
		return printJSON(out, doc)
	}
	if tmpl != nil {
		return executeFormat(out, tmpl, doc)
	}
	return writeInspectText(out, doc)
}

// InspectOutput is the document inspect --json prints. Its shape is stable:
// every key is always present, empty values are "", [], {} or null (created
// only). Names follow manifest.Image and, inside "config", the OCI image
// config, so the document also decodes into a manifest.Image.
type InspectOutput struct {
	Reference      string            `json:"reference"` // normalised: registry/repository[:tag][@digest], or transport:/path[:tag]
	Transport      string            `json:"transport"` // docker (a registry), oci, oci-archive, docker-archive
	Registry       string            `json:"registry"`
	Repository     string            `json:"repository"`
	Tag            string            `json:"tag"` // "" when pinned by digest only
	Digest         string            `json:"digest"`
	MediaType      string            `json:"mediaType"`
	SchemaVersion  int               `json:"schemaVersion"`
	Platform       InspectPlatform   `json:"platform"`       // of the image described
	IndexDigest    string            `json:"indexDigest"`    // "" when the reference names a single manifest
	IndexMediaType string            `json:"indexMediaType"` // ""  likewise
	Platforms      []InspectPlatform `json:"platforms"`      // image platforms the index offers, index order
	ConfigDigest   string            `json:"configDigest"`   // "" for schema 1 (config embedded in the manifest)
	Config         InspectConfig     `json:"config"`
	Layers         []InspectLayer    `json:"layers"`    // base first
	TotalSize      int64             `json:"totalSize"` // compressed layers + config; -1 when a size is unknown (schema 1)
}

// InspectPlatform is os/architecture/variant, normalised.
type InspectPlatform struct {
	OS           string `json:"os"`
	Architecture string `json:"architecture"`
	Variant      string `json:"variant"`
}

func (p InspectPlatform) String() string {
	if p.OS == "" && p.Architecture == "" {
		return ""
	}
	return manifest.FormatPlatform(ocispec.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant})
}

// InspectConfig is the part of the image config that matters to users.
type InspectConfig struct {
	Created *string              `json:"created"` // RFC 3339; null when unknown
	Author  string               `json:"author"`
	Config  InspectRuntimeConfig `json:"config"`
	History []InspectHistory     `json:"history"` // oldest first
}

// InspectHistory is one step of the config's history, with the OCI key
// names.
type InspectHistory struct {
	Created    *string `json:"created"` // RFC 3339; null when unknown
	CreatedBy  string  `json:"created_by"`
	Author     string  `json:"author"`
	Comment    string  `json:"comment"`
	EmptyLayer bool    `json:"empty_layer"` // the step made no layer
}

// InspectRuntimeConfig keeps the OCI image config's key names.
type InspectRuntimeConfig struct {
	Env          []string            `json:"Env"`
	Entrypoint   []string            `json:"Entrypoint"`
	Cmd          []string            `json:"Cmd"`
	WorkingDir   string              `json:"WorkingDir"`
	User         string              `json:"User"`
	Labels       map[string]string   `json:"Labels"`
	ExposedPorts map[string]struct{} `json:"ExposedPorts"` // OCI form: {"80/tcp": {}}
	Volumes      map[string]struct{} `json:"Volumes"`      // OCI form: {"/data": {}}
	StopSignal   string              `json:"StopSignal"`
}

// InspectLayer is one layer.
type InspectLayer struct {
	Digest           string            `json:"digest"`
	MediaType        string            `json:"mediaType"`
	Format           string            `json:"format"`
	Size             int64             `json:"size"`             // compressed; -1 when unknown
	UncompressedSize *int64            `json:"uncompressedSize"` // null when unknown
	DiffID           string            `json:"diffID"`
	URLs             []string          `json:"urls"` // where foreign layers are fetched from
	Annotations      map[string]string `json:"annotations"`
}

func inspectPlatform(p ocispec.Platform) InspectPlatform {
	return InspectPlatform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant}
}

// newInspectOutput describes img; uncompressed tells a layer's
// uncompressed size when something knows it (nil: nothing does).
func newInspectOutput(img *manifest.Image, uncompressed func(manifest.Layer) (int64, bool)) *InspectOutput {
	c := img.Config.Config
	transport := img.Transport
	if transport == "" {
		transport = "docker"
	}
	doc := &InspectOutput{
		Reference:      img.Name,
		Transport:      transport,
		Registry:       img.Registry,
		Repository:     img.Repository,
		Tag:            img.Tag,
		Digest:         img.Digest.String(),
		MediaType:      img.MediaType,
		SchemaVersion:  img.SchemaVersion,
		Platform:       inspectPlatform(img.Platform),
		IndexDigest:    img.IndexDigest.String(),
		IndexMediaType: img.IndexMediaType,
		Platforms:      []InspectPlatform{},
		ConfigDigest:   img.ConfigDigest.String(),
		Config: InspectConfig{
			Author: img.Config.Author,
			Config: InspectRuntimeConfig{
				Env:          nonNil(c.Env),
				Entrypoint:   nonNil(c.Entrypoint),
				Cmd:          nonNil(c.Cmd),
				WorkingDir:   c.WorkingDir,
				User:         c.User,
				Labels:       map[string]string{},
				ExposedPorts: map[string]struct{}{},
				Volumes:      map[string]struct{}{},
				StopSignal:   c.StopSignal,
			},
			History: []InspectHistory{},
		},
		Layers:    []InspectLayer{},
		TotalSize: img.Size(),
	}
	if img.Config.Created != nil {
		created := img.Config.Created.UTC().Format(time.RFC3339)
		doc.Config.Created = &created
	}
	for _, h := range img.Config.History {
		ih := InspectHistory{CreatedBy: h.CreatedBy, Author: h.Author, Comment: h.Comment, EmptyLayer: h.EmptyLayer}
		if h.Created != nil {
			created := h.Created.UTC().Format(time.RFC3339)
			ih.Created = &created
		}
		doc.Config.History = append(doc.Config.History, ih)
	}
	maps.Copy(doc.Config.Config.Labels, c.Labels)
	maps.Copy(doc.Config.Config.ExposedPorts, c.ExposedPorts)
	maps.Copy(doc.Config.Config.Volumes, c.Volumes)
	for _, p := range img.Platforms {
		doc.Platforms = append(doc.Platforms, inspectPlatform(p))
	}
	for _, l := range img.Layers {
		il := InspectLayer{
			Digest:      l.Digest.String(),
			MediaType:   l.MediaType,
			Format:      string(l.Format),
			Size:        l.Size,
			DiffID:      l.DiffID.String(),
			URLs:        nonNil(l.URLs),
			Annotations: map[string]string{},
		}
		maps.Copy(il.Annotations, l.Annotations)
		if uncompressed != nil {
			if n, ok := uncompressed(l); ok {
				il.UncompressedSize = &n
			}
		}
		doc.Layers = append(doc.Layers, il)
	}
	return doc
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// writeInspectText prints the human form of doc.
func writeInspectText(w io.Writer, doc *InspectOutput) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	field := func(name, value string) {
		if value == "" {
			value = "-"
		}
		fmt.Fprintf(tw, "%s:\t%s\n", name, value)
	}
	field("Reference", doc.Reference)
	field("Registry", doc.Registry)
	field("Repository", doc.Repository)
	field("Tag", doc.Tag)
	field("Digest", doc.Digest)
	field("Media type", doc.MediaType)
	if doc.IndexDigest != "" {
		field("Index", doc.IndexDigest+" ("+doc.IndexMediaType+")")
		var ps []string
		for _, p := range doc.Platforms {
			name := p.String()
			if p == doc.Platform {
				name += " *"
			}
			ps = append(ps, name)
		}
		field("Platforms", strings.Join(ps, ", "))
	}
	field("Platform", doc.Platform.String())
	field("Config", doc.ConfigDigest)
	created := ""
	if doc.Config.Created != nil {
		created = *doc.Config.Created
	}
	field("Created", created)
	if doc.Config.Author != "" {
		field("Author", doc.Config.Author)
	}
	total := "unknown (schema 1 manifests do not record layer sizes)"
	if doc.TotalSize >= 0 {
		total = sizeText(doc.TotalSize)
	}
	field("Total size", total)
	rc := doc.Config.Config
	field("Entrypoint", argvText(rc.Entrypoint))
	field("Cmd", argvText(rc.Cmd))
	field("Working dir", rc.WorkingDir)
	field("User", rc.User)
	field("Exposed ports", strings.Join(slices.Sorted(maps.Keys(rc.ExposedPorts)), ", "))
	field("Volumes", strings.Join(slices.Sorted(maps.Keys(rc.Volumes)), ", "))
	if rc.StopSignal != "" {
		field("Stop signal", rc.StopSignal)
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	list := func(title string, items []string) {
		fmt.Fprintf(w, "%s:\n", title)
		if len(items) == 0 {
			fmt.Fprintln(w, "  -")
		}
		for _, it := range items {
			fmt.Fprintf(w, "  %s\n", it)
		}
	}
	list("Env", rc.Env)
	var labels []string
	for _, k := range slices.Sorted(maps.Keys(rc.Labels)) {
		labels = append(labels, k+"="+rc.Labels[k])
	}
	list("Labels", labels)
	var history []string
	for _, h := range doc.Config.History {
		when := "-"
		if h.Created != nil {
			when = *h.Created
		}
		step := strings.Join(strings.Fields(h.CreatedBy), " ")
		if step == "" {
			step = "-"
		}
		if h.EmptyLayer {
			step += "  (no layer)"
		}
		if h.Comment != "" {
			step += "  # " + strings.Join(strings.Fields(h.Comment), " ")
		}
		history = append(history, when+"  "+step)
	}
	list("History", history)

	fmt.Fprintf(w, "Layers (%d, base first):\n", len(doc.Layers))
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  #\tDIGEST\tMEDIA TYPE\tFORMAT\tCOMPRESSED\tUNCOMPRESSED")
	var notes []string
	for i, l := range doc.Layers {
		compressed := "unknown"
		if l.Size >= 0 {
			compressed = sizeText(l.Size)
		}
		uncompressed := "-"
		if l.UncompressedSize != nil {
			uncompressed = sizeText(*l.UncompressedSize)
		}
		fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%s\t%s\n", i+1, shortDigest(l.Digest), l.MediaType, l.Format, compressed, uncompressed)
		switch manifest.Format(l.Format) {
		case manifest.FormatForeign:
			urls := "no URLs"
			if len(l.URLs) > 0 {
				urls = strings.Join(l.URLs, " ")
			}
			notes = append(notes, fmt.Sprintf("layer %d is non-distributable (foreign, %s): imgfs reads layers from the registry only and will not mount this image", i+1, urls))
		case manifest.FormatUnknown:
			notes = append(notes, fmt.Sprintf("layer %d has a media type imgfs cannot read: %s", i+1, l.MediaType))
		case manifest.FormatZstd:
			notes = append(notes, fmt.Sprintf("layer %d is plain zstd: not lazy, its first use downloads and decompresses it whole into the cache", i+1))
		case manifest.FormatTar:
			notes = append(notes, fmt.Sprintf("layer %d is uncompressed: read lazily but unverified (checking its digest needs the whole blob)", i+1))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, n := range notes {
		if _, err := fmt.Fprintf(w, "  note: %s\n", n); err != nil {
			return err
		}
	}
	return nil
}

// shortDigest keeps the algorithm and 12 hex digits, as docker does.
func shortDigest(d string) string {
	alg, hex, ok := strings.Cut(d, ":")
	if !ok || len(hex) <= 12 {
		return d
	}
	return alg + ":" + hex[:12]
}

// argvText shows an argv as JSON, which keeps spaces and quoting visible.
func argvText(argv []string) string {
	if len(argv) == 0 {
		return ""
	}
	b, _ := json.Marshal(argv)
	return string(b)
}

// sizeText is "27.3 MiB (28647285 bytes)".
func sizeText(n int64) string {
	return fmt.Sprintf("%s (%d bytes)", humanSize(n), n)
}

// humanSize renders n in binary units with three significant digits.
func humanSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	f := float64(n)
	units := []string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	i := -1
	for f >= unit && i < len(units)-1 {
		f /= unit
		i++
	}
	switch {
	case f < 10:
		return fmt.Sprintf("%.2f %s", f, units[i])
	case f < 100:
		return fmt.Sprintf("%.1f %s", f, units[i])
	}
	return fmt.Sprintf("%.0f %s", f, units[i])
}
