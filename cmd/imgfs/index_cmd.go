package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/imgfs/imgfs/image"
	"github.com/imgfs/imgfs/index"
	"github.com/imgfs/imgfs/manifest"
)

func init() { registerCommand(newIndexCommand) }

func newIndexCommand(a *app) *cobra.Command {
	var f indexFlags
	cmd := &cobra.Command{
		Use:   "index IMAGE",
		Short: "Build and cache the index of every layer of an image",
		Long: `Build, in parallel, the index of each layer of IMAGE that is not cached yet,
and store it under the cache directory (<cache-dir>/index/sha256/<digest>), so
that later mounts, 'ls' and 'cat' start at once.

What building costs depends on the layer format:
  tar            headers are read with range requests; file data is skipped
  gzip           the blob is streamed once (its digest verified) and a
                 checkpoint is kept every 4 MiB of output: reads are lazy
  eStargz        only the footer and table of contents are fetched
  zstd:chunked   only the table of contents is fetched
  zstd           the blob is streamed once and its decompressed tar kept in
                 the cache: a single zstd frame cannot be entered midway

Index artifacts: --push publishes the gzip and tar layer indexes built here
(from verified bytes; never indexes taken from the registry) to the image's
repository as an OCI artifact referring to the image, found by later
mounts, ls, cat and index on any machine (--index-source). --verify builds
the indexes here and compares them, byte for byte, with the artifact in the
registry.

--json prints the table as a JSON array (layer, digest, format, entries,
uncompressedSize, verified, reads, index).`,
		Example: `  imgfs index docker://python:3.12
  imgfs --plain-http index 127.0.0.1:5000/tools/app:dev
  imgfs index --json docker-archive:./app.tar
  imgfs index --push registry.example.com/team/app:1.0
  imgfs index --verify registry.example.com/team/app:1.0`,
		Args: exactArgs("IMAGE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.push && f.verify {
				return usageErrorf("--push and --verify are exclusive")
			}
			if f.json && (f.push || f.verify) {
				return usageErrorf("--json and --push or --verify are exclusive")
			}
			img, err := a.openImage(cmd, args[0], func(o *image.Options) {
				if f.push || f.verify { // only what was built here from verified bytes
					o.IndexSource = image.IndexLocal
				}
			})
			if err != nil {
				return err
			}
			defer img.Close()
			if f.json {
				rows := []IndexRow{}
				for i, l := range img.Layers() {
					ix := l.Index
					rows = append(rows, IndexRow{Layer: i + 1, Digest: ix.Layer.String(), Format: string(ix.Format), Entries: len(ix.Entries),
						UncompressedSize: ix.UncompressedSize(), Verified: ix.Verified(), Reads: readMode(ix), Index: ix.How()})
				}
				if err := printJSON(cmd.OutOrStdout(), rows); err != nil {
					return err
				}
				if f.pushIndex {
					return pushIndexes(cmd, img, a.logger, true) // logs only
				}
				return nil
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "LAYER\tDIGEST\tFORMAT\tENTRIES\tUNCOMPRESSED\tREADS\tINDEX")
			for i, l := range img.Layers() {
				ix := l.Index
				fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\t%s\t%s\n", i+1, shortDigest(ix.Layer.String()), ix.Format,
					len(ix.Entries), humanSize(ix.UncompressedSize()), readMode(ix), ix.How())
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			switch {
			case f.verify:
				return verifyIndexes(cmd, img)
			case f.push:
				return pushIndexes(cmd, img, a.logger, false)
			case f.pushIndex:
				return pushIndexes(cmd, img, a.logger, true)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.BoolVar(&f.push, "push", false, "publish the layer indexes as an index artifact in the image's repository (needs push rights)")
	fl.BoolVar(&f.verify, "verify", false, "build the indexes here and compare them with the image's index artifact")
	fl.BoolVar(&f.pushIndex, "push-index", false, "publish indexes built here now, if any; a failure is a warning")
	withEnv(fl, "push-index")
	fl.BoolVar(&f.json, "json", false, "print a JSON array")
	return cmd
}

type indexFlags struct {
	push, verify, pushIndex, json bool
}

// IndexRow is one layer in index --json.
type IndexRow struct {
	Layer            int    `json:"layer"` // 1 is the base
	Digest           string `json:"digest"`
	Format           string `json:"format"`
	Entries          int    `json:"entries"`
	UncompressedSize int64  `json:"uncompressedSize"`
	Verified         bool   `json:"verified"` // every byte served is checked against a pinned digest
	Reads            string `json:"reads"`    // how reads are served
	Index            string `json:"index"`    // how the index was obtained: built, cached, artifact, ...
}

// readMode says how reads of a layer are served, so users know which layers
// are lazy and verified.
func readMode(ix *index.Index) string {
	switch {
	case ix.Format == manifest.FormatZstd:
		return "local copy (plain zstd: not lazy)"
	case ix.Origin() != "":
		return "lazy, index from the registry (unverified)"
	case ix.Verified():
		return "lazy, verified"
	case ix.Format == manifest.FormatTar:
		return "lazy, unverified (uncompressed tar)"
	case ix.Format == manifest.FormatEstargz || ix.Format == manifest.FormatZstdChunked:
		return "lazy, TOC not pinned by the manifest"
	}
	return "lazy, unverified"
}
