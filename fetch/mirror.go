package fetch

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	digest "github.com/opencontainers/go-digest"
)

// Mirror is another registry that serves the content of the one a
// Repository is for: a mirror or a pull-through cache (containers-
// registries.conf(5) [[registry.mirror]], or --registry-mirror).
type Mirror struct {
	Host       string // host[:port]
	Repository string // the repository's path there; "": the same path
	PlainHTTP  bool   // speak http:// to it
	Insecure   bool   // skip TLS certificate verification
	// Tags: resolve tags through it (pull-from-mirror "all" or
	// "tag-only"). Digests: fetch manifests by digest and blobs from it.
	Tags, Digests bool
}

func (m Mirror) String() string {
	if m.Repository != "" {
		return m.Host + "/" + m.Repository
	}
	return m.Host
}

// connect makes a repository client; with AllowPlainHTTP, one that
// cannot be reached over https is tried over http.
func connect(ctx context.Context, repo name.Repository, opts Options) (*repository, error) {
	if opts.AllowPlainHTTP && !opts.PlainHTTP && !speaksHTTPS(ctx, repo.RegistryStr(), opts) {
		opts.PlainHTTP = true
	}
	return newRepository(ctx, repo, opts)
}

// speaksHTTPS reports whether host answers https at all (any status; TLS
// verified unless opts.Insecure).
func speaksHTTPS(ctx context.Context, host string, opts Options) bool {
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	rt := opts.Transport
	if rt == nil {
		rt = NewBaseTransport(opts.Insecure)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+host+"/v2/", nil)
	if err != nil {
		return false
	}
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return false
	}
	drainAndClose(resp.Body)
	return true
}

// mirrorRetry bounds the retries at a mirror: a mirror that fails falls
// back to the next source soon, rather than after the registry's minute.
var mirrorRetry = RetryPolicy{MaxAttempts: 2, MaxElapsed: 5 * time.Second, BaseDelay: 100 * time.Millisecond, MaxDelay: time.Second}

// mirror is one Mirror of a repository, connected on first use.
type mirror struct {
	cfg  Mirror
	opts Options
	repo name.Repository
	log  *slog.Logger

	once  sync.Once
	r     *repository
	probe *repository // the same mirror with probeTransport
	err   error

	// fresh is set when the image's config blob was not cached at the
	// mirror (it answered a range request with 200): the image is new to
	// this pull-through cache, so its layers are cold too (see sources).
	fresh atomic.Bool
}

func newMirrors(origin name.Repository, opts Options) []*mirror {
	var out []*mirror
	for _, m := range opts.Mirrors {
		path := m.Repository
		if path == "" {
			path = origin.RepositoryStr()
		}
		nameOpts := []name.Option{name.StrictValidation}
		if m.PlainHTTP {
			nameOpts = append(nameOpts, name.Insecure)
		}
		repo, err := name.NewRepository(m.Host+"/"+path, nameOpts...)
		if err != nil {
			opts.Logger.Warn("ignoring a mirror whose name is invalid", "mirror", m.String(), "err", err)
			continue
		}
		mo := opts
		mo.Mirrors, mo.ManifestCacheDir = nil, ""
		mo.PlainHTTP, mo.Insecure, mo.AllowPlainHTTP = m.PlainHTTP, m.Insecure, m.Insecure
		mo.Retry = mirrorRetry
		if m.Insecure != opts.Insecure {
			mo.Transport = nil // its own TLS settings
		}
		out = append(out, &mirror{cfg: m, opts: mo, repo: repo, log: opts.Logger})
	}
	return out
}

// client connects to the mirror once; a mirror that cannot be reached is
// left alone for the life of the Repository.
func (m *mirror) client(ctx context.Context) (*repository, error) {
	r, _, err := m.clients(ctx)
	return r, err
}

