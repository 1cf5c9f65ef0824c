// Command countproxy is a counting reverse proxy for a plain-HTTP OCI
// registry, used by scripts/stargz-compare to see what each mounter fetches.
//
//	countproxy -listen 127.0.0.1:0 -target 127.0.0.1:5000 [-addr-file F] [-out F] [-log F]
//
// It forwards every request to the target and counts requests and response
// body bytes per kind:
//
//	manifest       GET  /v2/<name>/manifests/<ref>
//	manifest-head  HEAD /v2/<name>/manifests/<ref>
//	blob-full      GET  /v2/<name>/blobs/<digest> without a Range header
//	blob-range     GET  /v2/<name>/blobs/<digest> with a Range header (a
//	               multi-range request counts once; "ranges" counts its ranges)
//	blob-head      HEAD /v2/<name>/blobs/<digest>
//	other          anything else (the /v2/ ping, tags, uploads, ...)
//
// The totals are served, without being forwarded, at GET /-/stats (text)
// and /-/stats.json; /-/reset sets them to zero. SIGUSR1 prints them (and
// writes -out), SIGUSR2 resets them, SIGINT and SIGTERM write -out and exit.
//
// It listens on loopback only: it is a measuring tool with no access
// control, and anything it can reach it would serve to whoever connects.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "countproxy:", err)
		os.Exit(1)
	}
}

func run() error {
	listen := flag.String("listen", "127.0.0.1:0", "loopback address to listen on")
	target := flag.String("target", "", "registry host:port to forward to, over plain HTTP (required)")
	out := flag.String("out", "", "write the totals here on exit and on SIGUSR1")
	addrFile := flag.String("addr-file", "", "write the address actually listened on here, once listening")
	logFile := flag.String("log", "", "append one line per request here")
	flag.Parse()
	if *target == "" || flag.NArg() != 0 {
		flag.Usage()
		os.Exit(2)
	}

	var logW io.Writer
	if *logFile != "" {
		f, err := os.OpenFile(*logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("request log: %w", err)
		}
		defer f.Close()
		logW = f
	}
	st := newStats()
	h := newHandler(&url.URL{Scheme: "http", Host: *target}, st, logW)

	ln, err := listenLoopback(*listen)
	if err != nil {
		return err
	}
	addr := ln.Addr().String()
	if *addrFile != "" {
		// Write then rename, so a script polling for the file never reads
		// half an address.
		if err := os.WriteFile(*addrFile+".tmp", []byte(addr+"\n"), 0o644); err != nil {
			return fmt.Errorf("address file: %w", err)
		}
		if err := os.Rename(*addrFile+".tmp", *addrFile); err != nil {
			return fmt.Errorf("address file: %w", err)
		}
	}
	fmt.Fprintf(os.Stderr, "countproxy: %s -> %s\n", addr, *target)

	writeOut := func() {
		if *out == "" {
			return
		}
		if err := os.WriteFile(*out, []byte(st.text()), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "countproxy: totals:", err)
		}
	}
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		for s := range sig {
			switch s {
			case syscall.SIGUSR1:
				fmt.Print(st.text())
				writeOut()
			case syscall.SIGUSR2:
				st.reset()
			default:
				writeOut()
				os.Exit(0)
			}
		}
	}()

	srv := &http.Server{Handler: h, ReadHeaderTimeout: 30 * time.Second}
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve %s: %w", addr, err)
	}
	return nil
}

// listenLoopback listens on addr if its host is a loopback IP or
// "localhost", and refuses anything else.
func listenLoopback(addr string) (net.Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("listen address %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("refusing to listen on %q: not a loopback address", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	return ln, nil
}

// counter is the totals of one kind of request.
type counter struct {
	Requests int64 `json:"requests"`
	Bytes    int64 `json:"bytes"`            // response body bytes
	Ranges   int64 `json:"ranges,omitempty"` // byte ranges asked for
	Errors   int64 `json:"errors,omitempty"` // status >= 400 or transport error
}

type stats struct {
	mu    sync.Mutex
	kinds map[string]*counter
}

func newStats() *stats { return &stats{kinds: map[string]*counter{}} }

func (s *stats) add(kind string, bytes, ranges int64, failed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.kinds[kind]
	if c == nil {
		c = &counter{}
		s.kinds[kind] = c
	}
	c.Requests++
	c.Bytes += bytes
	c.Ranges += ranges
	if failed {
		c.Errors++
	}
}

func (s *stats) reset() {
	s.mu.Lock()
	s.kinds = map[string]*counter{}
	s.mu.Unlock()
}

// snapshot copies the counters, plus their sum under "total".
func (s *stats) snapshot() map[string]counter {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]counter{}
	var tot counter
	for k, c := range s.kinds {
		out[k] = *c
		tot.Requests += c.Requests
		tot.Bytes += c.Bytes
		tot.Ranges += c.Ranges
		tot.Errors += c.Errors
	}
	out["total"] = tot
	return out
}

