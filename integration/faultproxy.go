package integration

import (
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// Fault is what FaultProxy does to a faulted blob request.
type Fault int

const (
	Fault503   Fault = iota // 503 Service Unavailable
	Fault429                // 429 Too Many Requests, Retry-After: 1
	FaultReset              // part of the body, then a TCP reset
	FaultFlip               // the whole body with one byte flipped
	FaultPause              // part of the body, a 1 s pause, then the rest
	faultKinds
)

func (f Fault) String() string {
	return [...]string{"503", "429", "reset", "flip", "pause"}[f]
}

// FaultProxy is an HTTP proxy in front of a real registry that faults a
// share of the blob requests (GET of /v2/.../blobs/...), as a flaky network,
// CDN or overloaded registry does: the faults a real registry cannot be
// made to produce. Other requests pass untouched. Loopback only.
type FaultProxy struct {
	Host string // 127.0.0.1:PORT: use as the registry part of references

	srv    *httptest.Server
	proxy  *httputil.ReverseProxy
	target *url.URL
	client *http.Client

	mu     sync.Mutex
	queued []Fault // faults of the next blob requests, before the rate applies
	rate   float64
	rng    *rand.Rand
	counts map[string]int // faults done by kind, and "blob" for every blob request
}

// StartFaultProxy proxies to a registry at target (host:port), faulting a
// share rate of blob requests with faults chosen evenly, from a fixed seed.
func StartFaultProxy(t testing.TB, target string, rate float64, seed uint64) *FaultProxy {
	t.Helper()
	u := &url.URL{Scheme: "http", Host: target}
	p := &FaultProxy{rate: rate, rng: rand.New(rand.NewPCG(seed, seed^0x5eed)), counts: map[string]int{}, target: u}
	transport := &http.Transport{DisableCompression: true}
	p.proxy = httputil.NewSingleHostReverseProxy(u)
	p.proxy.Transport = transport
	p.client = &http.Client{Transport: transport, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.srv.Close)
	p.Host = strings.TrimPrefix(p.srv.URL, "http://")
	return p
}

// Counts reports the blob requests seen and the faults done, by kind.
func (p *FaultProxy) Counts() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]int{}
	for k, v := range p.counts {
		out[k] = v
	}
	return out
}

// SetRate changes the share of blob requests faulted.
func (p *FaultProxy) SetRate(rate float64) {
	p.mu.Lock()
	p.rate = rate
	p.mu.Unlock()
}

// FaultNext makes the next blob requests get these faults, in order.
func (p *FaultProxy) FaultNext(faults ...Fault) {
	p.mu.Lock()
	p.queued = append(p.queued, faults...)
	p.mu.Unlock()
}

// pick decides the fault of one blob request, if any.
func (p *FaultProxy) pick() (Fault, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.counts["blob"]++
	if len(p.queued) > 0 {
		f := p.queued[0]
		p.queued = p.queued[1:]
		p.counts[f.String()]++
		return f, true
	}
	if p.rng.Float64() >= p.rate {
		return 0, false
	}
	f := Fault(p.rng.IntN(int(faultKinds)))
	p.counts[f.String()]++
	return f, true
}

func (p *FaultProxy) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "/blobs/") {
		p.proxy.ServeHTTP(w, r)
		return
	}
	fault, ok := p.pick()
	if !ok {
		p.proxy.ServeHTTP(w, r)
		return
	}
	switch fault {
	case Fault503:
		http.Error(w, "injected fault", http.StatusServiceUnavailable)
	case Fault429:
		w.Header().Set("Retry-After", "1")
		http.Error(w, "injected fault", http.StatusTooManyRequests)
	default:
		p.serveDamaged(w, r, fault)
	}
}

// serveDamaged forwards the request itself and damages the answer.
func (p *FaultProxy) serveDamaged(w http.ResponseWriter, r *http.Request, fault Fault) {
	out, err := http.NewRequestWithContext(r.Context(), r.Method, p.target.String()+r.URL.RequestURI(), nil)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	out.Header = r.Header.Clone()
	resp, err := p.client.Do(out)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	for k, vs := range resp.Header {
		w.Header()[k] = vs
	}
	if len(body) == 0 {
		w.WriteHeader(resp.StatusCode)
		return
	}
	half := len(body) / 2
	switch fault {
	case FaultFlip:
		body[p.intN(len(body))] ^= 0x20
		w.WriteHeader(resp.StatusCode)
		w.Write(body)
	case FaultPause:
		w.WriteHeader(resp.StatusCode)
		w.Write(body[:half])
		w.(http.Flusher).Flush()
		select {
		case <-time.After(time.Second):
		case <-r.Context().Done():
			return
		}
		w.Write(body[half:])
	case FaultReset:
		w.WriteHeader(resp.StatusCode)
		w.Write(body[:half])
		w.(http.Flusher).Flush()
		conn, _, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		if tcp, ok := conn.(*net.TCPConn); ok {
			tcp.SetLinger(0) // RST, not FIN
		}
		conn.Close()
	}
}

func (p *FaultProxy) intN(n int) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rng.IntN(n)
}
