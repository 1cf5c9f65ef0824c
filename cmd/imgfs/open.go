package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/imgfs/imgfs/fetch"
	"github.com/imgfs/imgfs/fetch/cache"
	"github.com/imgfs/imgfs/fs"
	"github.com/imgfs/imgfs/index"
	"github.com/imgfs/imgfs/manifest"
)

// openedImage is an image resolved, indexed and merged: ready to list, read
// or mount.
type openedImage struct {
	img     *manifest.Image
	blobs   []*fetch.Blob
	indexes []*index.Index
	readers []*index.Reader
	tree    *fs.Tree
	cache   *cache.Cache
}

// openOptions say what a command needs of the image.
type openOptions struct {
	synthesize  bool      // add /.singularity.d and mount-point stubs (mount)
	progress    io.Writer // where index builds report progress; nil: nowhere
	memoryCache int64     // bytes of decoded spans kept in memory; 0: 256 MiB
	diskCache   bool      // keep decoded spans under the cache dir too
	// blobContext bounds every later read of the layers' blobs; nil: the
	// context given to openImage. A mount serves reads after the command's
	// context is cancelled by a signal whose unmount failed (busy).
	blobContext context.Context
}

const defaultMemoryCache = 256 << 20

// indexParallelism bounds how many layers are indexed at once: each build
// streams one blob and keeps a core busy inflating it.
const indexParallelism = 3

// resolve parses the reference, opens the repository once (authentication
// is negotiated once for the manifests and every blob) and resolves it.
func (a *app) resolve(ctx context.Context, cmd *cobra.Command, reference string) (*manifest.Image, *fetch.Repository, error) {
	opts := a.resolveOptions(cmd, reference)
	var repo *fetch.Repository
	if opts.Source == nil {
		ref, err := manifest.ParseReference(reference, a.nameOptions()...)
		if err != nil {
			return nil, nil, err
		}
		repo, err = fetch.NewRepository(ctx, ref.Context(), opts.Fetch)
		if err != nil {
			return nil, nil, err
		}
		opts.Source = repo
	}
	img, err := manifest.Resolve(ctx, opts)
	if err != nil {
		return nil, nil, err
	}
	return img, repo, nil
}

// openImage resolves reference, opens every layer's index (from the cache,
// else built now) and merges the layers.
func (a *app) openImage(ctx context.Context, cmd *cobra.Command, reference string, opts openOptions) (*openedImage, error) {
	img, repo, err := a.resolve(ctx, cmd, reference)
	if err != nil {
		return nil, err
	}
	if repo == nil {
		return nil, fmt.Errorf("%s: no registry client", reference)
	}
	if err := checkLayersReadable(img); err != nil {
		return nil, err
	}
	cacheDir, err := a.cacheDir()
	if err != nil {
		return nil, err
	}
	o := &openedImage{img: img}
	if o.cache, err = a.newSpanCache(cacheDir, opts); err != nil {
		return nil, err
	}

	o.blobs = make([]*fetch.Blob, len(img.Layers))
	o.indexes = make([]*index.Index, len(img.Layers))
	blobCtx := opts.blobContext
	if blobCtx == nil {
		blobCtx = ctx
	}
	progress := newProgress(opts.progress, a.logger)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(indexParallelism)
	for i, layer := range img.Layers {
		g.Go(func() error {
			// Blobs read for the lifetime of the command, not of this group.
			blob, err := repo.OpenBlob(blobCtx, layer.Digest, layer.Size)
			if err != nil {
				return fmt.Errorf("layer %d (%s): %w", i+1, layer.Digest, err)
			}
			o.blobs[i] = blob
			bar := progress.layer(i, len(img.Layers), layer)
			ix, err := index.Open(gctx, index.Options{
				CacheDir: cacheDir,
				Layer:    layer,
				Blob:     blob,
				Progress: bar.update,
				Logger:   a.logger,
			})
			bar.done(err)
			if err != nil {
				return fmt.Errorf("index layer %d (%s): %w", i+1, layer.Digest, err)
			}
			o.indexes[i] = ix
			touchIndex(cacheDir, layer)
			return nil
		})
	}
	err = g.Wait()
	progress.wait()
	if err != nil {
		o.close()
		return nil, err
	}

	entries := make([][]index.Entry, len(o.indexes))
	o.readers = make([]*index.Reader, len(o.indexes))
	for i, ix := range o.indexes {
		entries[i] = ix.Entries
		o.readers[i] = ix.NewReader(o.blobs[i], o.cache)
	}
	if o.tree, err = fs.Merge(entries, fs.MergeOptions{Logger: a.logger}); err != nil {
		o.close()
		return nil, fmt.Errorf("merge layers of %s: %w", reference, err)
	}
	if opts.synthesize {
		if err := fs.Synthesize(o.tree, img.Config, fs.SynthOptions{}); err != nil {
			o.close()
			return nil, err
		}
	}
	return o, nil
}

// newSpanCache is the decoded-span cache: memory, plus a disk tier of
// --cache-size under the cache dir when asked for.
func (a *app) newSpanCache(cacheDir string, opts openOptions) (*cache.Cache, error) {
	co := cache.Options{MemoryBytes: opts.memoryCache, Logger: a.logger}
	if co.MemoryBytes <= 0 {
		co.MemoryBytes = defaultMemoryCache
	}
	if opts.diskCache {
		co.Dir = filepath.Join(cacheDir, "spans")
		co.DiskBytes = a.flags.cacheSizeBytes
	}
	return cache.New(co)
}

func (o *openedImage) close() {
	for _, ix := range o.indexes {
		if ix != nil {
			ix.Close()
		}
	}
	if o.cache != nil {
		o.cache.Close()
	}
}

// contentReaders adapts the per-layer readers to what fs.Mount takes.
func (o *openedImage) contentReaders() []fs.ContentReader {
	out := make([]fs.ContentReader, len(o.readers))
	for i, r := range o.readers {
		out[i] = r
	}
	return out
}

// checkLayersReadable refuses, with the reason, images imgfs cannot serve
// in full: it never shows a tree with a layer silently left out.
func checkLayersReadable(img *manifest.Image) error {
	for i, l := range img.Layers {
		switch l.Format {
		case manifest.FormatForeign:
			where := "no URLs"
			if len(l.URLs) > 0 {
				where = "URLs " + strings.Join(l.URLs, ", ")
			}
			return fmt.Errorf("layer %d (%s) is non-distributable (%s): imgfs reads layers from the registry only", i+1, l.Digest, where)
		case manifest.FormatUnknown:
			return fmt.Errorf("layer %d (%s) has media type %q, which imgfs cannot read", i+1, l.Digest, l.MediaType)
		}
	}
	return nil
}

// touchIndex marks a layer's index as used now, so that 'cache prune' keeps
// the indexes of images still in use.
func touchIndex(cacheDir string, layer manifest.Layer) {
	if p, err := index.IndexPath(cacheDir, layer.Digest); err == nil {
		now := time.Now()
		os.Chtimes(p, now, now)
	}
}
