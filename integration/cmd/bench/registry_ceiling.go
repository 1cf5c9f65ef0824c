package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	digest "github.com/opencontainers/go-digest"
)

// rangePlan is one way of reading a blob with HTTP range requests.
type rangePlan struct {
	chunk, parallel int
	limit           int64 // bytes to read (a prefix of the blob)
}

// registryRangeMBps reads the first plan.limit bytes of a blob straight from
// the registry with range requests of plan.chunk bytes, plan.parallel at a
// time: what the registry can give a lazy reader, the ceiling of P5.
func (b *bench) registryRangeMBps(ctx context.Context, repo string, d digest.Digest, plan rangePlan) (float64, error) {
	url := fmt.Sprintf("http://%s/v2/%s/blobs/%s", b.registry, repo, d)
	offsets := make(chan int64)
	go func() {
		defer close(offsets)
		for off := int64(0); off < plan.limit; off += int64(plan.chunk) {
			select {
			case offsets <- off:
			case <-ctx.Done():
				return
			}
		}
	}()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	start := time.Now()
	for range plan.parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for off := range offsets {
				if err := fetchRange(ctx, url, off, min(off+int64(plan.chunk), plan.limit)-1); err != nil {
					mu.Lock()
					firstErr = err
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return 0, firstErr
	}
	return mbps(plan.limit, time.Since(start)), nil
}

func fetchRange(ctx context.Context, url string, from, to int64) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", from, to))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err == nil && (resp.StatusCode != http.StatusPartialContent || n != to-from+1) {
		err = fmt.Errorf("range %d-%d: HTTP %s, %d bytes", from, to, resp.Status, n)
	}
	return err
}
