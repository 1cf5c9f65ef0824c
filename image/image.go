package image

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"

	"golang.org/x/sync/errgroup"

	"github.com/imgfs/imgfs/fetch"
	"github.com/imgfs/imgfs/fs"
	"github.com/imgfs/imgfs/index"
	"github.com/imgfs/imgfs/index/cache"
	"github.com/imgfs/imgfs/manifest"
)

// Image is an opened image: resolved, every layer indexed, merged. It is
// safe for concurrent use once Open returns.
type Image struct {
	// Manifest describes the image as its registry does.
	Manifest *manifest.Image

	// Reference is the reference the image was opened by, parsed.
	Reference Reference

	src       source
	layers    []*Layer
	tree      *fs.Tree
	cache     *cache.Cache
	ownsCache bool
	decode    *index.DecodeLimit
	log       *slog.Logger
	repo      *fetch.Repository // for index artifacts
	artifacts *artifacts        // nil: not looked for (IndexLocal)
	copies    *cache.Copies     // nil: Options.FileCopies 0
}

// Layer is one layer of an opened image.
type Layer struct {
	manifest.Layer               // the descriptor: digest, media type, format, size
	Blob           Blob          // lazy range reads of the blob (registry or local file)
	Index          *index.Index  // entries and spans
	Reader         *index.Reader // verified, cached reads of entry contents
	kept           *keptBlob     // Options.KeepBlobs: the blob with its copy in the cache dir
}

// Open resolves reference, opens every layer's index (from the cache dir,
// else built now, a few layers at a time) and merges the layers.
func Open(ctx context.Context, reference string, opts Options) (*Image, error) {
	source, err := ParseIndexSource(string(opts.IndexSource))
	if err != nil {
		return nil, err
	}
	var early *artifacts
	if source != IndexLocal {
		opts.imageManifest = earlyDiscovery(ctx, opts, &early)
	}
	m, src, ref, err := resolve(ctx, reference, opts)
	if err != nil {
		return nil, err
	}
	if err := checkReadable(m); err != nil {
		src.Close()
		return nil, err
	}
	img := &Image{Manifest: m, Reference: ref, src: src, log: opts.logger(), cache: opts.Cache, decode: opts.Decode}
	// Index artifacts are in registries: a local source has none.
	if rs, ok := src.(registrySource); ok {
		img.repo = rs.Repository
	}
	if source != IndexLocal && img.repo != nil {
		img.artifacts = early
		if early == nil || early.subject != m.Digest { // schema 1: no early word
			img.artifacts = newArtifacts(img.repo, m.Digest, m.MediaType, Scope(m))
		}
	}
	if img.decode == nil {
		img.decode = index.NewDecodeLimit(0)
	}
	if img.cache == nil {
		if img.cache, err = newSpanCache(opts); err != nil {
			src.Close()
			return nil, err
		}
		img.ownsCache = true
	}
	if opts.Copies != nil {
		img.copies = opts.Copies
	} else if opts.FileCopies > 0 && opts.CacheDir != "" {
		// Without them, reads still work: a warning, not a failure.
		if img.copies, err = cache.NewCopies(filepath.Join(opts.CacheDir, "files"), opts.FileCopies, img.log); err != nil {
			img.log.Warn("file copies disabled", "err", err)
		}
	}
	if err := img.openLayers(ctx, opts); err != nil {
		img.Close()
		return nil, err
	}
	if err := img.reportArtifacts(source); err != nil {
		img.Close()
		return nil, err
	}
	entries := make([][]index.Entry, len(img.layers))
	for i, l := range img.layers {
		entries[i] = l.Index.Entries
	}
	img.tree = fs.Merge(entries, fs.MergeOptions{Logger: img.log})
	if opts.Synthesize {
		if err := fs.Synthesize(img.tree, m.Config, fs.SynthOptions{Provenance: provenance(ref, m), Logger: img.log}); err != nil {
			img.Close()
			return nil, err
		}
	}
	return img, nil
}

// newSpanCache makes the span cache Options ask for.
func newSpanCache(opts Options) (*cache.Cache, error) {
	co := cache.Options{MemoryBytes: opts.MemoryCache, Logger: opts.logger()}
	if opts.DiskCache > 0 && opts.CacheDir != "" {
		co.Dir = filepath.Join(opts.CacheDir, "spans")
		co.DiskBytes = opts.DiskCache
	}
	return cache.New(co)
}

