package image

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"

	digest "github.com/opencontainers/go-digest"

	"github.com/imgfs/imgfs/fetch"
)

// localFiles are the files of a local source, read in place: the files of
// a directory, or the members of an uncompressed tar archive.
type localFiles interface {
	// section opens the file at a slash-separated path relative to the
	// source's root: it is base+[0,size) of the returned ReaderAt.
	section(name string) (r io.ReaderAt, base, size int64, err error)
	close() error
}

// maxLocalMetadata bounds the small files of a local source read whole
// (index.json, manifest.json, manifests, configs).
const maxLocalMetadata = 32 << 20

// readLocal reads a whole small file of fs.
func readLocal(fs localFiles, name string, limit int64) ([]byte, error) {
	r, base, size, err := fs.section(name)
	if err != nil {
		return nil, err
	}
	if size > limit {
		return nil, fmt.Errorf("%s: %d bytes, more than the %d expected of it", name, size, limit)
	}
	buf := make([]byte, size)
	if _, err := r.ReadAt(buf, base); err != nil && !(err == io.EOF && size == 0) {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return buf, nil
}

// dirFiles are the files under a directory. Files opened for blobs stay
// open until close.
type dirFiles struct {
	root string
	mu   sync.Mutex
	open []*os.File
}

func (d *dirFiles) section(name string) (io.ReaderAt, int64, int64, error) {
	f, err := os.Open(filepath.Join(d.root, filepath.FromSlash(name)))
	if err != nil {
		return nil, 0, 0, notFoundIfMissing(err)
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, 0, err
	}
	if !info.Mode().IsRegular() {
		f.Close()
		return nil, 0, 0, fmt.Errorf("%s is not a regular file", f.Name())
	}
	d.mu.Lock()
	d.open = append(d.open, f)
	d.mu.Unlock()
	return f, 0, info.Size(), nil
}

func (d *dirFiles) close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var errs []error
	for _, f := range d.open {
		errs = append(errs, f.Close())
	}
	d.open = nil
	return errors.Join(errs...)
}

// tarFiles are the members of an uncompressed tar archive, read in place:
// where each member's data starts and how long it is.
type tarFiles struct {
	file    *os.File
	members map[string]tarMember
}

type tarMember struct{ off, size int64 }

// openTarFiles lists the regular members of the archive at p, seeking over
// their data (nothing is extracted or read but the headers).
func openTarFiles(p string) (*tarFiles, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, notFoundIfMissing(err)
	}
	if info, err := f.Stat(); err != nil || !info.Mode().IsRegular() {
		f.Close()
		if err == nil {
			err = fmt.Errorf("%s is not a regular file", p)
		}
		return nil, err
	}
	var magic [4]byte
	if n, _ := f.ReadAt(magic[:], 0); n == 4 {
		switch {
		case magic[0] == 0x1f && magic[1] == 0x8b:
			f.Close()
			return nil, fmt.Errorf("%s is gzip-compressed: imgfs reads an archive in place, so it must be an uncompressed tar (gunzip it first)", p)
		case bytes.Equal(magic[:], []byte{0x28, 0xb5, 0x2f, 0xfd}):
			f.Close()
			return nil, fmt.Errorf("%s is zstd-compressed: imgfs reads an archive in place, so it must be an uncompressed tar (unzstd it first)", p)
		}
	}
	t := &tarFiles{file: f, members: map[string]tarMember{}}
	tr := tar.NewReader(f) // *os.File is an io.Seeker: data is skipped, not read
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("%s: not a tar archive: %w", p, err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		off, err := f.Seek(0, io.SeekCurrent) // the reader stops right after the header
		if err != nil {
			f.Close()
			return nil, err
		}
		t.members[cleanMember(h.Name)] = tarMember{off: off, size: h.Size}
	}
	return t, nil
}

func cleanMember(name string) string {
	return strings.TrimPrefix(path.Clean("/"+name), "/")
}

func (t *tarFiles) section(name string) (io.ReaderAt, int64, int64, error) {
	m, ok := t.members[cleanMember(name)]
	if !ok {
		return nil, 0, 0, fmt.Errorf("%s: no member %s: %w", t.file.Name(), name, fetch.ErrNotFound)
	}
	return t.file, m.off, m.size, nil
}

func (t *tarFiles) close() error { return t.file.Close() }

func notFoundIfMissing(err error) error {
	if errors.Is(err, iofs.ErrNotExist) {
		return fmt.Errorf("%w (%w)", err, fetch.ErrNotFound)
	}
	return err
}

// blobPath is where an OCI layout (and a docker archive written by Docker
// 25 or later) keeps a blob.
func blobPath(d digest.Digest) string { return "blobs/" + d.Algorithm().String() + "/" + d.Encoded() }

// readVerified reads a whole small blob and checks it against its digest.
func readVerified(fs localFiles, name string, d digest.Digest, limit int64) ([]byte, error) {
	if err := d.Validate(); err != nil {
		return nil, fmt.Errorf("blob %s: %w", d, err)
	}
	if limit <= 0 {
		limit = maxLocalMetadata
	}
	data, err := readLocal(fs, name, limit)
	if err != nil {
		return nil, err
	}
	if got := d.Algorithm().FromBytes(data); got != d {
		return nil, fmt.Errorf("%s: %w: the file hashes to %s, not %s", name, fetch.ErrDigest, got, d)
	}
	return data, nil
}

// openLocalBlob opens a blob of fs stored at name, checking its size
// against what the manifest says (size < 0: unknown).
func openLocalBlob(fs localFiles, what, name string, d digest.Digest, size int64) (Blob, error) {
	if err := d.Validate(); err != nil {
		return nil, fmt.Errorf("blob %s: %w", d, err)
	}
	r, base, n, err := fs.section(name)
	if err != nil {
		return nil, err
	}
	if size >= 0 && n != size {
		return nil, fmt.Errorf("%s: blob %s has %d bytes, the manifest says %d", what, d, n, size)
	}
	return &localBlob{r: r, base: base, size: n, what: what + " blob " + d.String()}, nil
}

// openLocalSource opens the local source ref names.
func openLocalSource(ctx context.Context, ref Reference) (source, error) {
	switch ref.Transport {
	case TransportOCI:
		info, err := os.Stat(ref.Path)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", ref.Given, notFoundIfMissing(err))
		}
		if !info.IsDir() {
			return nil, fmt.Errorf("%s: %s is not a directory (for a tar of a layout use oci-archive:%s)", ref.Given, ref.Path, ref.Path)
		}
		return openOCILayout(&dirFiles{root: ref.Path}, ref)
	case TransportOCIArchive:
		t, err := openTarFiles(ref.Path)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", ref.Given, err)
		}
		src, err := openOCILayout(t, ref)
		if err != nil {
			t.close()
		}
		return src, err
	case TransportDockerArchive:
		t, err := openTarFiles(ref.Path)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", ref.Given, err)
		}
		src, err := openDockerArchive(t, ref)
		if err != nil {
			t.close()
		}
		return src, err
	}
	return nil, fmt.Errorf("unknown transport %q", ref.Transport)
}
