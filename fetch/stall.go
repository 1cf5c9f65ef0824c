package fetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// errBodyStalled: a response body sent nothing for the stall timeout. It is
// transient: the read is resumed (or retried) within the retry policy.
var errBodyStalled = errors.New("the server stopped sending")

// stallTransport fails a response body that sends no byte for timeout: a
// registry or CDN that sends headers and a little data, then stalls, would
// otherwise hold a read (and the FUSE request behind it) until the TCP
// connection dies, which may be never. Connect and header timeouts are
// the http.Transport's (see NewBaseTransport).
type stallTransport struct {
	inner   http.RoundTripper
	timeout time.Duration
}

func (t *stallTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithCancel(req.Context())
	resp, err := t.inner.RoundTrip(req.WithContext(ctx))
	if err != nil {
		cancel()
		return nil, err
	}
	body := &stallBody{rc: resp.Body, cancel: cancel, timeout: t.timeout}
	body.timer = time.AfterFunc(t.timeout, body.stall)
	resp.Body = body
	return resp, nil
}

// stallBody cancels its request when no byte arrives for timeout; the
// Read that was waiting then returns errBodyStalled.
type stallBody struct {
	rc      io.ReadCloser
	cancel  context.CancelFunc
	timeout time.Duration
	timer   *time.Timer
	stalled atomic.Bool
	once    sync.Once
}

func (b *stallBody) stall() {
	b.stalled.Store(true)
	b.cancel()
}

func (b *stallBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 && !b.stalled.Load() {
		b.timer.Reset(b.timeout)
	}
	if err != nil && err != io.EOF && b.stalled.Load() {
		err = fmt.Errorf("no data for %s: %w", b.timeout, errBodyStalled)
	}
	return n, err
}

func (b *stallBody) Close() error {
	b.once.Do(func() { b.timer.Stop() })
	err := b.rc.Close()
	b.cancel()
	return err
}