// openLayers opens the blob and index of every layer, indexParallelism at
// a time.
func (img *Image) openLayers(ctx context.Context, opts Options) error {
	layers := img.Manifest.Layers
	img.layers = make([]*Layer, len(layers))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(indexParallelism)
	for i, desc := range layers {
		g.Go(func() error {
			l, err := img.openLayer(gctx, opts, i, desc)
			if err != nil {
				return fmt.Errorf("layer %d (%s): %w", i+1, desc.Digest, err)
			}
			img.layers[i] = l
			return nil
		})
	}
	return g.Wait()
}

func (img *Image) openLayer(ctx context.Context, opts Options, i int, desc manifest.Layer) (*Layer, error) {
	blob, err := img.src.OpenBlob(ctx, desc.Digest, desc.Size)
	if err != nil {
		return nil, err
	}
	if opts.LayerLock != nil {
		defer opts.LayerLock(desc.Digest)()
	}
	var progress LayerProgress = noProgress{}
	if opts.Progress != nil {
		progress = opts.Progress.Layer(i, len(img.Manifest.Layers), desc)
	}
	var src index.Blob = blob
	var kept *keptBlob
	// A registry's blob may be kept in the cache dir; a local source's
	// already is a local file.
	if rb, ok := blob.(*fetch.Blob); ok && opts.KeepBlobs && opts.CacheDir != "" && (desc.Format == manifest.FormatGzip || desc.Format == manifest.FormatZstd) {
		if path, err := keptBlobPath(opts.CacheDir, desc.Digest); err == nil {
			kept = &keptBlob{Blob: rb, path: path, log: img.log}
			src = kept
		}
	}
	io := index.Options{
		CacheDir:     opts.CacheDir,
		ReadOnlyDirs: opts.ReadOnlyCacheDirs,
		Layer:        desc,
		Scope:        Scope(img.Manifest),
		Blob:         src,
		Progress:     progress.Update,
		Attempts:     index.NetworkAttempts,
		Keep:         img.keepSpans,
		Logger:       img.log,
	}
	if a := img.artifacts; a != nil {
		io.Remote = func(ctx context.Context) (*index.Index, error) { return a.layerIndex(ctx, desc) }
	}
	ix, err := index.Open(ctx, io)
	progress.Done(err)
	if err != nil {
		return nil, fmt.Errorf("index: %w", err)
	}
	img.log.Info("layer index", "layer", desc.Digest.String(), "how", ix.How())
	recordLayerImage(opts.CacheDir, desc.Digest, img.Reference.String(), img.log)
	r := ix.NewReader(src, img.cache, index.ReaderOptions{Decode: img.decode, Logger: img.log})
	return &Layer{Layer: desc, Blob: blob, Index: ix, Reader: r, kept: kept}, nil
}

// keepSpans gives index builds a batch of the span cache's disk tier, so
// that what a build decodes is not fetched again (none without a disk tier).
func (img *Image) keepSpans() index.SpanBatch {
	if b := img.cache.NewBatch(); b != nil {
		return b
	}
	return nil
}

// Scope is who serves an image's blobs, "registry/repository", or
// "transport:/path" for a local source: indexes and data that cannot be
// verified against a layer digest are only reused within it.
func Scope(m *manifest.Image) string {
	if m.Transport != "" {
		return m.Transport + ":" + m.Repository
	}
	return m.Registry + "/" + m.Repository
}

type noProgress struct{}

func (noProgress) Update(int64, int64) {}
func (noProgress) Done(error)          {}

// Layers are the image's layers, base first.
func (img *Image) Layers() []*Layer { return img.layers }

// Tree is the merged root file system (with what Synthesize added).
func (img *Image) Tree() *fs.Tree { return img.tree }

// FileCopies is where a mount keeps whole copies of files for FUSE
// passthrough (fs.MountOptions.FileCopies); nil without
// Options.FileCopies.
func (img *Image) FileCopies() fs.FileCopies {
	if img.copies == nil {
		return nil
	}
	return img.copies
}

// ContentReaders are what fs.Mount reads file contents through: one per
// layer, in manifest order.
func (img *Image) ContentReaders() []fs.ContentReader {
	out := make([]fs.ContentReader, len(img.layers))
	for i, l := range img.layers {
		out[i] = l.Reader
	}
	return out
}

// Close stops background fetches, releases the layers' local files and,
// when Open made it, closes the span cache (flushing its disk tier).
func (img *Image) Close() error {
	var errs []error
	for _, l := range img.layers {
		if l == nil {
			continue
		}
		l.Reader.Close()
		errs = append(errs, l.Index.Close())
		if l.kept != nil {
			errs = append(errs, l.kept.Close())
		}
	}
	if img.ownsCache && img.cache != nil {
		errs = append(errs, img.cache.Close())
	}
	if img.src != nil {
		errs = append(errs, img.src.Close())
	}
	return errors.Join(errs...)
}