// clients are the mirror's client and its probe client (see probeTransport).
func (m *mirror) clients(ctx context.Context) (*repository, *repository, error) {
	m.once.Do(func() {
		ctx := context.WithoutCancel(ctx)
		m.r, m.err = connect(ctx, m.repo, m.opts)
		if m.err != nil {
			m.log.Warn("mirror unreachable; using the next source", "mirror", m.cfg.String(), "err", m.err)
			return
		}
		po := m.opts
		po.PlainHTTP = m.r.scheme == "http"
		po.AllowPlainHTTP = false
		po.Transport = probeTransport(po.Insecure, po.Proxy)
		if m.probe, m.err = newRepository(ctx, m.repo, po); m.err != nil {
			m.log.Warn("mirror unreachable; using the next source", "mirror", m.cfg.String(), "err", m.err)
		}
	})
	return m.r, m.probe, m.err
}

// manifestFromMirrors asks the mirrors eligible for ref, in order.
func (r *repository) manifestFromMirrors(ctx context.Context, ref string, byDigest bool, accept []string) (*ManifestResponse, bool) {
	for _, m := range r.mirrors {
		if byDigest && !m.cfg.Digests || !byDigest && !m.cfg.Tags {
			continue
		}
		mr, err := m.client(ctx)
		if err != nil {
			continue
		}
		resp, err := mr.manifestDirect(ctx, ref, accept)
		if err == nil {
			r.log.LogAttrs(ctx, slog.LevelInfo, "manifest from mirror", slog.String("mirror", m.cfg.String()), slog.String("reference", ref))
			return resp, true
		}
		if ctx.Err() != nil {
			return nil, false
		}
		r.log.LogAttrs(ctx, slog.LevelInfo, "mirror failed; trying the next source", slog.String("mirror", m.cfg.String()),
			slog.String("reference", ref), slog.String("error", redactErrorText(err.Error())))
	}
	return nil, false
}

// errWarming: a mirror answered a range request with the whole blob, as a
// pull-through cache does for a blob it has not cached yet (it is fetching
// it from upstream now).
var errWarming = errors.New("mirror is still fetching the blob (it ignored Range)")

// Pull-through caches (docker-registry 2.8 in proxy mode) answer any
// request for a blob they do not hold yet (a GET with or without Range,
// even a HEAD) with 200 and the whole blob, streamed from upstream, while
// they store it in the background; and every such request until the blob
// is stored costs upstream another copy (a HEAD: a whole one). So a cold
// blob is never streamed through a mirror, and asked about as seldom as
// can be:
//
//   - The first request for a blob at a mirror is a 1-byte range request
//     on a connection with a tiny receive buffer: 206 means the mirror
//     holds the blob; 200 means it has just started caching it, and the
//     answer is cut at once (the tiny buffer keeps what upstream sent for
//     it to a few hundred KiB).
//   - Cold, the mirror is left alone for a while (coldWait: the blob at
//     100 MB/s, at least 1 s, doubling up to 10 s): reads go to the next
//     source meanwhile (only the spans read), and a whole-blob stream (an
//     index build) waits, then asks again the same way, up to
//     warmWait(size), before it streams from the next source.
var (
	coldWaitMin   = time.Second
	coldWaitMax   = 10 * time.Second
	coldWaitSpeed = int64(100e6) // bytes per second a mirror is assumed to cache at
)

// warmWait bounds how long a stream waits for a mirror to cache a blob:
// 10 s plus the blob at 20 MB/s.
func warmWait(size int64) time.Duration {
	return 10*time.Second + time.Duration(size/20e6)*time.Second
}

// coldWait is the first pause after a mirror was found cold.
func coldWait(size int64) time.Duration {
	return min(max(coldWaitMin, time.Duration(size/coldWaitSpeed)*time.Second), coldWaitMax)
}

// Mirror states of one blob.
const (
	mirrorUnknown = iota
	mirrorCold    // caching it: leave alone until warmUntil
	mirrorWarm    // holds it
	mirrorDown    // failed: skipped from now on
)

// source is one place a blob can be read from: a mirror's or the registry's.
type source struct {
	m     *mirror // nil for the registry
	b     *blob   // nil until connected
	probe *blob   // the same blob through the mirror's probe client

	state     int
	warmUntil time.Time
	wait      time.Duration
}

