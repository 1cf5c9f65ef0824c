package image

import (
	"bytes"
	"errors"
	iofs "io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	digest "github.com/opencontainers/go-digest"
)

// Which images a cached layer came from, for 'imgfs cache ls': one file
// per layer, <cache-dir>/refs/<algorithm>/<hex>, one image reference per
// line, appended when an image is opened with a reference not yet in it.
// Appends of a line are atomic, so processes sharing a cache dir may
// record at once; a damaged line only misnames an image.

// refsDir is where the layer files live under a cache dir.
func refsDir(cacheDir string) string { return filepath.Join(cacheDir, "refs") }

// maxLayerRefs bounds the references kept per layer (the file is read on
// every open of an image with that layer).
const maxLayerRefs = 64

// recordLayerImage notes that the image named ref has layer d. Failures
// are logged at Debug: the record is informational.
func recordLayerImage(cacheDir string, d digest.Digest, ref string, log *slog.Logger) {
	if cacheDir == "" || d.Validate() != nil || ref == "" || strings.ContainsAny(ref, "\n\r") {
		return
	}
	p := filepath.Join(refsDir(cacheDir), d.Algorithm().String(), d.Encoded())
	data, err := os.ReadFile(p)
	if err == nil {
		lines := strings.Split(string(data), "\n")
		if slices.Contains(lines, ref) || len(lines) > maxLayerRefs {
			return
		}
	} else if !errors.Is(err, iofs.ErrNotExist) {
		log.Debug("cannot read the images of a layer", "file", p, "err", err)
		return
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		log.Debug("cannot record the images of a layer", "err", err)
		return
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		log.Debug("cannot record the images of a layer", "err", err)
		return
	}
	defer f.Close()
	if _, err := f.WriteString(ref + "\n"); err != nil {
		log.Debug("cannot record the images of a layer", "err", err)
	}
}

// LayerImages are the images each cached layer was opened for, by layer
// digest, as recorded in cacheDir.
func LayerImages(cacheDir string) (map[digest.Digest][]string, error) {
	out := map[digest.Digest][]string{}
	root := refsDir(cacheDir)
	err := filepath.WalkDir(root, func(p string, de iofs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, iofs.ErrNotExist) {
				return nil
			}
			return err
		}
		if !de.Type().IsRegular() {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		alg, hex, ok := strings.Cut(filepath.ToSlash(rel), "/")
		d := digest.NewDigestFromEncoded(digest.Algorithm(alg), hex)
		if !ok || d.Validate() != nil {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return nil // removed meanwhile
		}
		var refs []string
		for _, line := range bytes.Split(data, []byte("\n")) {
			if r := string(line); r != "" && !slices.Contains(refs, r) {
				refs = append(refs, r)
			}
		}
		out[d] = refs
		return nil
	})
	return out, err
}

// ForgetLayerImages removes the record of a layer (when its index is
// pruned).
func ForgetLayerImages(cacheDir string, d digest.Digest) error {
	err := os.Remove(filepath.Join(refsDir(cacheDir), d.Algorithm().String(), d.Encoded()))
	if errors.Is(err, iofs.ErrNotExist) {
		return nil
	}
	return err
}
