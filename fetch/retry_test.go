package fetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

// scriptedTransport answers each attempt with the next scripted step.
type scriptedTransport struct {
	steps  []func(*http.Request) (*http.Response, error)
	calls  int
	bodies []*trackedBody
}

type trackedBody struct {
	io.Reader
	closed bool
}

func (b *trackedBody) Close() error { b.closed = true; return nil }

func (s *scriptedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	step := s.steps[min(s.calls, len(s.steps)-1)]
	s.calls++
	resp, err := step(req)
	if resp != nil {
		tb := &trackedBody{Reader: strings.NewReader("body")}
		s.bodies = append(s.bodies, tb)
		resp.Body = tb
		resp.Request = req
	}
	return resp, err
}

func status(code int, header ...string) func(*http.Request) (*http.Response, error) {
	return func(*http.Request) (*http.Response, error) {
		h := http.Header{}
		for i := 0; i+1 < len(header); i += 2 {
			h.Set(header[i], header[i+1])
		}
		return &http.Response{StatusCode: code, Status: fmt.Sprint(code), Header: h}, nil
	}
}

func fail(err error) func(*http.Request) (*http.Response, error) {
	return func(*http.Request) (*http.Response, error) { return nil, err }
}

// fakeClock advances only when the retry transport sleeps.
type fakeClock struct {
	now    time.Time
	slept  []time.Duration
	jitter float64
}

func (c *fakeClock) clock() retryClock {
	return retryClock{
		now: func() time.Time { return c.now },
		sleep: func(ctx context.Context, d time.Duration) error {
			c.slept = append(c.slept, d)
			c.now = c.now.Add(d)
			return ctx.Err()
		},
		jitter: func() float64 { return c.jitter },
	}
}

func newTestRetry(inner http.RoundTripper, p RetryPolicy, c *fakeClock) *retryTransport {
	rt := newRetryTransport(inner, p, slog.New(slog.DiscardHandler))
	rt.clock = c.clock()
	return rt
}

func get(t *testing.T, rt http.RoundTripper) (*http.Response, error) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://registry.test/v2/a/blobs/x?token=abc", nil)
	return rt.RoundTrip(req)
}

func TestRetryAfterHonoured(t *testing.T) {
	start := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		header string
		want   time.Duration
	}{
		{"3", 3 * time.Second},
		{"120", 10 * time.Second}, // capped by MaxDelay
		{start.Add(4 * time.Second).Format(http.TimeFormat), 4 * time.Second},
		{start.Add(-time.Hour).Format(http.TimeFormat), 0},
		{"0", 0},
	} {
		c := &fakeClock{now: start}
		st := &scriptedTransport{steps: []func(*http.Request) (*http.Response, error){
			status(429, "Retry-After", tc.header), status(200)}}
		resp, err := get(t, newTestRetry(st, DefaultRetryPolicy(), c))
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%q: %v %v", tc.header, resp, err)
		}
		if len(c.slept) != 1 || c.slept[0] != tc.want {
			t.Errorf("Retry-After %q: slept %v, want %v", tc.header, c.slept, tc.want)
		}
		if !st.bodies[0].closed {
			t.Errorf("discarded response body not closed")
		}
	}
}

func TestRetryBackoffExponentialWithJitter(t *testing.T) {
	p := RetryPolicy{MaxAttempts: 6, MaxElapsed: time.Hour, BaseDelay: 200 * time.Millisecond, MaxDelay: time.Second}
	for _, tc := range []struct {
		jitter float64
		want   []time.Duration
	}{
		{0, []time.Duration{100, 200, 400, 500, 500}},
		{0.999999, []time.Duration{200, 400, 800, 1000, 1000}},
	} {
		c := &fakeClock{now: time.Unix(0, 0), jitter: tc.jitter}
		st := &scriptedTransport{steps: []func(*http.Request) (*http.Response, error){status(503)}}
		resp, err := get(t, newTestRetry(st, p, c))
		if err != nil || resp.StatusCode != 503 {
			t.Fatalf("want the last 503 back, got %v %v", resp, err)
		}
		if st.calls != 6 {
			t.Errorf("attempts = %d, want 6", st.calls)
		}
		for i, w := range tc.want {
			if got := c.slept[i].Round(time.Millisecond); got != w*time.Millisecond {
				t.Errorf("jitter %v: delay %d = %v, want %v", tc.jitter, i, got, w*time.Millisecond)
			}
		}
		if st.bodies[5].closed {
			t.Error("the returned response's body was closed")
		}
	}
}