// sources reads a blob from its mirrors, then from the registry.
type sources struct {
	origin *blob
	mu     sync.Mutex
	list   []*source // mirrors in order, then the registry
}

func (r *repository) newSources(origin *blob) *sources {
	s := &sources{origin: origin}
	for _, m := range r.mirrors {
		if m.cfg.Digests {
			s.list = append(s.list, &source{m: m})
		}
	}
	s.list = append(s.list, &source{b: origin, state: mirrorWarm})
	return s
}

// connectSource connects src (a mirror) if needed; false when it is down.
func (s *sources) connectSource(ctx context.Context, src *source) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if src.state == mirrorDown {
		return false
	}
	if src.b == nil {
		mr, pr, err := src.m.clients(ctx)
		if err != nil {
			src.state = mirrorDown
			return false
		}
		src.b = &blob{r: mr, dgst: s.origin.dgst, size: s.origin.size, mirror: true}
		src.probe = &blob{r: pr, dgst: s.origin.dgst, size: s.origin.size, mirror: true}
	}
	return true
}

func (s *sources) setState(ctx context.Context, src *source, state int, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	src.state = state
	switch state {
	case mirrorDown:
		s.origin.r.log.LogAttrs(ctx, slog.LevelWarn, "mirror failed for this blob; using the next source",
			slog.String("mirror", src.m.cfg.String()), slog.String("digest", s.origin.dgst.String()),
			slog.String("error", redactErrorText(err.Error())))
	case mirrorCold:
		if src.wait == 0 {
			src.wait = coldWait(s.origin.size)
			s.origin.r.log.LogAttrs(ctx, slog.LevelInfo, "mirror is caching the blob; reading it elsewhere meanwhile",
				slog.String("mirror", src.m.cfg.String()), slog.String("digest", s.origin.dgst.String()))
		} else {
			src.wait = min(2*src.wait, coldWaitMax)
		}
		src.warmUntil = time.Now().Add(src.wait)
	}
}

// ready reports whether src may be asked now (warm, or worth probing),
// probing it when its state is unknown or its cold pause is over.
func (s *sources) ready(ctx context.Context, src *source) bool {
	if !s.connectSource(ctx, src) {
		return false
	}
	s.mu.Lock()
	state, until := src.state, src.warmUntil
	s.mu.Unlock()
	switch {
	case state == mirrorWarm:
		return true
	case state == mirrorDown || state == mirrorCold && time.Now().Before(until):
		return false
	case state == mirrorUnknown && src.m.fresh.Load():
		// New to a pull-through cache: start its caching without waiting
		// for an answer (which would stream the blob), and come back later.
		src.probe.trigger(ctx)
		s.setState(ctx, src, mirrorCold, nil)
		return false
	}
	warm, err := src.probe.probeCached(ctx)
	switch {
	case err != nil && ctx.Err() == nil:
		s.setState(ctx, src, mirrorDown, err)
	case err != nil:
	case warm:
		s.setState(ctx, src, mirrorWarm, nil)
	default:
		s.setState(ctx, src, mirrorCold, nil)
	}
	return warm && err == nil
}

func (s *sources) readAt(ctx context.Context, p []byte, off int64) (int, error) {
	for _, src := range s.list {
		if src.m == nil {
			return src.b.readAt(ctx, p, off)
		}
		if !s.ready(ctx, src) {
			continue
		}
		n, err := src.b.readAt(ctx, p, off)
		switch {
		case err == nil || errors.Is(err, io.EOF) || ctx.Err() != nil:
			return n, err
		case errors.Is(err, errWarming): // evicted meanwhile
			s.setState(ctx, src, mirrorCold, nil)
		default:
			s.setState(ctx, src, mirrorDown, err)
		}
	}
	return 0, errors.New("no source") // unreachable: the registry is last
}

