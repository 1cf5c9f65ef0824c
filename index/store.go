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

// Open returns the index of opts.Layer: loaded from <CacheDir>/index (or
// one of opts.ReadOnlyDirs) when one usable for this layer and scope is
// there (see identity.go), else taken from opts.Remote (an index artifact)
// when it has one, else built from the blob; what was not loaded is
// stored in CacheDir. An unreadable, corrupt, truncated, foreign or
// other-version index file is reported with a warning and replaced.
//
// Concurrent builders of one layer, threads or processes on one host or
// many sharing CacheDir, build it once: the first takes a lock file (see
// lock.go) and the others wait for it and load what it stored. Every file
// is written to a temporary name and renamed into place, so a reader never
// sees part of one.
func Open(ctx context.Context, opts Options) (*Index, error) {
	log := opts.logger()
	dirs := opts.lookupDirs()
	if len(dirs) > 0 {
		if ix, err := LookupIn(dirs, opts.Layer, opts.Scope, log); err == nil {
			ix.how = HowCached
			return ix, nil
		}
	}
	if opts.Remote != nil {
		if ix, err := opts.Remote(ctx); err == nil && ix != nil {
			ix.how = HowArtifact
			opts.store(ix, log)
			return ix, nil
		}
	}
	if opts.CacheDir == "" {
		ix, err := Build(ctx, opts)
		if err == nil {
			ix.how = HowBuilt
		}
		return ix, err
	}
	dir, err := indexDir(opts.CacheDir, opts.Layer.Digest)
	if err != nil {
		return nil, err
	}
	lock, _, err := lockBuild(ctx, dir, opts.Layer.Digest.Encoded(), log)
	if err != nil {
		return nil, err
	}
	defer lock.release()
	// Another process may have built it since the lookup above (we may
	// have waited for it): look again, quietly.
	if ix, err := Lookup(opts.CacheDir, opts.Layer, opts.Scope, nil); err == nil {
		ix.how = HowBuiltElsewhere
		return ix, nil
	}
	ix, err := Build(ctx, opts)
	if err != nil {
		return nil, err
	}
	ix.how = HowBuilt
	opts.store(ix, log)
	return ix, nil
}

// How an Index came to be: see Index.How.
const (
	HowBuilt          = "built"           // built here from the blob
	HowBuiltElsewhere = "built elsewhere" // waited for another process sharing the cache dir, then loaded
	HowCached         = "cached"          // loaded from the cache dir (or a read-only one)
	HowArtifact       = "artifact"        // taken from an index artifact in the registry
)

// How says how Open obtained the index (one of the How* constants; "" for
// an index Open did not return).
func (ix *Index) How() string { return ix.how }

// lookupDirs are the cache dirs Open looks in, the writable one first.
func (o *Options) lookupDirs() []string {
	var dirs []string
	if o.CacheDir != "" {
		dirs = append(dirs, o.CacheDir)
	}
	return append(dirs, o.ReadOnlyDirs...)
}

// store writes ix under CacheDir, if there is one; failing is a warning.
func (o *Options) store(ix *Index, log *slog.Logger) {
	if o.CacheDir == "" {
		return
	}
	dir, err := indexDir(o.CacheDir, ix.Layer)
	if err != nil {
		return
	}
	path := filepath.Join(dir, ix.fileName())
	// An index from an artifact can be fetched again: it is written
	// atomically but not synced (syncs cost a node's first command more
	// than the fetch did).
	if err := writeIndexFile(path, ix, ix.Origin() == ""); err != nil {
		log.Warn("could not store index; it will be rebuilt next time", "path", path, "err", err)
	}
}

// errNoIndex: no stored index is usable for the layer.
var errNoIndex = errors.New("no usable index in the cache")

// Lookup returns a stored index usable for layer l served from scope
// (the registry and repository), without building anything: for callers
// that only want what is already known (inspect's sizes), and for Open.
// log hears about files that are there but unusable (nil: they are skipped
// quietly).
func Lookup(cacheDir string, l manifest.Layer, scope string, log *slog.Logger) (*Index, error) {
	return LookupIn([]string{cacheDir}, l, scope, log)
}

// LookupIn is Lookup over several cache dirs, in order: a private
// writable one, then read-only ones shared by a site (--cache-dir-ro).
// Within each, the most trusted name is tried first.
func LookupIn(cacheDirs []string, l manifest.Layer, scope string, log *slog.Logger) (*Index, error) {
	for i, cacheDir := range cacheDirs {
		if ix, err := lookupDir(cacheDir, l, scope, log, i == 0); err == nil {
			return ix, nil
		} else if !errors.Is(err, errNoIndex) {
			return nil, err
		}
	}
	return nil, fmt.Errorf("layer %s: %w", l.Digest, errNoIndex)
}

// lookupDir looks in one cache dir; only the first (writable) one has its
// files' times touched (see markUsed).
func lookupDir(cacheDir string, l manifest.Layer, scope string, log *slog.Logger, touch bool) (*Index, error) {
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
		if touch {
			markUsed(path)
		}
		return ix, nil
	}
	return nil, errNoIndex
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
func storeIndex(path string, ix *Index) error { return writeIndexFile(path, ix, true) }

// writeIndexFile is storeIndex, syncing the file and its directory only
// when durable.
func writeIndexFile(path string, ix *Index, durable bool) error {
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
	if durable {
		if err := tmp.Sync(); err != nil {
			return err
		}
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	ok = true
	if !durable {
		return nil
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // durability of the rename; the index can always be rebuilt
		d.Close()
	}
	return nil
}
