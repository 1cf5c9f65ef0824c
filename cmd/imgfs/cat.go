package main

import (
	"bufio"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/imgfs/imgfs/fs"
	"github.com/imgfs/imgfs/index"
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
			o, err := a.openImage(cmd.Context(), cmd, args[0], openOptions{progress: cmd.ErrOrStderr()})
			if err != nil {
				return err
			}
			defer o.close()
			node, err := lookupPath(o.tree, args[1], true)
			if err != nil {
				return err
			}
			out := bufio.NewWriterSize(cmd.OutOrStdout(), 1<<20)
			if err := copyContent(out, node, o.contentReaders()); err != nil {
				return err
			}
			return out.Flush()
		},
	}
}

// copyContent writes a regular file's content in large reads, so a gzip
// layer is fetched and inflated a span at a time.
func copyContent(w io.Writer, n *fs.Node, readers []fs.ContentReader) error {
	if n.IsDir() {
		return fmt.Errorf("%s: is a directory", n.Path())
	}
	if n.Type() != index.TypeReg {
		return fmt.Errorf("%s: not a regular file", n.Path())
	}
	if n.Synthetic() {
		_, err := w.Write(n.Content())
		return err
	}
	r := readers[n.Layer()]
	e := n.Entry()
	buf := make([]byte, 1<<20)
	for off := int64(0); off < e.Size; {
		k, err := r.ReadAt(e, buf, off)
		if k > 0 {
			if _, werr := w.Write(buf[:k]); werr != nil {
				return werr
			}
			off += int64(k)
		}
		if err == io.EOF && off >= e.Size {
			break
		}
		if err != nil && err != io.EOF {
			return fmt.Errorf("read %s: %w", n.Path(), err)
		}
		if k == 0 && err == io.EOF {
			return fmt.Errorf("read %s: unexpected end at %d of %d bytes", n.Path(), off, e.Size)
		}
	}
	return nil
}