// open streams the blob from the first mirror that holds it, waiting for
// a cold one to cache it (up to warmWait), else from the registry.
func (s *sources) open(ctx context.Context) (io.ReadCloser, error) {
	for _, src := range s.list {
		if src.m == nil {
			return src.b.open(ctx)
		}
		deadline := time.Now().Add(warmWait(s.origin.size))
		for !s.ready(ctx, src) {
			s.mu.Lock()
			state, until := src.state, src.warmUntil
			s.mu.Unlock()
			if state != mirrorCold || until.After(deadline) {
				break
			}
			if err := sleepContext(ctx, time.Until(until)); err != nil {
				return nil, err
			}
		}
		s.mu.Lock()
		warm := src.state == mirrorWarm
		s.mu.Unlock()
		if !warm {
			continue
		}
		rc, err := src.b.open(ctx)
		if err == nil {
			return rc, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		s.setState(ctx, src, mirrorDown, err)
	}
	return nil, errors.New("no source")
}

// probeCached asks for the blob's first byte: true on 206 (the mirror
// holds the blob), false on 200 (a pull-through cache that has just
// started caching it; the answer is cut at once).
func (b *blob) probeCached(ctx context.Context) (bool, error) {
	resp, err := b.get(ctx, "bytes=0-0")
	if err != nil {
		return false, err
	}
	switch resp.StatusCode {
	case http.StatusPartialContent:
		drainAndClose(resp.Body)
		return true, nil
	case http.StatusOK:
		resp.Body.Close()
		return false, nil
	default:
		defer resp.Body.Close()
		return false, responseError(resp, "")
	}
}

// trigger sends a request for the blob's first byte and drops the
// connection as soon as it is written: a cold pull-through cache starts
// caching the blob, and its answer (the whole blob) finds nobody to send
// to, so it stops at once.
func (b *blob) trigger(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) { cancel() }})
	if resp, err := b.get(ctx, "bytes=0-0"); err == nil {
		resp.Body.Close()
	}
}

// fetchSmallBlob GETs a whole small blob from a mirror with an open range
// request, and notes whether the mirror held it (206) or fetched it now
// from upstream (200: the image is new to it; see mirror.fresh).
func (m *mirror) fetchSmallBlob(ctx context.Context, dgst digest.Digest, maxSize int64) ([]byte, error) {
	r, err := m.client(ctx)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.url("blobs", dgst.String()), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Range", "bytes=0-")
	resp, err := r.do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		m.fresh.Store(true)
	case http.StatusPartialContent:
		if cr, err := parseContentRange(resp.Header.Get("Content-Range")); err != nil || cr.start != 0 || cr.total < 0 || cr.end != cr.total-1 {
			return nil, errors.New("mirror sent part of a small blob")
		}
	default:
		return nil, responseError(resp, "")
	}
	data, err := readLimited(resp, maxSize)
	if err != nil {
		return nil, err
	}
	if got := dgst.Algorithm().FromBytes(data); got != dgst {
		return nil, ErrDigest
	}
	return data, nil
}

func (s *sources) stats() BlobStats {
	var out BlobStats
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, src := range s.list {
		for _, b := range []*blob{src.b, src.probe} {
			if b != nil {
				st := b.stats()
				out.Requests += st.Requests
				out.Bytes += st.Bytes
			}
		}
	}
	return out
}

// digestRef reports whether a manifest reference is a digest.
func digestRef(ref string) bool {
	_, err := digest.Parse(ref)
	return err == nil
}

// probeTransport is a base transport whose connections have a tiny
// receive buffer: cutting a whole-blob answer on one costs the sender (and
// a pull-through cache's upstream) little.
func probeTransport(insecure bool, proxy func(*http.Request) (*url.URL, error)) *http.Transport {
	t := NewBaseTransport(insecure)
	if proxy != nil {
		t.Proxy = proxy
	}
	d := &net.Dialer{Timeout: connectTimeout, Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, probeRcvBuf)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	t.DialContext = d.DialContext
	t.DisableKeepAlives = true
	t.ReadBufferSize = 4 << 10
	return t
}

// probeRcvBuf is the receive buffer of probe connections (Linux doubles it).
const probeRcvBuf = 4 << 10
