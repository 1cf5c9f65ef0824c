package integration

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// CountingProxy is an HTTP reverse proxy in front of a registry that
// counts what passes: requests by method and kind (manifest, blob, other)
// and the body bytes it received from upstream, i.e. the upstream's
// egress. Loopback only. Use it as the registry part of references, or as
// a pull-through cache's upstream.
type CountingProxy struct {
	Host string // 127.0.0.1:PORT
	URL  string // http://127.0.0.1:PORT

	srv *httptest.Server
	mu  sync.Mutex
	n   map[string]int // "GET manifest", "HEAD blob", ...
	// bytes of bodies received from upstream, by kind
	manifestBytes, blobBytes, otherBytes atomic.Int64
}

// StartCountingProxy proxies to target (host:port); it stops when the
// test ends (or on Close).
func StartCountingProxy(t testing.TB, target string) *CountingProxy {
	t.Helper()
	p, err := NewCountingProxy(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// NewCountingProxy is StartCountingProxy for programs (the bench).
func NewCountingProxy(target string) (*CountingProxy, error) {
	u := &url.URL{Scheme: "http", Host: target}
	p := &CountingProxy{n: map[string]int{}}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = &countingUpstream{inner: &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 64}, p: p}
	rp.ErrorLog = nil
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p.srv = &httptest.Server{Listener: ln, Config: &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.n[r.Method+" "+requestKind(r.URL.Path)]++
		p.mu.Unlock()
		rp.ServeHTTP(w, r)
	})}}
	p.srv.Start()
	p.URL = p.srv.URL
	p.Host = strings.TrimPrefix(p.srv.URL, "http://")
	return p, nil
}

// Close stops the proxy and cuts its connections.
func (p *CountingProxy) Close() {
	p.srv.CloseClientConnections()
	p.srv.Close()
}

// requestKind classifies a registry API path.
func requestKind(path string) string {
	switch {
	case strings.Contains(path, "/manifests/"):
		return "manifest"
	case strings.Contains(path, "/blobs/"):
		return "blob"
	case strings.Contains(path, "/referrers/"):
		return "referrers"
	}
	return "other"
}

// Count is the number of requests of a method and kind ("GET",
// "manifest").
func (p *CountingProxy) Count(method, kind string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n[method+" "+kind]
}

// Requests is the number of requests of every kind.
func (p *CountingProxy) Requests() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	total := 0
	for _, v := range p.n {
		total += v
	}
	return total
}

// Bytes is the body bytes received from upstream: blob bodies, manifest
// bodies, and the total.
func (p *CountingProxy) Bytes() (blobs, manifests, total int64) {
	b, m := p.blobBytes.Load(), p.manifestBytes.Load()
	return b, m, b + m + p.otherBytes.Load()
}

// Reset zeroes the counts.
func (p *CountingProxy) Reset() {
	p.mu.Lock()
	p.n = map[string]int{}
	p.mu.Unlock()
	p.blobBytes.Store(0)
	p.manifestBytes.Store(0)
	p.otherBytes.Store(0)
}

type countingUpstream struct {
	inner http.RoundTripper
	p     *CountingProxy
}

func (c *countingUpstream) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := c.inner.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	counter := &c.p.otherBytes
	switch requestKind(r.URL.Path) {
	case "manifest":
		counter = &c.p.manifestBytes
	case "blob":
		counter = &c.p.blobBytes
	}
	resp.Body = &countedBody{ReadCloser: resp.Body, n: counter}
	return resp, nil
}

type countedBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b *countedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

// ForwardProxy is an HTTP forward proxy (absolute-form requests, plain
// HTTP, no CONNECT) on 127.0.0.1 that knows hosts no resolver does: each
// name of Hosts is sent to its address. A client that reaches a registry
// named only here went through the proxy. Requests counts what it served.
type ForwardProxy struct {
	URL   string
	Hosts map[string]string // "registry.imgfs.test:5000" -> "127.0.0.1:PORT"

	srv      *httptest.Server
	requests atomic.Int64
}

// StartForwardProxy starts one; it stops when the test ends.
func StartForwardProxy(t testing.TB, hosts map[string]string) *ForwardProxy {
	t.Helper()
	p := &ForwardProxy{Hosts: hosts}
	tr := &http.Transport{DisableCompression: true, Proxy: nil}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		target, ok := p.Hosts[r.URL.Host]
		if !r.URL.IsAbs() || !ok {
			http.Error(w, "not a proxy request for a known host", http.StatusBadGateway)
			return
		}
		p.requests.Add(1)
		out := r.Clone(r.Context())
		out.RequestURI = ""
		out.URL.Host = target
		out.Host = r.URL.Host
		out.Header.Del("Proxy-Connection")
		resp, err := tr.RoundTrip(out)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for k, vs := range resp.Header {
			w.Header()[k] = vs
		}
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
	}))
	t.Cleanup(p.srv.Close)
	p.URL = p.srv.URL
	return p
}

// Requests is how many requests it forwarded.
func (p *ForwardProxy) Requests() int64 { return p.requests.Load() }
