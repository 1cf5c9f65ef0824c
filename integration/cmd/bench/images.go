package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/containerd/stargz-snapshotter/estargz"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/imgfs/imgfs/integration"
)

// benchImage is an image pushed to the bench registry, with what the
// measurements need to know about it (the blobs themselves are dropped
// after the push, except when kept for P7).
type benchImage struct {
	name   string // short name in the report
	ref    string // HOST/repo:tag
	layers []layerInfo
	files  map[string]fileRef // regular files of the merged tree
}

type layerInfo struct {
	digest      digest.Digest
	compression integration.Compression
	blobSize    int64
	tarSize     int64 // uncompressed tar (for eStargz: with TOC and landmark entries)
	entries     int   // tar entries the fixture wrote (files, dirs, links, whiteouts)
	// chunkCSize is, for eStargz, the compressed size of each file's chunks
	// (the gzip members holding them): the P3 denominator.
	chunkCSize map[string]int64
}

type fileRef struct {
	layer int
	size  int64
}

// ratio is the layer's compressed/uncompressed ratio.
func (l layerInfo) ratio() float64 { return float64(l.blobSize) / float64(l.tarSize) }

func (im *benchImage) uncompressed() (n int64) {
	for _, l := range im.layers {
		n += l.tarSize
	}
	return n
}

func (im *benchImage) compressed() (n int64) {
	for _, l := range im.layers {
		n += l.blobSize
	}
	return n
}

// imageRequest says how to build and push one image.
type imageRequest struct {
	name         string
	repo, tag    string
	layers       [][]integration.Entry
	compressions []integration.Compression // per layer; a single value applies to all
}

var gzipAll = []integration.Compression{integration.Gzip}

// buildAndPush encodes the layers, pushes the image and describes it. The
// encoded layers are returned for callers that reuse a blob.
func (b *bench) buildAndPush(ctx context.Context, req imageRequest) (*benchImage, []*integration.BuiltLayer, error) {
	start := time.Now()
	var built []*integration.BuiltLayer
	for i, entries := range req.layers {
		comp := req.compressions[0]
		if len(req.compressions) > 1 {
			comp = req.compressions[i]
		}
		l, err := integration.BuildLayer(integration.LayerSpec{Entries: entries, Compression: comp, Encoder: encoderFor(comp)})
		if err != nil {
			return nil, nil, fmt.Errorf("%s layer %d: %w", req.name, i, err)
		}
		built = append(built, l)
	}
	slog.Info("encoded", "image", req.name, "took", time.Since(start).Round(time.Millisecond))
	return b.pushBuilt(ctx, req.name, req.repo, req.tag, req.layers, built)
}

// pushBuilt pushes an image of already encoded layers.
func (b *bench) pushBuilt(ctx context.Context, name, repo, tag string, layers [][]integration.Entry, built []*integration.BuiltLayer) (*benchImage, []*integration.BuiltLayer, error) {
	start := time.Now()
	im := &benchImage{name: name, ref: fmt.Sprintf("%s/%s:%s", b.registry, repo, tag), files: map[string]fileRef{}}
	for i, l := range built {
		entries := layers[i]
		info := layerInfo{digest: l.Digest, compression: l.Compression, blobSize: int64(len(l.Blob)), tarSize: int64(len(l.Tar)), entries: len(entries)}
		if l.Compression == integration.Estargz {
			var err error
			if info.chunkCSize, err = estargzChunkSizes(l.Blob, entries); err != nil {
				return nil, nil, fmt.Errorf("%s layer %d: %w", name, i, err)
			}
		}
		im.layers = append(im.layers, info)
		for _, e := range entries {
			switch e.Type {
			case integration.TypeFile:
				im.files[e.Path] = fileRef{layer: i, size: int64(len(e.Content))}
			case integration.TypeWhiteout:
				for p := range im.files {
					if p == e.Path || strings.HasPrefix(p, e.Path+"/") {
						delete(im.files, p)
					}
				}
			}
		}
	}
	img, err := integration.BuildImage(integration.ImageSpec{
		Kind: integration.OCI,
		Config: ocispec.ImageConfig{
			Env: []string{"PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"},
			Cmd: []string{"/bin/busybox", "true"},
		},
		Layers: built,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	pushCtx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	if err := integration.PushImage(pushCtx, integration.Target{Host: b.registry}, repo, tag, img); err != nil {
		return nil, nil, fmt.Errorf("push %s: %w", im.ref, err)
	}
	slog.Info("pushed", "image", im.ref, "files", len(im.files), "uncompressed", mib(im.uncompressed()),
		"compressed", mib(im.compressed()), "took", time.Since(start).Round(time.Millisecond))
	return im, built, nil
}

// estargzChunkSizes reads the TOC of an eStargz blob and sums, per regular
// file, the compressed size of the chunks holding it.
func estargzChunkSizes(blob []byte, entries []integration.Entry) (map[string]int64, error) {
	r, err := estargz.Open(io.NewSectionReader(bytes.NewReader(blob), 0, int64(len(blob))))
	if err != nil {
		return nil, fmt.Errorf("open eStargz TOC: %w", err)
	}
	sizes := map[string]int64{}
	for _, e := range entries {
		if e.Type != integration.TypeFile || len(e.Content) == 0 {
			continue
		}
		var total int64
		for off := int64(0); off < int64(len(e.Content)); {
			ce, ok := r.ChunkEntryForOffset(e.Path, off)
			if !ok {
				return nil, fmt.Errorf("eStargz TOC: no chunk of %s at %d", e.Path, off)
			}
			total += ce.NextOffset() - ce.Offset
			next := ce.ChunkOffset + ce.ChunkSize
			if ce.ChunkSize == 0 {
				next = int64(len(e.Content))
			}
			if next <= off {
				return nil, fmt.Errorf("eStargz TOC: chunk of %s at %d does not advance", e.Path, off)
			}
			off = next
		}
		sizes[e.Path] = total
	}
	return sizes, nil
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
