package main

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"

	"github.com/imgfs/imgfs/integration"
)

// setupBigFiles pushes the P4/P5 image (one big file in an uncompressed tar
// layer, one in a gzip layer) and writes the same files to local disk.
func (b *bench) setupBigFiles(ctx context.Context) (*benchImage, error) {
	raw, gz, layers := bigFileLayers(b.bigSize)
	b.bigRawSum, b.bigGzSum = sha256.Sum256(raw), sha256.Sum256(gz)
	local := filepath.Join(b.work, "local")
	if err := os.MkdirAll(local, 0o755); err != nil {
		return nil, err
	}
	for name, data := range map[string][]byte{"big-raw.bin": raw, "big-gz.bin": gz} {
		if err := os.WriteFile(filepath.Join(local, name), data, 0o644); err != nil {
			return nil, fmt.Errorf("local copy: %w", err)
		}
	}
	im, built, err := b.buildAndPush(ctx, imageRequest{name: "big", repo: "bench/big", tag: "v1", layers: layers,
		compressions: []integration.Compression{integration.Uncompressed, integration.Gzip}})
	if err != nil {
		return nil, err
	}
	b.bigGzBlob = built[1].Blob
	return im, nil
}
