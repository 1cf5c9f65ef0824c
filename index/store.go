package index

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/imgfs/imgfs/manifest"

	digest "github.com/opencontainers/go-digest"
)

// Open returns the index of opts.Layer: loaded from
// <CacheDir>/index/<algorithm>/<hex> when a valid one is there, else built
// from the blob and stored there. An unreadable, corrupt, truncated,
// foreign or other-version index file is reported with a warning and
// replaced. Concurrent builders (threads or processes) of one layer are
// safe: each writes its own temporary file and renames it into place.
func Open(ctx context.Context, opts Options) (*Index, error) {
	log := opts.logger()
	if opts.CacheDir == "" {
		return Build(ctx, opts)
	}
	path, err := IndexPath(opts.CacheDir, opts.Layer.Digest)
	if err != nil {
		return nil, err
	}
	ix, err := loadIndex(path)
	switch {
	case err == nil && ix.Layer != opts.Layer.Digest:
		log.Warn("index file describes another layer; rebuilding", "path", path, "layer", opts.Layer.Digest, "found", ix.Layer)
	case err == nil && !formatAgrees(ix, opts):
		log.Warn("index file was built for another layer format; rebuilding", "path", path, "format", ix.Format, "want", opts.Layer.Format)
	case err == nil && !pinAgrees(ix, opts.Layer):
		log.Warn("index file was built without the TOC digest the manifest now gives; rebuilding to check it", "path", path)
	case err == nil:
		lerr := ix.attachLocal(opts.CacheDir)
		if lerr == nil {
			markUsed(path)
			return ix, nil
		}
		log.Warn("local copy of the plain zstd layer is missing or unusable; rebuilding", "path", path, "err", lerr)
	case !errors.Is(err, fs.ErrNotExist):
		log.Warn("index file unusable; rebuilding", "path", path, "err", err)
	}
	ix, err = Build(ctx, opts)
	if err != nil {
		return nil, err
	}
	if err := storeIndex(path, ix); err != nil {
		log.Warn("could not store index; it will be rebuilt next time", "path", path, "err", err)
	}
	return ix, nil
}

// markUsed sets an index file's modification time to now: 'imgfs cache
// prune' deletes by it, so it means "last used", not "built". Best effort:
// a read-only cache dir keeps its times.
func markUsed(path string) {
	now := time.Now()
	_ = os.Chtimes(path, now, now)
}

// formatAgrees accepts an index built for the declared format, or, when the
// declaration may be corrected from the content (tar, gzip, zstd), any of
// those.
func formatAgrees(ix *Index, opts Options) bool {
	declared := opts.Layer.Format
	if declared == "" || declared == ix.Format {
		return true
	}
	sniffable := func(f manifest.Format) bool {
		return f == manifest.FormatTar || f == manifest.FormatGzip || f == manifest.FormatZstd || f == manifest.FormatUnknown
	}
	return sniffable(declared) && sniffable(ix.Format)
}

// IndexPath is where the index of the layer with digest dgst is stored.
func IndexPath(cacheDir string, dgst digest.Digest) (string, error) {
	if err := dgst.Validate(); err != nil { // also keeps the path inside cacheDir
		return "", fmt.Errorf("index path for %q: %w", dgst, err)
	}
	return filepath.Join(cacheDir, "index", string(dgst.Algorithm()), dgst.Encoded()), nil
}

func loadIndex(path string) (*Index, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return decodeIndex(data)
}

// storeIndex writes ix atomically: a temporary file in the same directory,
// fsynced, renamed over path, then the directory fsynced.
func storeIndex(path string, ix *Index) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(encodeIndex(ix)); err != nil {
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	ok = true
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // durability of the rename; the index can always be rebuilt
		d.Close()
	}
	return nil
}

// Load reads the cached index of a layer without building anything: for
// callers that only want what is already known (inspect's uncompressed
// sizes). A missing or damaged file is an error.
func Load(cacheDir string, layer digest.Digest) (*Index, error) {
	path, err := IndexPath(cacheDir, layer)
	if err != nil {
		return nil, err
	}
	ix, err := loadIndex(path)
	if err != nil {
		return nil, err
	}
	if ix.Layer != layer {
		return nil, fmt.Errorf("index %s: %w: describes layer %s", path, ErrCorrupt, ix.Layer)
	}
	return ix, nil
}
