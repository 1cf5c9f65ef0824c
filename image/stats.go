package image

import (
	"strconv"

	"github.com/imgfs/imgfs/index"
	"github.com/imgfs/imgfs/index/cache"
	"github.com/imgfs/imgfs/manifest"
)

// Stats is what an image cost so far, per layer and in the span cache.
type Stats struct {
	Layers []LayerStats
	Cache  cache.Stats
}

// LayerStats is one layer's share.
type LayerStats struct {
	Layer    manifest.Layer
	Requests int64 // HTTP requests for the blob, retries included
	Fetched  int64 // body bytes received for the blob
	Reads    index.ReaderStats
}

// Stats reports network requests and bytes per layer, the read path's
// lookups, hits and decodes, and the span cache's tiers.
func (img *Image) Stats() Stats {
	s := Stats{Cache: img.cache.Stats()}
	for _, l := range img.layers {
		bs := l.Blob.Stats()
		s.Layers = append(s.Layers, LayerStats{Layer: l.Layer, Requests: bs.Requests, Fetched: bs.Bytes, Reads: l.Reader.Stats()})
	}
	return s
}

// estargzUncompressedSize is what eStargz builders record of a layer's
// uncompressed size.
const estargzUncompressedSize = "io.containers.estargz.uncompressed-size"

// UncompressedSize is a layer's uncompressed (tar) size when it is known
// without fetching anything: from the eStargz annotation, else from the
// layer's index in cacheDir (usable for scope, see Scope) when that
// addresses the tar stream itself (tar, gzip, zstd). It never builds an
// index: that may mean streaming the layer.
func UncompressedSize(cacheDir, scope string, l manifest.Layer) (int64, bool) {
	if v, ok := l.Annotations[estargzUncompressedSize]; ok {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
			return n, true
		}
	}
	switch l.Format {
	case manifest.FormatTar, manifest.FormatGzip, manifest.FormatZstd:
	default:
		return 0, false // TOC formats index chunks, not the tar stream
	}
	if cacheDir == "" {
		return 0, false
	}
	ix, err := index.Lookup(cacheDir, l, scope, nil)
	if err != nil {
		return 0, false
	}
	defer ix.Close()
	return ix.UncompressedSize(), true
}
