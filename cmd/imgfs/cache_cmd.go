package main

import (
	"errors"
	"fmt"
	iofs "io/fs"
	"os"
	"path/filepath"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

func init() { registerCommand(newCacheCommand) }

func newCacheCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cache",
		Short: "Show or prune the index and data cache",
		Long: `The cache directory (--cache-dir, default $XDG_CACHE_HOME/imgfs) holds
  index/sha256/<digest>   one index per layer, reused by every image sharing the layer
  spans/                  decoded data, bounded by --cache-size
  local/                  decompressed plain-zstd layers
  blobs/                  layers kept with --cache-layers
  manifests/              manifests by digest
  logs/                   logs of background mounts`,
		Args: noArgs,
	}
	var olderThan time.Duration
	var all bool
	ls := &cobra.Command{
		Use:   "ls",
		Short: "List cached layer indexes and how much data is cached",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir, err := a.cacheDir()
			if err != nil {
				return err
			}
			files, err := cacheFiles(filepath.Join(dir, "index"))
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "INDEX\tSIZE\tLAST USED")
			for _, f := range files {
				fmt.Fprintf(tw, "sha256:%s\t%s\t%s\n", filepath.Base(f.path), humanSize(f.size), f.modTime.Format(time.DateTime))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			for _, sub := range []string{"spans", "local", "blobs", "manifests"} {
				files, err := cacheFiles(filepath.Join(dir, sub))
				if err != nil {
					return err
				}
				var total int64
				for _, f := range files {
					total += f.size
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: %d files, %s\n", sub, len(files), humanSize(total))
			}
			return nil
		},
	}
	prune := &cobra.Command{
		Use:   "prune",
		Short: "Delete cached data and indexes not used recently",
		Long: `Delete cache files (indexes, decoded data, local layer copies, logs) not used
for --older-than; --all deletes everything. A file's modification time is
its last use: opening an image touches its layers' indexes, and a mount
records the use of decoded data (batched, at most every 30 seconds and when
it ends). Do not prune under a running mount's feet with --all: its disk
cache and indexes are rebuilt on demand, but plain-zstd layers it reads from
local/ would fail.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir, err := a.cacheDir()
			if err != nil {
				return err
			}
			cutoff := time.Now().Add(-olderThan)
			var removed int
			var freed int64
			var failed []error
			for _, sub := range []string{"index", "spans", "local", "blobs", "manifests", "logs"} {
				files, err := cacheFiles(filepath.Join(dir, sub))
				if err != nil {
					return err
				}
				for _, f := range files {
					if !all && !f.modTime.Before(cutoff) {
						continue
					}
					if err := os.Remove(f.path); err != nil && !errors.Is(err, iofs.ErrNotExist) {
						failed = append(failed, err)
						continue
					}
					removed++
					freed += f.size
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "removed %d files, %s\n", removed, humanSize(freed))
			if len(failed) > 0 {
				return fmt.Errorf("could not remove %d files; first: %w", len(failed), failed[0])
			}
			return nil
		},
	}
	prune.Flags().DurationVar(&olderThan, "older-than", 30*24*time.Hour, "age of the files to delete")
	prune.Flags().BoolVar(&all, "all", false, "delete everything")
	cmd.AddCommand(ls, prune)
	return cmd
}

type cacheFile struct {
	path    string
	size    int64
	modTime time.Time
}

// cacheFiles lists the regular files under dir, newest first; a missing dir
// is an empty list.
func cacheFiles(dir string) ([]cacheFile, error) {
	var out []cacheFile
	err := filepath.WalkDir(dir, func(p string, de iofs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, iofs.ErrNotExist) {
				return nil
			}
			return err
		}
		if !de.Type().IsRegular() {
			return nil
		}
		info, err := de.Info()
		if errors.Is(err, iofs.ErrNotExist) {
			return nil // removed meanwhile (another process evicted it)
		}
		if err != nil {
			return err
		}
		out = append(out, cacheFile{path: p, size: info.Size(), modTime: info.ModTime()})
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].modTime.After(out[j].modTime) })
	return out, err
}
