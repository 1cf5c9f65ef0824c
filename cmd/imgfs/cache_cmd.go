package main

import (
	"errors"
	"fmt"
	iofs "io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	digest "github.com/opencontainers/go-digest"
	"github.com/spf13/cobra"

	"github.com/imgfs/imgfs/image"
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
  refs/sha256/<digest>    the images each layer was opened for
  mounts/                 one state file per running mount (see 'imgfs mounts')
  logs/                   logs of background mounts`,
		Args: noArgs,
	}
	var olderThan time.Duration
	var all, jsonOut bool
	ls := &cobra.Command{
		Use:   "ls",
		Short: "List cached layer indexes, the images they came from, and how much data is cached",
		Long: `List the cached layer indexes: the file, its size, when it was last used, and
the images the layer was opened for (as recorded since imgfs records them);
then the files and bytes of decoded data (spans), of local plain-zstd
copies, of layers kept with --cache-layers (blobs) and of cached manifests.
--json prints the same as one JSON document.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir, err := a.cacheDir()
			if err != nil {
				return err
			}
			listing, err := listCache(dir)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if jsonOut {
				return printJSON(out, listing)
			}
			tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "INDEX\tSIZE\tLAST USED\tIMAGES")
			for _, ix := range listing.Indexes {
				images := strings.Join(ix.Images, ", ")
				if images == "" {
					images = "-"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", ix.Index, humanSize(ix.Size), ix.LastUsed.Local().Format(time.DateTime), escapeName(images))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			for _, t := range []struct {
				name  string
				total CacheTotal
			}{{"spans", listing.Spans}, {"files", listing.Files}, {"local", listing.Local}, {"blobs", listing.Blobs}, {"manifests", listing.Manifests}} {
				fmt.Fprintf(out, "%s: %d files, %s\n", t.name, t.total.Files, humanSize(t.total.Bytes))
			}
			return nil
		},
	}
	ls.Flags().BoolVar(&jsonOut, "json", false, "print a JSON document")
	prune := &cobra.Command{
		Use:   "prune",
		Short: "Delete cached data and indexes not used recently",
		Long: `Delete cache files (indexes, decoded data, file copies, local layer copies, logs) not used
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
			for _, sub := range []string{"index", "spans", "files", "local", "blobs", "manifests", "logs"} {
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
			forgetPrunedLayers(dir)
			fmt.Fprintf(cmd.OutOrStdout(), "removed %d files, %s\n", removed, humanSize(freed))
			if len(failed) > 0 {
				return fmt.Errorf("could not remove %d files; first: %w", len(failed), failed[0])
			}
			return nil
		},
	}
	durationFlag(prune.Flags(), &olderThan, "older-than", 30*24*time.Hour, "age of the files to delete (e.g. 12h, 7d, 2w)")
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

// CacheListing is what cache ls --json prints.
type CacheListing struct {
	Indexes   []CacheIndex `json:"indexes"`   // most recently used first
	Spans     CacheTotal   `json:"spans"`     // decoded data
	Files     CacheTotal   `json:"files"`     // whole copies of files, for FUSE passthrough (mount --file-copies)
	Local     CacheTotal   `json:"local"`     // plain-zstd layer copies
	Blobs     CacheTotal   `json:"blobs"`     // layers kept with --cache-layers
	Manifests CacheTotal   `json:"manifests"` // manifests by digest
}

// CacheIndex is one cached layer index.
type CacheIndex struct {
	Index    string    `json:"index"`  // sha256:<file name>: the layer digest, format and, for unverified layers, scope
	Digest   string    `json:"digest"` // the layer
	Size     int64     `json:"size"`
	LastUsed time.Time `json:"lastUsed"`
	Images   []string  `json:"images"` // the references the layer was opened for
}

// CacheTotal counts files and bytes.
type CacheTotal struct {
	Files int   `json:"files"`
	Bytes int64 `json:"bytes"`
}

func listCache(dir string) (*CacheListing, error) {
	files, err := cacheFiles(filepath.Join(dir, "index"))
	if err != nil {
		return nil, err
	}
	images, err := image.LayerImages(dir)
	if err != nil {
		return nil, err
	}
	out := &CacheListing{Indexes: []CacheIndex{}}
	for _, f := range files {
		if strings.HasPrefix(filepath.Base(f.path), ".") {
			continue // a builder's lock file (index.Open), not an index
		}
		d := indexFileLayer(f.path)
		refs := images[d]
		if refs == nil {
			refs = []string{}
		}
		out.Indexes = append(out.Indexes, CacheIndex{Index: d.Algorithm().String() + ":" + filepath.Base(f.path), Digest: d.String(),
			Size: f.size, LastUsed: f.modTime.UTC(), Images: refs})
	}
	for sub, total := range map[string]*CacheTotal{"spans": &out.Spans, "files": &out.Files, "local": &out.Local, "blobs": &out.Blobs, "manifests": &out.Manifests} {
		files, err := cacheFiles(filepath.Join(dir, sub))
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			total.Files++
			total.Bytes += f.size
		}
	}
	return out, nil
}

// indexFileLayer is the layer digest of an index file,
// index/<algorithm>/<hex>.<format>[...].
func indexFileLayer(p string) digest.Digest {
	hex, _, _ := strings.Cut(filepath.Base(p), ".")
	return digest.NewDigestFromEncoded(digest.Algorithm(filepath.Base(filepath.Dir(p))), hex)
}

// forgetPrunedLayers drops the image records of layers with no index left.
func forgetPrunedLayers(dir string) {
	images, err := image.LayerImages(dir)
	if err != nil || len(images) == 0 {
		return
	}
	files, err := cacheFiles(filepath.Join(dir, "index"))
	if err != nil {
		return
	}
	kept := map[digest.Digest]bool{}
	for _, f := range files {
		kept[indexFileLayer(f.path)] = true
	}
	for d := range images {
		if !kept[d] {
			image.ForgetLayerImages(dir, d)
		}
	}
}
