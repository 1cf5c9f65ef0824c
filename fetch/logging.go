package fetch

import (
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// loggingTransport logs every request that reaches the network: one line per
// registry call at Info (range reads of blobs at Debug, they are many), and
// the request and response headers at Debug. Secrets never reach the log:
// URLs and headers pass through redactURL / redactHeaders, bodies are never
// logged.
type loggingTransport struct {
	inner http.RoundTripper
	log   *slog.Logger
	now   func() time.Time
}

func newLoggingTransport(inner http.RoundTripper, log *slog.Logger) *loggingTransport {
	return &loggingTransport{inner: inner, log: log, now: time.Now}
}

func (t *loggingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	level := slog.LevelInfo
	if req.Header.Get("Range") != "" {
		level = slog.LevelDebug
	}
	debug := t.log.Enabled(ctx, slog.LevelDebug)
	kind := requestKind(req)
	if debug {
		t.log.LogAttrs(ctx, slog.LevelDebug, "registry request headers",
			slog.String("method", req.Method), slog.String("url", redactURL(req.URL)),
			slog.Any("headers", redactHeaders(req.Header)))
	}

	start := t.now()
	resp, err := t.inner.RoundTrip(req)
	attrs := []slog.Attr{
		slog.String("kind", kind),
		slog.String("method", req.Method),
		slog.String("url", redactURL(req.URL)),
	}
	if kind == "manifest" {
		attrs = append(attrs, slog.String("accept", req.Header.Get("Accept")))
	}
	if r := req.Header.Get("Range"); r != "" {
		attrs = append(attrs, slog.String("range", r))
	}
	attrs = append(attrs, slog.Duration("elapsed", t.now().Sub(start)))
	if err != nil {
		attrs = append(attrs, slog.String("error", redactErrorText(err.Error())))
		t.log.LogAttrs(ctx, level, "registry request failed", attrs...)
		return resp, err
	}
	attrs = append(attrs, slog.Int("status", resp.StatusCode))
	if resp.StatusCode == http.StatusUnauthorized {
		attrs = append(attrs, challengeAttrs(resp.Header.Values("WWW-Authenticate"))...)
	}
	if loc := resp.Header.Get("Location"); loc != "" && resp.StatusCode >= 300 && resp.StatusCode < 400 {
		attrs = append(attrs, slog.String("location", redactURLString(loc)))
	}
	if cr := resp.Header.Get("Content-Range"); cr != "" {
		attrs = append(attrs, slog.String("content_range", cr))
	}
	t.log.LogAttrs(ctx, level, "registry request", attrs...)
	if debug {
		t.log.LogAttrs(ctx, slog.LevelDebug, "registry response headers",
			slog.String("url", redactURL(req.URL)), slog.Int("status", resp.StatusCode),
			slog.Any("headers", redactHeaders(resp.Header)))
	}
	return resp, nil
}

// requestKind names a request for the log from its URL alone.
func requestKind(req *http.Request) string {
	p := req.URL.Path
	q := req.URL.Query()
	switch {
	case strings.Contains(p, "/manifests/"):
		return "manifest"
	case strings.Contains(p, "/blobs/"):
		return "blob"
	case p == "/v2/" || p == "/v2":
		return "ping"
	case q.Has("scope") || q.Has("service") || req.Method == http.MethodPost:
		return "token"
	default:
		return "other" // e.g. blob storage a registry redirected to
	}
}

// challengeAttrs describes a 401's challenge with the parameters that say
// where and for what to authenticate; none of them is a secret, and any
// others are left out.
func challengeAttrs(values []string) []slog.Attr {
	cs := parseChallenges(values)
	if len(cs) == 0 {
		return []slog.Attr{slog.String("challenge", "none")}
	}
	c := cs[0]
	attrs := []slog.Attr{slog.String("challenge", c.Scheme)}
	for _, k := range []string{"realm", "service", "scope", "error"} {
		if v, ok := c.Params[k]; ok {
			if k == "realm" {
				v = redactURLString(v)
			}
			attrs = append(attrs, slog.String(k, v))
		}
	}
	return attrs
}

// redactErrorText redacts any URL embedded in an error message (a url.Error
// quotes the whole URL, query included).
func redactErrorText(s string) string {
	fields := strings.Fields(s)
	changed := false
	for i, f := range fields {
		trimmed := strings.Trim(f, `"':,;()`)
		if !strings.Contains(trimmed, "://") {
			continue
		}
		if u, err := url.Parse(trimmed); err == nil && u.Scheme != "" {
			fields[i] = strings.Replace(f, trimmed, redactURL(u), 1)
			changed = true
		}
	}
	if !changed {
		return s
	}
	return strings.Join(fields, " ")
}
