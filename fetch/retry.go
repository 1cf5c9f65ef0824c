package fetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// retryTransport retries transient failures of replayable requests: 5xx
// gateway-ish statuses, 429, and connection resets, refusals, early EOFs and
// timeouts. It honours Retry-After (capped by MaxDelay), otherwise backs off
// exponentially with jitter, and stops at MaxAttempts or MaxElapsed,
// returning the last response (so the caller sees the registry's error) or
// error. Retries stop at the response headers: a body that breaks later is
// the caller's to resume.
type retryTransport struct {
	inner  http.RoundTripper
	policy RetryPolicy
	log    *slog.Logger
	clock  retryClock
}

// retryClock is what retries need of time, injectable for tests.
type retryClock struct {
	now    func() time.Time
	sleep  func(ctx context.Context, d time.Duration) error
	jitter func() float64 // uniform in [0, 1)
}

func realClock() retryClock {
	return retryClock{now: time.Now, sleep: sleepContext, jitter: rand.Float64}
}

func sleepContext(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func newRetryTransport(inner http.RoundTripper, policy RetryPolicy, log *slog.Logger) *retryTransport {
	return &retryTransport{inner: inner, policy: policy.withDefaults(), log: log, clock: realClock()}
}

func (t *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !replayable(req) {
		return t.inner.RoundTrip(req)
	}
	ctx := req.Context()
	start := t.clock.now()
	for attempt := 1; ; attempt++ {
		resp, err := t.inner.RoundTrip(req.Clone(ctx))
		if ctx.Err() != nil {
			if err == nil {
				resp.Body.Close()
			}
			return nil, ctx.Err()
		}
		var reason string
		var delay time.Duration
		switch {
		case err != nil:
			if !transientError(err) {
				return nil, err
			}
			reason = err.Error()
			delay = t.policy.backoff(attempt, t.clock.jitter())
		case retryableStatus(resp.StatusCode):
			reason = resp.Status
			delay = t.policy.backoff(attempt, t.clock.jitter())
			if ra, ok := parseRetryAfter(resp.Header.Get("Retry-After"), t.clock.now()); ok {
				delay = min(ra, t.policy.MaxDelay)
			}
		default:
			return resp, nil
		}

		elapsed := t.clock.now().Sub(start)
		if attempt >= t.policy.MaxAttempts || elapsed+delay > t.policy.MaxElapsed {
			if err != nil {
				return nil, fmt.Errorf("%w (gave up after %d attempts in %s)", err, attempt, elapsed.Round(time.Millisecond))
			}
			return resp, nil // the caller reports the registry's own error
		}
		if resp != nil {
			drainAndClose(resp.Body)
		}
		t.log.LogAttrs(ctx, slog.LevelInfo, "registry request failed, retrying",
			slog.String("method", req.Method), slog.String("url", redactURL(req.URL)),
			slog.String("reason", redactErrorText(reason)), slog.Int("attempt", attempt),
			slog.Duration("delay", delay))
		if err := t.clock.sleep(ctx, delay); err != nil {
			return nil, err
		}
	}
}

// replayable: only requests that can be sent again unchanged are retried.
func replayable(req *http.Request) bool {
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		return false
	}
	return req.Body == nil || req.Body == http.NoBody
}

func retryableStatus(code int) bool {
	switch code {
	case http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable,
		http.StatusGatewayTimeout, http.StatusTooManyRequests:
		return true
	}
	return false
}

// transientError reports network failures worth another try. Certificate
// and protocol errors are not: they will not heal by themselves.
func transientError(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if errors.Is(err, errBodyStalled) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ETIMEDOUT) || errors.Is(err, syscall.EHOSTUNREACH) ||
		errors.Is(err, syscall.ENETUNREACH) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	// HTTP/2 stream resets and GOAWAYs surface as unexported error types.
	msg := err.Error()
	return strings.Contains(msg, "connection reset") || strings.Contains(msg, "GOAWAY") ||
		strings.Contains(msg, "stream error") || strings.Contains(msg, "server closed")
}

// backoff is the delay before attempt+1: BaseDelay doubled per attempt,
// capped at MaxDelay, with "equal jitter" (half fixed, half random) so
// clients that failed together do not come back together.
func (p RetryPolicy) backoff(attempt int, jitter float64) time.Duration {
	d := p.BaseDelay
	for i := 1; i < attempt && d < p.MaxDelay; i++ {
		d *= 2
	}
	d = min(d, p.MaxDelay)
	half := d / 2
	return half + time.Duration(jitter*float64(d-half))
}

// parseRetryAfter reads a Retry-After header: delay-seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		if secs > int64(24*time.Hour/time.Second) { // absurd; the cap applies anyway
			secs = int64(24 * time.Hour / time.Second)
		}
		return time.Duration(secs) * time.Second, true
	}
	if at, err := http.ParseTime(v); err == nil {
		return max(at.Sub(now), 0), true
	}
	return 0, false
}

// drainAndClose reads a little of a discarded body so the connection can be
// reused, then closes it.
func drainAndClose(body io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(body, maxErrorBodySize))
	body.Close()
}
