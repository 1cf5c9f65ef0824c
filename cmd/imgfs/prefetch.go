package main

import (
	"context"
	"log/slog"
	"sync"

	"github.com/imgfs/imgfs/index"
	"github.com/imgfs/imgfs/manifest"
)

// prefetchMode is what mount fetches in the background once ready.
type prefetchMode string

const (
	prefetchNone     prefetchMode = "none"     // nothing
	prefetchLandmark prefetchMode = "landmark" // prioritized files of eStargz layers (default)
	prefetchAllFiles prefetchMode = "all"      // prioritized files, then every file
)

const prefetchFlagHelp = "landmark: fetch the prioritized files of eStargz layers (those before .prefetch.landmark) in the background; " +
	"all: that, then every file, one at a time, at low priority; none: nothing"

// parsePrefetch checks a --prefetch value.
func parsePrefetch(s string) (prefetchMode, error) {
	switch m := prefetchMode(s); m {
	case prefetchNone, prefetchLandmark, prefetchAllFiles:
		return m, nil
	}
	return "", usageErrorf("invalid --prefetch %q: want landmark, all or none", s)
}

// landmarkPrefetchers bounds how many layers fetch their prioritized files
// at once: each fetch is a few large range requests.
const landmarkPrefetchers = 3

// prefetchLandmarks fetches the prioritized files of every eStargz layer
// into the cache, as stargz-snapshotter does at mount, and returns when all
// are done. Failures are only logged: reads fetch what they need anyway.
func prefetchLandmarks(ctx context.Context, o *openedImage, log *slog.Logger) {
	var wg sync.WaitGroup
	slots := make(chan struct{}, landmarkPrefetchers)
	for i, ix := range o.indexes {
		if ix.Format != manifest.FormatEstargz {
			continue
		}
		r := o.readers[i]
		wg.Add(1)
		go func() {
			defer wg.Done()
			slots <- struct{}{}
			defer func() { <-slots }()
			prefetchLayer(ctx, r, ix, log)
		}()
	}
	wg.Wait()
}

func prefetchLayer(ctx context.Context, r *index.Reader, ix *index.Index, log *slog.Logger) {
	before := r.Stats()
	if err := r.Prefetch(ctx); err != nil {
		log.Debug("prefetch of prioritized files failed; reads will fetch them", "layer", ix.Layer, "err", err)
		return
	}
	if after := r.Stats(); after.SpansDecoded > before.SpansDecoded {
		log.Debug("prefetched prioritized files", "layer", ix.Layer,
			"chunks", after.SpansDecoded-before.SpansDecoded, "requests", after.BlobReads-before.BlobReads,
			"bytes", after.BlobBytes-before.BlobBytes)
	}
}
