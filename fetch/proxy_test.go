package fetch

import (
	"context"
	"net/http"
	"net/url"
	"sync/atomic"
	"testing"
)

// TestOptionsProxy: Options.Proxy chooses the proxy of every request
// (http.ProxyFromEnvironment when nil, which never proxies loopback).
func TestOptionsProxy(t *testing.T) {
	reg := newFakeRegistry(t)
	d := reg.addBlob([]byte("config"))
	opts, _ := testOptions(t)
	var asked atomic.Int64
	opts.Proxy = func(req *http.Request) (*url.URL, error) {
		asked.Add(1)
		return nil, nil // direct, but the choice was ours
	}
	r := openRepo(t, reg, opts)
	if _, err := r.FetchBlob(context.Background(), d, 0); err != nil {
		t.Fatal(err)
	}
	if asked.Load() < 2 { // the ping and the blob
		t.Fatalf("Proxy consulted %d times", asked.Load())
	}
}
