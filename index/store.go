package index

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/imgfs/imgfs/manifest"

	digest "github.com/opencontainers/go-digest"
)

// Open returns the index of opts.Layer: loaded from <CacheDir>/index when
// one usable for this layer and scope is there (see identity.go), else
// built from the blob and stored there. An unreadable, corrupt, truncated,
// foreign or other-version index file is reported with a warning and
// replaced. Concurrent builders (threads or processes) of one layer are
// safe: each writes its own temporary file and renames it into place.
func Open(ctx context.Context, opts Options) (*Index, error) {
	log := opts.logger()
	if opts.CacheDir == "" {
		return Build(ctx, opts)
	}
	ix, err := Lookup(opts.CacheDir, opts.Layer, opts.Scope, log)
	if err == nil {
		return ix, nil
	}
	ix, err = Build(ctx, opts)
	if err != nil {
		return nil, err
	}
	dir, err := indexDir(opts.CacheDir, opts.Layer.Digest)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, ix.fileName())
	if err := storeIndex(path, ix); err != nil {
		log.Warn("could not store index; it will be rebuilt next time", "path", path, "err", err)
	}
	return ix, nil
}

// errNoIndex: no stored index is usable for the layer.
var errNoIndex = errors.New("no usable index in the cache")

// Lookup returns a stored index usable for layer l served from scope
// (the registry and repository), without building anything: for callers
// that only want what is already known (inspect's sizes), and for Open.
// log hears about files that are there but unusable (nil: they are skipped
// quietly).
func Lookup(cacheDir string, l manifest.Layer, scope string, log *slog.Logger) (*Index, error) {
	dir, err := indexDir(cacheDir, l.Digest)
	if err != nil {
		return nil, err
	}
	for _, name := range candidateNames(l, scope) {
		path := filepath.Join(dir, name)
		ix, err := loadIndex(path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			continue
		case err != nil:
			warn(log, "index file unusable; rebuilding", "path", path, "err", err)
			continue
		case !ix.usableFor(name, l, scope):
			warn(log, "index file describes another layer, format or registry; rebuilding", "path", path)
			continue
		}
		if err := ix.attachLocal(cacheDir); err != nil {
			warn(log, "local copy of the plain zstd layer is missing or unusable; rebuilding", "path", path, "err", err)
			continue
		}
		markUsed(path)
		return ix, nil
	}
	return nil, fmt.Errorf("layer %s: %w", l.Digest, errNoIndex)
}

func warn(log *slog.Logger, msg string, args ...any) {
	if log != nil {
		log.Warn(msg, args...)
	}
}

// markUsed sets an index file's modification time to now: 'imgfs cache
// prune' deletes by it, so it means "last used", not "built". Best effort:
// a read-only cache dir keeps its times.
func markUsed(path string) {
	now := time.Now()
	_ = os.Chtimes(path, now, now)
}

// indexDir is where the indexes of the layer with digest dgst are stored.
func indexDir(cacheDir string, dgst digest.Digest) (string, error) {
	if err := dgst.Validate(); err != nil { // also keeps the path inside cacheDir
		return "", fmt.Errorf("index path for %q: %w", dgst, err)
	}
	return filepath.Join(cacheDir, "index", string(dgst.Algorithm())), nil
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
