package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestCounts sends one request of each kind through the proxy to a fake
// registry, and checks the per-kind requests, bytes and ranges.
func TestCounts(t *testing.T) {
	// httptest servers listen on 127.0.0.1.
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/v2/":
			_, _ = io.WriteString(w, "{}")
		case strings.Contains(r.URL.Path, "/manifests/"):
			w.Header().Set("Content-Length", "9")
			if r.Method != http.MethodHead {
				_, _ = io.WriteString(w, "manifest!")
			}
		case strings.Contains(r.URL.Path, "/blobs/"):
			body := strings.Repeat("b", 100)
			if r.Header.Get("Range") != "" {
				w.WriteHeader(http.StatusPartialContent)
				body = body[:10]
			}
			_, _ = io.WriteString(w, body)
		default:
			http.NotFound(w, r)
		}
	}))
	defer backend.Close()
	u, err := url.Parse(backend.URL)
	if err != nil {
		t.Fatal(err)
	}
	st := newStats()
	proxy := httptest.NewServer(newHandler(u, st, nil))
	defer proxy.Close()

	do := func(method, path, rg string) {
		t.Helper()
		req, err := http.NewRequest(method, proxy.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if rg != "" {
			req.Header.Set("Range", rg)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	do("GET", "/v2/", "")
	do("GET", "/v2/r/manifests/t", "")
	do("HEAD", "/v2/r/manifests/t", "")
	do("HEAD", "/v2/r/blobs/sha256:aa", "")
	do("GET", "/v2/r/blobs/sha256:aa", "")
	do("GET", "/v2/r/blobs/sha256:aa", "bytes=0-4,10-14")
	do("GET", "/v2/r/blobs/sha256:aa", "bytes=20-29")
	do("GET", "/v2/nope", "")

	want := map[string]counter{
		"other":         {Requests: 2, Bytes: 2 + int64(len("404 page not found\n")), Errors: 1},
		"manifest":      {Requests: 1, Bytes: 9},
		"manifest-head": {Requests: 1},
		"blob-head":     {Requests: 1},
		"blob-full":     {Requests: 1, Bytes: 100},
		"blob-range":    {Requests: 2, Bytes: 20, Ranges: 3},
		"total":         {Requests: 8, Bytes: 2 + 19 + 9 + 100 + 20, Ranges: 3, Errors: 1},
	}
	// A response is counted when the proxy closes the registry's body,
	// which can be just after the client has read the last byte.
	var got map[string]counter
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if got = fetchStats(t, proxy.URL); got["total"].Requests == want["total"].Requests {
			break
		}
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: got %+v, want %+v", k, got[k], w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("kinds: got %v", got)
	}

	// The /-/ endpoints are answered by the proxy itself, and not counted.
	resp, err := http.Get(proxy.URL + "/-/reset")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := fetchStats(t, proxy.URL); got["total"] != (counter{}) || len(got) != 1 {
		t.Errorf("after reset: %+v", got)
	}
}

func fetchStats(t *testing.T, base string) map[string]counter {
	t.Helper()
	resp, err := http.Get(base + "/-/stats.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]counter
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestListenLoopbackOnly(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "192.0.2.1:0", "[::]:0", "example.com:0", "nonsense"} {
		if ln, err := listenLoopback(addr); err == nil {
			ln.Close()
			t.Errorf("%s: listened, want refusal", addr)
		}
	}
	ln, err := listenLoopback("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
}
