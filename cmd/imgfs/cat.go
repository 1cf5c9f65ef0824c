package main

import (
	"bufio"

	"github.com/spf13/cobra"

	"github.com/imgfs/imgfs/image"
)

func init() { registerCommand(newCatCommand) }

func newCatCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "cat IMAGE PATH",
		Short: "Print a file of an image without mounting it",
		Long: `Write the content of PATH in the image's merged root file system to standard
output. Symbolic links are followed inside the image. Only the spans of the
layer that hold the file are fetched (for gzip, eStargz and zstd:chunked
layers and uncompressed tar), each verified against its digest.`,
		Example: `  imgfs cat alpine:3.20 /etc/os-release
  imgfs cat --platform linux/arm64 docker://debian:12 /etc/debian_version`,
		Args: exactArgs("IMAGE", "PATH"),
		RunE: func(cmd *cobra.Command, args []string) error {
			img, err := a.openImage(cmd, args[0], func(*image.Options) {})
			if err != nil {
				return err
			}
			defer img.Close()
			f, err := img.Open(cmd.Context(), args[1])
			if err != nil {
				return err
			}
			out := bufio.NewWriterSize(cmd.OutOrStdout(), 1<<20)
			if _, err := f.WriteTo(out); err != nil {
				return err
			}
			return out.Flush()
		},
	}
}
