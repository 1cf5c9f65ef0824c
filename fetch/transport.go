package fetch

import (
	"crypto/tls"
	"net"
	"net/http"
	"time"
)

// NewBaseTransport is the *http.Transport under every registry client: keep-
// alives on, enough idle connections per host for parallel range reads, no
// transparent gzip (blobs are already compressed and a gzip-encoded answer
// to a Range request would be wrong), and TLS verification off only when
// insecure is asked for.
func NewBaseTransport(insecure bool) *http.Transport {
	dialer := &net.Dialer{Timeout: connectTimeout, KeepAlive: 30 * time.Second}
	t := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   connectTimeout,
		ResponseHeaderTimeout: responseHeaderTimeout,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,
		ReadBufferSize:        128 << 10,
		WriteBufferSize:       32 << 10,
	}
	if insecure {
		t.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // asked for with --insecure
	}
	return t
}

// requestEditor sets our User-Agent on every request (overriding the one the
// ggcr layer above sets) and, for --plain-http, turns https:// into http://
// for the registry host. Forcing the scheme here makes the ping that ggcr
// starts with https land on http at once, so it never depends on the
// https-then-http race ggcr runs for insecure registries.
type requestEditor struct {
	inner        http.RoundTripper
	userAgent    string
	plainHTTPFor string // registry host:port whose https URLs become http; "" for none
}

func (e *requestEditor) RoundTrip(req *http.Request) (*http.Response, error) {
	out := req.Clone(req.Context())
	out.Header.Set("User-Agent", e.userAgent)
	if e.plainHTTPFor != "" && out.URL.Scheme == "https" && sameHost(out.URL.Host, "https", e.plainHTTPFor) {
		out.URL.Scheme = "http"
	}
	return e.inner.RoundTrip(out)
}

// sameHost reports whether host (as found in a URL of the given scheme) is
// the registry host, default ports made explicit.
func sameHost(host, scheme, registry string) bool {
	return canonicalHost(host, scheme) == canonicalHost(registry, scheme)
}

func canonicalHost(host, scheme string) string {
	if h, p, err := net.SplitHostPort(host); err == nil {
		return net.JoinHostPort(h, p)
	}
	port := "443"
	if scheme == "http" {
		port = "80"
	}
	return net.JoinHostPort(host, port)
}
