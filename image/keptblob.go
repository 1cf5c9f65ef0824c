package image

import (
	"context"
	"crypto/sha256"
	"errors"
	"hash"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/imgfs/imgfs/fetch"
)

// keptBlob is a layer blob whose whole-blob stream (a one-pass index
// build) is also written to <cacheDir>/blobs/<algorithm>/<hex>, and whose
// reads are served from that file once it is there (Options.KeepBlobs).
// On a cache dir shared by many nodes, one node builds a layer's index
// (see index.Open's lock) and everyone else then reads that layer's spans
// from the shared file system instead of the registry. The file is kept
// only if the stream matched the layer digest; reads from it are checked
// as any read is (span digests), and a read that fails there is asked of
// the registry.
type keptBlob struct {
	*fetch.Blob
	path string
	log  *slog.Logger

	mu    sync.Mutex
	local *os.File // nil until the file is there
}

func keptBlobPath(cacheDir string, d digest.Digest) (string, error) {
	if err := d.Validate(); err != nil {
		return "", err
	}
	return filepath.Join(cacheDir, "blobs", string(d.Algorithm()), d.Encoded()), nil
}

// file returns the kept copy, opening it the first time it is there.
func (b *keptBlob) file() *os.File {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.local != nil {
		return b.local
	}
	f, err := os.Open(b.path)
	if err != nil {
		return nil
	}
	if st, err := f.Stat(); err != nil || st.Size() != b.Size() {
		f.Close()
		return nil
	}
	b.local = f
	now := time.Now()
	_ = os.Chtimes(b.path, now, now) // last use, for cache prune
	return f
}

func (b *keptBlob) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	if f := b.file(); f != nil {
		n, err := f.ReadAt(p, off)
		if err == nil || errors.Is(err, io.EOF) && off+int64(n) >= b.Size() {
			return n, err
		}
	}
	return b.Blob.ReadAt(ctx, p, off)
}

// Open streams the kept copy if there is one, else the registry's blob,
// writing it to the cache as it passes.
func (b *keptBlob) Open(ctx context.Context) (io.ReadCloser, error) {
	if f := b.file(); f != nil {
		return io.NopCloser(io.NewSectionReader(f, 0, b.Size())), nil
	}
	rc, err := b.Blob.Open(ctx)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(b.path), 0o755); err != nil {
		return rc, nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(b.path), "."+filepath.Base(b.path)+".tmp-*")
	if err != nil {
		return rc, nil // a read-only cache dir: just stream
	}
	return &teeStream{rc: rc, tmp: tmp, hash: sha256.New(), b: b}, nil
}

// teeStream copies a blob stream into a temporary file and renames it into
// place once the whole blob has passed and matched its digest.
type teeStream struct {
	rc   io.ReadCloser
	tmp  *os.File
	hash hash.Hash
	n    int64
	b    *keptBlob
	bad  bool
}

func (t *teeStream) Read(p []byte) (int, error) {
	n, err := t.rc.Read(p)
	if n > 0 && !t.bad {
		t.hash.Write(p[:n])
		if _, werr := t.tmp.Write(p[:n]); werr != nil {
			t.bad = true
		}
		t.n += int64(n)
	}
	if errors.Is(err, io.EOF) {
		t.finish()
	}
	return n, err
}

func (t *teeStream) finish() {
	if t.tmp == nil {
		return
	}
	tmp := t.tmp
	t.tmp = nil
	ok := !t.bad && t.n == t.b.Size() && digest.NewDigest(digest.SHA256, t.hash) == t.b.Digest()
	if cerr := tmp.Close(); ok && cerr == nil && os.Chmod(tmp.Name(), 0o644) == nil && os.Rename(tmp.Name(), t.b.path) == nil {
		t.b.log.Info("kept the layer blob for other nodes", "path", t.b.path, "bytes", t.n)
		return
	}
	os.Remove(tmp.Name())
}

func (t *teeStream) Close() error {
	if t.tmp != nil { // not read to the end
		t.tmp.Close()
		os.Remove(t.tmp.Name())
		t.tmp = nil
	}
	return t.rc.Close()
}

// Close releases the kept copy.
func (b *keptBlob) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.local == nil {
		return nil
	}
	err := b.local.Close()
	b.local = nil
	return err
}
