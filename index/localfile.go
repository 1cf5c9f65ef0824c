package index

import (
	"fmt"
	"os"
	"path/filepath"

	digest "github.com/opencontainers/go-digest"
)

// metaLocal is the Meta key naming the local copy of a plain zstd layer,
// relative to the cache dir ("" when it is an unnamed temporary file).
const metaLocal = "local"

// LocalPath is where the decompressed copy of the plain zstd layer with
// digest dgst is kept: <cacheDir>/local/<algorithm>/<hex>.tar.
func LocalPath(cacheDir string, dgst digest.Digest) (string, error) {
	if err := dgst.Validate(); err != nil { // also keeps the path inside cacheDir
		return "", fmt.Errorf("local copy path for %q: %w", dgst, err)
	}
	return filepath.Join(cacheDir, localRel(dgst)), nil
}

func localRel(dgst digest.Digest) string {
	return filepath.Join("local", string(dgst.Algorithm()), dgst.Encoded()+".tar")
}

// localWriter creates the file a plain zstd build writes the decompressed
// layer to: a temporary file next to its final place under the cache dir,
// renamed there by commit once the blob digest is checked; without a cache
// dir, a temporary file unlinked at once, which lives as long as the
// Index holds it open.
type localWriter struct {
	f     *os.File
	final string // "" without a cache dir
}

func newLocalWriter(cacheDir string, dgst digest.Digest) (*localWriter, error) {
	if cacheDir == "" {
		f, err := os.CreateTemp("", "imgfs-zstd-layer-*.tar")
		if err != nil {
			return nil, fmt.Errorf("create local copy of the layer: %w", err)
		}
		if err := os.Remove(f.Name()); err != nil {
			f.Close()
			return nil, fmt.Errorf("unlink temporary local copy: %w", err)
		}
		return &localWriter{f: f}, nil
	}
	final, err := LocalPath(cacheDir, dgst)
	if err != nil {
		return nil, err
	}
	dir := filepath.Dir(final)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create local copy of the layer: %w", err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(final)+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("create local copy of the layer: %w", err)
	}
	return &localWriter{f: f, final: final}, nil
}

// commit makes the written file the layer's local copy and returns it open
// for reading.
func (w *localWriter) commit() (*os.File, error) {
	if w.final == "" {
		return w.f, nil
	}
	if err := w.f.Chmod(0o644); err != nil {
		return nil, err
	}
	if err := w.f.Sync(); err != nil {
		return nil, fmt.Errorf("sync local copy: %w", err)
	}
	if err := os.Rename(w.f.Name(), w.final); err != nil {
		return nil, fmt.Errorf("store local copy: %w", err)
	}
	if d, err := os.Open(filepath.Dir(w.final)); err == nil {
		_ = d.Sync() // durability of the rename; the copy can always be rebuilt
		d.Close()
	}
	return w.f, nil
}

// abort removes an uncommitted file.
func (w *localWriter) abort() {
	w.f.Close()
	if w.final != "" {
		os.Remove(w.f.Name())
	}
}

// attachLocal opens the local copy a loaded plain zstd index reads from,
// checking it is where and as large as the index says. An error means the
// index must be rebuilt (the copy was pruned or damaged).
func (ix *Index) attachLocal(cacheDir string) error {
	if !hasLocalSpans(ix) {
		return nil
	}
	if want := filepath.ToSlash(localRel(ix.Layer)); ix.Meta[metaLocal] != want {
		return fmt.Errorf("index names local copy %q, expected %q", ix.Meta[metaLocal], want)
	}
	path, err := LocalPath(cacheDir, ix.Layer)
	if err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	st, err := f.Stat()
	if err == nil && st.Size() != ix.usize {
		err = fmt.Errorf("local copy %s has %d bytes, the index says %d", path, st.Size(), ix.usize)
	}
	if err != nil {
		f.Close()
		return err
	}
	ix.local = f
	return nil
}

func hasLocalSpans(ix *Index) bool {
	for i := range ix.Spans {
		if ix.Spans[i].Kind == SpanLocal {
			return true
		}
	}
	return false
}