func (s *stats) text() string {
	snap := s.snapshot()
	keys := make([]string, 0, len(snap))
	for k := range snap {
		if k != "total" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	keys = append(keys, "total")
	var b strings.Builder
	fmt.Fprintf(&b, "%-14s %9s %14s %8s %6s\n", "kind", "requests", "bytes", "ranges", "errors")
	for _, k := range keys {
		c := snap[k]
		fmt.Fprintf(&b, "%-14s %9d %14d %8d %6d\n", k, c.Requests, c.Bytes, c.Ranges, c.Errors)
	}
	return b.String()
}

// kindOf classifies a registry request, and counts the ranges of a blob GET.
func kindOf(r *http.Request) (kind string, ranges int64) {
	p := r.URL.Path
	switch {
	case strings.Contains(p, "/manifests/"):
		if r.Method == http.MethodHead {
			return "manifest-head", 0
		}
		return "manifest", 0
	case strings.Contains(p, "/blobs/") && !strings.Contains(p, "/blobs/uploads"):
		if r.Method == http.MethodHead {
			return "blob-head", 0
		}
		if rg := r.Header.Get("Range"); rg != "" {
			return "blob-range", int64(strings.Count(rg, ",") + 1)
		}
		return "blob-full", 0
	}
	return "other", 0
}

// newHandler serves the /-/ endpoints and forwards everything else to
// target, counting into st.
func newHandler(target *url.URL, st *stats, logW io.Writer) http.Handler {
	tr := &countingTransport{
		rt: &http.Transport{
			Proxy:               nil, // never through an environment proxy
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true, // count the bytes the registry sends
		},
		st:   st,
		logW: logW,
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			// Keep the client's Host, so that redirects and Location
			// headers the registry builds from it point back at us.
			pr.Out.Host = pr.In.Host
		},
		Transport:     tr,
		FlushInterval: -1,
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/-/stats", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, st.text())
	})
	mux.HandleFunc("/-/stats.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(st.snapshot())
	})
	mux.HandleFunc("/-/reset", func(w http.ResponseWriter, _ *http.Request) {
		st.reset()
		_, _ = io.WriteString(w, "reset\n")
	})
	mux.Handle("/", rp)
	return mux
}

// countingTransport counts each response once its body is closed, that is
// once the proxy has copied it all (or given up), so the bytes are the ones
// actually sent on.
type countingTransport struct {
	rt    http.RoundTripper
	st    *stats
	logMu sync.Mutex
	logW  io.Writer
}

func (t *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	kind, ranges := kindOf(r)
	start := time.Now()
	resp, err := t.rt.RoundTrip(r)
	if err != nil {
		t.st.add(kind, 0, ranges, true)
		t.log(start, r, kind, 0, 0, err)
		return nil, err
	}
	failed := resp.StatusCode >= 400
	status := resp.StatusCode
	resp.Body = &countingBody{ReadCloser: resp.Body, done: func(n int64) {
		t.st.add(kind, n, ranges, failed)
		t.log(start, r, kind, status, n, nil)
	}}
	return resp, nil
}

// log writes: time kind method path range status bytes latency error.
func (t *countingTransport) log(start time.Time, r *http.Request, kind string, status int, n int64, err error) {
	if t.logW == nil {
		return
	}
	rg := r.Header.Get("Range")
	if rg == "" {
		rg = "-"
	}
	t.logMu.Lock()
	defer t.logMu.Unlock()
	fmt.Fprintf(t.logW, "%s %s %s %s %q %d %d %dms %v\n", start.Format("15:04:05.000"),
		kind, r.Method, r.URL.Path, rg, status, n, time.Since(start).Milliseconds(), err)
}

type countingBody struct {
	io.ReadCloser
	n    int64
	once sync.Once
	done func(n int64)
}

func (c *countingBody) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n += int64(n)
	return n, err
}

func (c *countingBody) Close() error {
	err := c.ReadCloser.Close()
	c.once.Do(func() { c.done(c.n) })
	return err
}
