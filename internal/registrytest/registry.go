// Package registrytest is an in-memory container registry for tests that
// need a registry's HTTP answers but none of its faults: the distribution
// API's ping, manifests by tag or digest, and blobs with HEAD and Range,
// served over loopback by httptest. Integration tests use the real
// docker-registry instead; fetch's tests have their own fault-injecting
// fake.
package registrytest

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Registry serves whatever was put in it, for any repository name.
type Registry struct {
	srv *httptest.Server

	mu        sync.Mutex
	manifests map[string]manifest // by tag or digest
	blobs     map[digest.Digest][]byte
	requests  map[string]int // by "METHOD kind", kind being manifests or blobs
	stall     *stall
}

// stall holds requests that match until their client gives up.
type stall struct {
	match          func(*http.Request) bool
	started, ended chan string // request URIs
	release        chan struct{}
}

type manifest struct {
	mediaType string
	body      []byte
}

// New starts a registry on 127.0.0.1; it stops when the test ends.
func New(t testing.TB) *Registry {
	r := &Registry{manifests: map[string]manifest{}, blobs: map[digest.Digest][]byte{}, requests: map[string]int{}}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(func() {
		r.Unstall()
		r.srv.Close()
	})
	return r
}

// Stall makes every later request for which match is true hang, sending
// nothing, until its client gives up (cancels it, closes the connection)
// or the test ends. Each stalled request's URI is sent on started when it
// arrives and on ended when its client gave up. The channels hold 64
// events; more are dropped.
func (r *Registry) Stall(match func(*http.Request) bool) (started, ended <-chan string) {
	st := &stall{match: match, started: make(chan string, 64), ended: make(chan string, 64), release: make(chan struct{})}
	r.mu.Lock()
	r.stall = st
	r.mu.Unlock()
	return st.started, st.ended
}

// Unstall lets the requests Stall holds go (they are answered nothing: the
// client sees them break) and stalls no more.
func (r *Registry) Unstall() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stall != nil {
		close(r.stall.release)
		r.stall = nil
	}
}

// hold stalls req if a Stall matches it, and reports whether it did.
func (r *Registry) hold(req *http.Request) bool {
	r.mu.Lock()
	st := r.stall
	r.mu.Unlock()
	if st == nil || !st.match(req) {
		return false
	}
	notify(st.started, req.RequestURI)
	select {
	case <-req.Context().Done():
		notify(st.ended, req.RequestURI)
	case <-st.release:
	}
	return true
}

func notify(ch chan string, uri string) {
	select {
	case ch <- uri:
	default:
	}
}

// Host is the registry's host:port, for references (use plain HTTP).
func (r *Registry) Host() string { return strings.TrimPrefix(r.srv.URL, "http://") }

// PutManifest stores a manifest under its digest and the given tags and
// returns its descriptor.
func (r *Registry) PutManifest(mediaType string, body []byte, tags ...string) ocispec.Descriptor {
	d := digest.FromBytes(body)
	r.mu.Lock()
	defer r.mu.Unlock()
	m := manifest{mediaType: mediaType, body: body}
	r.manifests[d.String()] = m
	for _, t := range tags {
		r.manifests[t] = m
	}
	return ocispec.Descriptor{MediaType: mediaType, Digest: d, Size: int64(len(body))}
}

// PutBlob stores a blob and returns its digest.
func (r *Registry) PutBlob(data []byte) digest.Digest {
	d := digest.FromBytes(data)
	r.mu.Lock()
	r.blobs[d] = data
	r.mu.Unlock()
	return d
}

// PutBlobAs stores data under digest d whatever data hashes to: a lying
// registry, for tests of what a client trusts.
func (r *Registry) PutBlobAs(d digest.Digest, data []byte) {
	r.mu.Lock()
	r.blobs[d] = data
	r.mu.Unlock()
}

// Requests counts the requests seen of one kind, e.g. "GET manifests".
func (r *Registry) Requests(kind string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.requests[kind]
}

func (r *Registry) serve(w http.ResponseWriter, req *http.Request) {
	if req.URL.Path == "/v2/" || req.URL.Path == "/v2" {
		w.WriteHeader(http.StatusOK)
		return
	}
	rest, ok := strings.CutPrefix(req.URL.Path, "/v2/")
	if !ok {
		http.NotFound(w, req)
		return
	}
	i := strings.LastIndex(rest, "/")
	j := strings.LastIndex(rest[:max(i, 0)], "/")
	if i < 0 || j < 0 {
		http.NotFound(w, req)
		return
	}
	kind, ref := rest[j+1:i], rest[i+1:]
	if r.hold(req) {
		return
	}
	r.mu.Lock()
	r.requests[req.Method+" "+kind]++
	m, haveManifest := r.manifests[ref]
	blob, haveBlob := r.blobs[digest.Digest(ref)]
	r.mu.Unlock()
	switch {
	case kind == "manifests" && haveManifest:
		w.Header().Set("Content-Type", m.mediaType)
		w.Header().Set("Docker-Content-Digest", digest.FromBytes(m.body).String())
		w.Header().Set("Content-Length", strconv.Itoa(len(m.body)))
		if req.Method != http.MethodHead {
			w.Write(m.body)
		}
	case kind == "blobs" && haveBlob:
		serveBlob(w, req, blob)
	default:
		code := "MANIFEST_UNKNOWN"
		if kind == "blobs" {
			code = "BLOB_UNKNOWN"
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprintf(w, `{"errors":[{"code":%q,"message":"unknown %s %s"}]}`, code, kind, ref)
	}
}

// serveBlob answers a blob GET or HEAD, honouring a single "bytes=a-b"
// range.
func serveBlob(w http.ResponseWriter, req *http.Request, data []byte) {
	start, end := 0, len(data)-1
	status := http.StatusOK
	if rng := req.Header.Get("Range"); rng != "" {
		a, b, ok := strings.Cut(strings.TrimPrefix(rng, "bytes="), "-")
		s, err1 := strconv.Atoi(a)
		e, err2 := strconv.Atoi(b)
		if !ok || err1 != nil || err2 != nil || s > e || s >= len(data) {
			w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", len(data)))
			w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
			return
		}
		start, end, status = s, min(e, len(data)-1), http.StatusPartialContent
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, end, len(data)))
	}
	w.Header().Set("Content-Length", strconv.Itoa(end-start+1))
	w.WriteHeader(status)
	if req.Method != http.MethodHead {
		w.Write(data[start : end+1])
	}
}
