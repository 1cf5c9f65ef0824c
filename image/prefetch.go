package image

import (
	"context"
	"io"
	"sync"

	"github.com/imgfs/imgfs/fs"
	"github.com/imgfs/imgfs/index"
	"github.com/imgfs/imgfs/manifest"
)

// landmarkPrefetchers bounds how many layers fetch their prioritized files
// at once: each fetch is a few large range requests.
const landmarkPrefetchers = 3

// PrefetchLandmarks fetches the prioritized files of every eStargz layer
// into the cache, as stargz-snapshotter does at mount, and returns when all
// are done. Failures are only logged: reads fetch what they need anyway.
func (img *Image) PrefetchLandmarks(ctx context.Context) {
	var wg sync.WaitGroup
	slots := make(chan struct{}, landmarkPrefetchers)
	for _, l := range img.layers {
		if l.Index.Format != manifest.FormatEstargz {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			slots <- struct{}{}
			defer func() { <-slots }()
			img.prefetchLayer(ctx, l)
		}()
	}
	wg.Wait()
}

func (img *Image) prefetchLayer(ctx context.Context, l *Layer) {
	before := l.Reader.Stats()
	if err := l.Reader.Prefetch(ctx); err != nil {
		img.log.Debug("prefetch of prioritized files failed; reads will fetch them", "layer", l.Digest, "err", err)
		return
	}
	if after := l.Reader.Stats(); after.SpansDecoded > before.SpansDecoded {
		img.log.Debug("prefetched prioritized files", "layer", l.Digest,
			"chunks", after.SpansDecoded-before.SpansDecoded, "requests", after.BlobReads-before.BlobReads,
			"bytes", after.BlobBytes-before.BlobBytes)
	}
}

// ReadAll reads every regular file of the image once, one at a time, so
// that the cache fills without competing much with the reads programs
// make. A file that fails is logged and skipped; it returns the number of
// files read, or ctx's error.
func (img *Image) ReadAll(ctx context.Context) (int, error) {
	files := 0
	err := img.tree.Walk(func(p string, n *fs.Node) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if n.Synthetic() || n.Type() != index.TypeReg || n.Size() == 0 {
			return nil
		}
		f, err := img.openNode(ctx, n)
		if err == nil {
			_, err = f.WriteTo(io.Discard)
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			img.log.Warn("prefetch", "path", p, "err", err)
			return nil
		}
		files++
		return nil
	})
	return files, err
}