func TestRetryStopsAtMaxElapsed(t *testing.T) {
	p := RetryPolicy{MaxAttempts: 100, MaxElapsed: 3 * time.Second, BaseDelay: time.Second, MaxDelay: time.Second}
	c := &fakeClock{now: time.Unix(0, 0), jitter: 0.999999}
	st := &scriptedTransport{steps: []func(*http.Request) (*http.Response, error){status(502)}}
	get(t, newTestRetry(st, p, c))
	if st.calls != 4 { // t=0,1,2,3; the next would start after 4 s
		t.Errorf("attempts = %d, want 4 (slept %v)", st.calls, c.slept)
	}
}

func TestRetryTransientErrorsOnly(t *testing.T) {
	p := RetryPolicy{MaxAttempts: 3, BaseDelay: time.Millisecond}
	for _, tc := range []struct {
		err      error
		attempts int
	}{
		{&net.OpError{Op: "read", Err: syscall.ECONNRESET}, 3},
		{&net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, 3},
		{io.ErrUnexpectedEOF, 3},
		{fmt.Errorf("read: %w", io.EOF), 3},
		{&net.DNSError{Err: "timeout", IsTimeout: true}, 3},
		{errors.New("tls: failed to verify certificate: x509: unknown authority"), 1},
		{errors.New("http: server gave HTTP response to HTTPS client"), 1},
	} {
		c := &fakeClock{now: time.Unix(0, 0)}
		st := &scriptedTransport{steps: []func(*http.Request) (*http.Response, error){fail(tc.err)}}
		_, err := get(t, newTestRetry(st, p, c))
		if err == nil || st.calls != tc.attempts {
			t.Errorf("%v: attempts %d (want %d), err %v", tc.err, st.calls, tc.attempts, err)
		}
		if tc.attempts > 1 && !strings.Contains(err.Error(), "gave up after 3 attempts") {
			t.Errorf("error does not say it gave up: %v", err)
		}
	}
}

func TestRetryOnlyReplayableRequests(t *testing.T) {
	c := &fakeClock{now: time.Unix(0, 0)}
	st := &scriptedTransport{steps: []func(*http.Request) (*http.Response, error){status(503)}}
	rt := newTestRetry(st, DefaultRetryPolicy(), c)
	req, _ := http.NewRequest(http.MethodPost, "http://registry.test/token", strings.NewReader("grant_type=password"))
	resp, err := rt.RoundTrip(req)
	if err != nil || resp.StatusCode != 503 || st.calls != 1 {
		t.Errorf("POST retried: calls %d", st.calls)
	}
	for _, code := range []int{200, 206, 307, 400, 401, 403, 404, 416, 501} {
		st := &scriptedTransport{steps: []func(*http.Request) (*http.Response, error){status(code)}}
		get(t, newTestRetry(st, DefaultRetryPolicy(), c))
		if st.calls != 1 {
			t.Errorf("status %d retried", code)
		}
	}
}

func TestRetryRespectsContext(t *testing.T) {
	st := &scriptedTransport{steps: []func(*http.Request) (*http.Response, error){status(503)}}
	rt := newRetryTransport(st, RetryPolicy{BaseDelay: time.Hour, MaxDelay: time.Hour, MaxElapsed: 10 * time.Hour}, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://registry.test/v2/", nil)
	start := time.Now()
	_, err := rt.RoundTrip(req)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 5*time.Second {
		t.Errorf("err %v after %s", err, time.Since(start))
	}
}

func TestRetryRealConnectionRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	counter := &scriptedTransport{}
	base := NewBaseTransport(false)
	t.Cleanup(base.CloseIdleConnections)
	counter.steps = []func(*http.Request) (*http.Response, error){func(r *http.Request) (*http.Response, error) {
		resp, err := base.RoundTrip(r)
		if resp != nil {
			resp.Body.Close()
		}
		return resp, err
	}}
	rt := newRetryTransport(counter, RetryPolicy{MaxAttempts: 3, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}, slog.New(slog.DiscardHandler))
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/v2/", nil)
	if _, err := rt.RoundTrip(req); !errors.Is(err, syscall.ECONNREFUSED) || counter.calls != 3 {
		t.Errorf("err %v, attempts %d", err, counter.calls)
	}
}

func TestRetryPolicyDefaults(t *testing.T) {
	d := DefaultRetryPolicy()
	if d.MaxAttempts != 5 || d.MaxElapsed != time.Minute || d.BaseDelay != 200*time.Millisecond || d.MaxDelay != 10*time.Second {
		t.Errorf("DefaultRetryPolicy = %+v", d)
	}
	if got := (RetryPolicy{}).withDefaults(); got != d {
		t.Errorf("zero policy = %+v", got)
	}
	if got := (RetryPolicy{MaxAttempts: 2}).withDefaults(); got.MaxAttempts != 2 || got.BaseDelay != d.BaseDelay {
		t.Errorf("partial policy = %+v", got)
	}
}
