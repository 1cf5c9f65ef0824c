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
	return &cobra.Command{
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
                 the cache: a single zstd frame cannot be entered midway`,
		Example: `  imgfs index docker://python:3.12
  imgfs --plain-http index 127.0.0.1:5000/tools/app:dev`,
		Args: exactArgs("IMAGE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			img, err := a.openImage(cmd, args[0], func(*image.Options) {})
			if err != nil {
				return err
			}
			defer img.Close()
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "LAYER\tDIGEST\tFORMAT\tENTRIES\tUNCOMPRESSED\tREADS")
			for i, l := range img.Layers() {
				ix := l.Index
				fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\t%s\n", i+1, shortDigest(ix.Layer.String()), ix.Format,
					len(ix.Entries), humanSize(ix.UncompressedSize()), readMode(ix))
			}
			return tw.Flush()
		},
	}
}

// readMode says how reads of a layer are served, so users know which layers
// are lazy and verified.
func readMode(ix *index.Index) string {
	switch {
	case ix.Format == manifest.FormatZstd:
		return "local copy (plain zstd: not lazy)"
	case ix.Verified():
		return "lazy, verified"
	case ix.Format == manifest.FormatTar:
		return "lazy, unverified (uncompressed tar)"
	case ix.Format == manifest.FormatEstargz || ix.Format == manifest.FormatZstdChunked:
		return "lazy, TOC not pinned by the manifest"
	}
	return "lazy, unverified"
}
