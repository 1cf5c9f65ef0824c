package fetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
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

	once sync.Once
	r    *repository
	err  error
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
	m.once.Do(func() {
		m.r, m.err = connect(context.WithoutCancel(ctx), m.repo, m.opts)
		if m.err != nil {
			m.log.Warn("mirror unreachable; using the next source", "mirror", m.cfg.String(), "err", m.err)
		}
	})
	return m.r, m.err
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

// Pull-through caches (docker-registry in proxy mode) answer a Range
// request for a blob they do not hold yet with 200 and the whole blob,
// streamed from upstream while they store it; every such request while
// the first is being stored costs upstream another whole copy. So a blob
// is never streamed through a cold mirror: the first answer is cut at
// once (the mirror goes on storing the blob), reads go to the next source
// for a while (warmBackoff, doubling up to warmBackoffMax), and a whole-
// blob stream (an index build) waits for the mirror to hold the blob,
// polling with a 1-byte range request, up to warmWait(size).
var (
	warmBackoff    = 250 * time.Millisecond
	warmBackoffMax = 2 * time.Second
)

// warmWait bounds how long a stream waits for a mirror to cache a blob:
// 10 s plus the blob at 20 MB/s.
func warmWait(size int64) time.Duration {
	return 10*time.Second + time.Duration(size/20e6)*time.Second
}

// source is one place a blob can be read from: a mirror's or the registry's.
type source struct {
	m    *mirror // nil for the registry
	b    *blob   // nil until connected
	down bool    // failed: skipped from now on

	warmUntil time.Time // a cold mirror: do not ask before
	backoff   time.Duration
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
	s.list = append(s.list, &source{b: origin})
	return s
}

// blobAt connects src (a mirror) if needed; nil when it is down.
func (s *sources) blobAt(ctx context.Context, src *source) *blob {
	s.mu.Lock()
	defer s.mu.Unlock()
	if src.down {
		return nil
	}
	if src.b == nil {
		mr, err := src.m.client(ctx)
		if err != nil {
			src.down = true
			return nil
		}
		src.b = &blob{r: mr, dgst: s.origin.dgst, size: s.origin.size, mirror: true}
	}
	return src.b
}

func (s *sources) markDown(ctx context.Context, src *source, err error) {
	s.mu.Lock()
	src.down = true
	s.mu.Unlock()
	s.origin.r.log.LogAttrs(ctx, slog.LevelWarn, "mirror failed for this blob; using the next source",
		slog.String("mirror", src.m.cfg.String()), slog.String("digest", s.origin.dgst.String()),
		slog.String("error", redactErrorText(err.Error())))
}

// warming records that a mirror is caching the blob; it reports whether
// the mirror may be asked now.
func (s *sources) askable(src *source) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !src.down && time.Now().After(src.warmUntil)
}

func (s *sources) cold(src *source) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if src.backoff == 0 {
		src.backoff = warmBackoff
	} else {
		src.backoff = min(2*src.backoff, warmBackoffMax)
	}
	src.warmUntil = time.Now().Add(src.backoff)
}

func (s *sources) readAt(ctx context.Context, p []byte, off int64) (int, error) {
	for _, src := range s.list {
		if src.m == nil {
			return src.b.readAt(ctx, p, off)
		}
		if !s.askable(src) {
			continue
		}
		b := s.blobAt(ctx, src)
		if b == nil {
			continue
		}
		n, err := b.readAt(ctx, p, off)
		switch {
		case err == nil || errors.Is(err, io.EOF):
			return n, err
		case ctx.Err() != nil:
			return n, err
		case errors.Is(err, errWarming):
			s.cold(src)
		default:
			s.markDown(ctx, src, err)
		}
	}
	return 0, errors.New("no source") // unreachable: the registry is last
}

// open streams the blob from the first mirror that holds it (waiting for
// a pull-through cache to finish caching it), else from the registry.
func (s *sources) open(ctx context.Context) (io.ReadCloser, error) {
	for _, src := range s.list {
		if src.m == nil {
			return src.b.open(ctx)
		}
		b := s.blobAt(ctx, src)
		if b == nil {
			continue
		}
		err := b.waitCached(ctx)
		if err == nil {
			rc, err := b.open(ctx)
			if err == nil {
				return rc, nil
			}
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		s.markDown(ctx, src, err)
	}
	return nil, errors.New("no source")
}

// waitCached returns once the mirror answers a range request of the blob
// with 206 (it holds the blob), polling while it answers 200 (a pull-
// through cache still fetching it), up to warmWait.
func (b *blob) waitCached(ctx context.Context) error {
	deadline := time.Now().Add(warmWait(b.size))
	delay := warmBackoff
	logged := false
	for {
		resp, err := b.get(ctx, "bytes=0-0")
		if err != nil {
			return err
		}
		switch resp.StatusCode {
		case http.StatusPartialContent:
			drainAndClose(resp.Body)
			return nil
		case http.StatusOK:
			// Cut at once: the mirror goes on caching the blob.
			resp.Body.Close()
		default:
			drainAndClose(resp.Body)
			return fmt.Errorf("mirror answered %s", resp.Status)
		}
		if time.Now().Add(delay).After(deadline) {
			return fmt.Errorf("mirror did not cache the %d-byte blob within %s", b.size, warmWait(b.size))
		}
		if !logged {
			b.r.log.LogAttrs(ctx, slog.LevelInfo, "waiting for the mirror to cache the blob", slog.String("digest", b.dgst.String()), slog.Int64("size", b.size))
			logged = true
		}
		if err := sleepContext(ctx, delay); err != nil {
			return err
		}
		delay = min(2*delay, warmBackoffMax)
	}
}

func (s *sources) stats() BlobStats {
	var out BlobStats
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, src := range s.list {
		if src.b != nil {
			st := src.b.stats()
			out.Requests += st.Requests
			out.Bytes += st.Bytes
		}
	}
	return out
}

// digestRef reports whether a manifest reference is a digest.
func digestRef(ref string) bool {
	_, err := digest.Parse(ref)
	return err == nil
}
