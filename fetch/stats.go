package fetch

import (
	"context"
	"io"
	"net/http"
	"sync/atomic"
)

// netCounters accumulate the network cost of one Blob. They travel in the
// request context so that every attempt (retries, token refreshes, redirects)
// is counted at the bottom of the stack, where it really hits the network.
type netCounters struct {
	requests atomic.Int64
	bytes    atomic.Int64
}

func (c *netCounters) snapshot() BlobStats {
	return BlobStats{Requests: c.requests.Load(), Bytes: c.bytes.Load()}
}

type countersKey struct{}

func withCounters(ctx context.Context, c *netCounters) context.Context {
	return context.WithValue(ctx, countersKey{}, c)
}

func countersFrom(ctx context.Context) *netCounters {
	c, _ := ctx.Value(countersKey{}).(*netCounters)
	return c
}

// countingTransport counts requests and received body bytes into the
// counters found in the request context, if any.
type countingTransport struct {
	inner http.RoundTripper
}

func (t *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	c := countersFrom(req.Context())
	if c == nil {
		return t.inner.RoundTrip(req)
	}
	c.requests.Add(1)
	resp, err := t.inner.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	resp.Body = &countingBody{ReadCloser: resp.Body, c: c}
	return resp, nil
}

type countingBody struct {
	io.ReadCloser
	c *netCounters
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.c.bytes.Add(int64(n))
	return n, err
}
