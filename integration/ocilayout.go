package integration

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	digest "github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// WriteOCILayout adds img to the OCI image layout at dir (created if
// needed) under the tag, as `skopeo copy ... oci:dir:tag` would: blobs in
// blobs/sha256, the manifest listed in index.json with
// org.opencontainers.image.ref.name.
func WriteOCILayout(dir, tag string, img *BuiltImage) error {
	blobs := map[digest.Digest][]byte{img.ConfigDigest: img.Config, img.Digest: img.Manifest}
	for _, l := range img.Layers {
		blobs[l.Digest] = l.Blob
	}
	if err := os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755); err != nil {
		return fmt.Errorf("oci layout %s: %w", dir, err)
	}
	for d, data := range blobs {
		if err := os.WriteFile(filepath.Join(dir, "blobs", d.Algorithm().String(), d.Encoded()), data, 0o644); err != nil {
			return fmt.Errorf("oci layout blob %s: %w", d, err)
		}
	}
	layout, _ := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
	if err := os.WriteFile(filepath.Join(dir, ocispec.ImageLayoutFile), layout, 0o644); err != nil {
		return fmt.Errorf("oci layout header: %w", err)
	}

	indexPath := filepath.Join(dir, "index.json")
	idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex}
	if data, err := os.ReadFile(indexPath); err == nil {
		if err := json.Unmarshal(data, &idx); err != nil {
			return fmt.Errorf("oci layout %s: existing index.json: %w", dir, err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("oci layout %s: %w", dir, err)
	}
	desc := img.Descriptor()
	desc.Annotations = map[string]string{ocispec.AnnotationRefName: tag}
	kept := idx.Manifests[:0]
	for _, m := range idx.Manifests {
		if m.Annotations[ocispec.AnnotationRefName] != tag {
			kept = append(kept, m)
		}
	}
	idx.Manifests = append(kept, desc)
	data, err := json.Marshal(idx)
	if err != nil {
		return fmt.Errorf("oci layout index: %w", err)
	}
	return os.WriteFile(indexPath, data, 0o644)
}

// UmociUnpack extracts layoutDir:tag with umoci into a temporary bundle and
// returns its rootfs: the reference tree a mount of the same image must
// match. As root it unpacks with owners and devices; otherwise --rootless.
// umoci 0.4.7 reads tar and gzip layers (eStargz included, whose TOC and
// landmark entries then appear in the rootfs); not zstd.
func UmociUnpack(t testing.TB, layoutDir, tag string) string {
	t.Helper()
	bin := RequireTool(t, "umoci")
	parent := t.TempDir()
	t.Cleanup(func() { makeRemovable(parent) })
	bundle := filepath.Join(parent, "bundle")
	args := []string{"unpack"}
	if os.Geteuid() != 0 {
		args = append(args, "--rootless")
	}
	args = append(args, "--image", layoutDir+":"+tag, bundle)
	var out bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("umoci %v: %v\n%s", args, err, out.String())
	}
	return filepath.Join(bundle, "rootfs")
}

// OracleRootfs unpacks img with umoci and returns the rootfs a mount of
// img must match. umoci 0.4.7 reads only OCI manifests with tar or gzip
// layers, so the layers' Source tars are re-encoded as gzip in an OCI copy:
// the tree depends only on the tars, and eStargz TOC/landmark entries (hidden
// by imgfs) stay out of the reference.
func OracleRootfs(t testing.TB, img *BuiltImage) string {
	t.Helper()
	layers := make([]*BuiltLayer, len(img.Layers))
	for i, l := range img.Layers {
		blob, err := GzipMembers(l.Source, 1, 0)
		if err != nil {
			t.Fatalf("oracle layer %d: %v", i, err)
		}
		layers[i] = &BuiltLayer{Compression: Gzip, Blob: blob, Digest: digest.FromBytes(blob),
			Tar: l.Source, DiffID: digest.FromBytes(l.Source), Source: l.Source}
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(img.Config, &cfg); err != nil {
		t.Fatalf("oracle config: %v", err)
	}
	oci := MustImage(t, ImageSpec{Kind: OCI, Platform: img.Platform, Config: cfg.Config, Layers: layers})
	layout := filepath.Join(t.TempDir(), "oracle-layout")
	if err := WriteOCILayout(layout, "oracle", oci); err != nil {
		t.Fatalf("oracle layout: %v", err)
	}
	return UmociUnpack(t, layout, "oracle")
}

// makeRemovable gives the owner write access to every directory so the
// temporary tree can be deleted even when the image made some read-only.
func makeRemovable(root string) {
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(p, 0o755)
		}
		return nil
	})
}
