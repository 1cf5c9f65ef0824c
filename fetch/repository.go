package fetch

import (
	"context"
	_ "crypto/sha256" // digest algorithms go-digest verifies with
	_ "crypto/sha512"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	digest "github.com/opencontainers/go-digest"
)

// repository is the client behind Repository. The HTTP stack, outermost
// first:
//
//	http.Client (redirects; strips Authorization off the registry host)
//	 └ ggcr transport (ping, Basic, Bearer token exchange and refresh on 401)
//	    └ requestEditor (User-Agent, --plain-http scheme)
//	       └ retryTransport (5xx, 429, resets, timeouts)
//	          └ loggingTransport (one line per request that reaches the network)
//	             └ countingTransport (Blob stats) └ base transport
type repository struct {
	repo         name.Repository
	scheme       string // of the URLs we build; ggcr rewrites it for the registry after its ping
	client       *http.Client
	policy       RetryPolicy
	log          *slog.Logger
	anonymous    bool  // no credentials found: 401s get a hint saying so
	maxWholeBlob int64 // largest blob kept in memory when its server ignores Range

	auth      authn.Authenticator // for push negotiation (artifact.go)
	inner     http.RoundTripper   // the stack under authentication
	authed    http.RoundTripper   // inner with pull authentication (a *transport.Wrapper)
	manifests *manifestCache      // nil: manifests are not cached
	mirrors   []*mirror           // tried in order before this registry (mirror.go)
}

func newRepository(ctx context.Context, repo name.Repository, opts Options) (*repository, error) {
	opts = opts.withDefaults()
	registryHost := repo.RegistryStr()
	scheme := "https"
	if opts.PlainHTTP {
		reg, err := name.NewRegistry(registryHost, name.Insecure)
		if err != nil {
			return nil, fmt.Errorf("registry %s: %w", registryHost, err)
		}
		repo = reg.Repo(repo.RepositoryStr())
		scheme = "http"
	}

	auth, err := authn.Resolve(ctx, opts.Keychain, repo)
	if err != nil {
		return nil, fmt.Errorf("credentials for %s: %w", repo, err)
	}

	var rt http.RoundTripper = &stallTransport{inner: opts.Transport, timeout: opts.StallTimeout}
	rt = &countingTransport{inner: rt}
	rt = newLoggingTransport(rt, opts.Logger)
	rt = newRetryTransport(rt, opts.Retry, opts.Logger)
	editor := &requestEditor{inner: rt, userAgent: opts.UserAgent}
	if opts.PlainHTTP {
		editor.plainHTTPFor = registryHost
	}
	authed, err := transport.NewWithContext(ctx, repo.Registry, auth, editor, []string{repo.Scope(transport.PullScope)})
	if err != nil {
		err = mapTransportError(err)
		if errors.Is(err, ErrUnauthorized) {
			return nil, fmt.Errorf("authenticate to %s for pull of %s: %w (%s)", registryHost, repo.RepositoryStr(), err, credentialsHint(auth == authn.Anonymous))
		}
		return nil, fmt.Errorf("connect to registry %s: %w", registryHost, err)
	}

	r := &repository{
		repo:         repo,
		scheme:       scheme,
		policy:       opts.Retry,
		log:          opts.Logger,
		anonymous:    auth == authn.Anonymous,
		maxWholeBlob: opts.MaxWholeBlob,
		auth:         auth,
		inner:        editor,
		authed:       authed,
	}
	if opts.ManifestCacheDir != "" {
		r.manifests = &manifestCache{dir: opts.ManifestCacheDir}
	}
	r.client = &http.Client{Transport: authed, CheckRedirect: r.checkRedirect}
	r.mirrors = newMirrors(repo, opts)
	return r, nil
}

// checkRedirect follows up to 10 redirects and makes sure no credential goes
// to another host. ggcr only adds Authorization for the registry host, but
// net/http copies the initial request's headers to a host that matches by
// name (other port, sub-domain): remove them ourselves.
func (r *repository) checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	if !r.isRegistryURL(req.URL) {
		req.Header.Del("Authorization")
		req.Header.Del("Cookie")
	}
	return nil
}

func (r *repository) isRegistryURL(u *url.URL) bool {
	return sameHost(u.Host, u.Scheme, r.repo.RegistryStr())
}

func credentialsHint(anonymous bool) string {
	if anonymous {
		return "no credentials found for this registry: set IMGFS_USERNAME/IMGFS_PASSWORD, use docker login, or REGISTRY_AUTH_FILE"
	}
	return "check the credentials used for this registry (IMGFS_USERNAME/IMGFS_PASSWORD, docker config, REGISTRY_AUTH_FILE)"
}

// statusHint says what may help after an error status.
func (r *repository) statusHint(code int) string {
	switch code {
	case http.StatusUnauthorized, http.StatusForbidden:
		return credentialsHint(r.anonymous)
	}
	return ""
}

func (r *repository) url(kind, ref string) string {
	return fmt.Sprintf("%s://%s/v2/%s/%s/%s", r.scheme, r.repo.RegistryStr(), r.repo.RepositoryStr(), kind, ref)
}

// do sends a request built from ctx; errors come back redacted and mapped.
func (r *repository) do(req *http.Request) (*http.Response, error) {
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, mapTransportError(err)
	}
	return resp, nil
}

// validTag checks the distribution grammar of a tag,
// [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}, so a tag cannot alter the URL path.
func validTag(tag string) bool {
	if tag == "" || len(tag) > 128 || tag[0] == '.' || tag[0] == '-' {
		return false
	}
	for _, c := range []byte(tag) {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-'
		if !ok {
			return false
		}
	}
	return true
}

// manifestDirect GETs a manifest from this registry (no cache, no mirror).
func (r *repository) manifestDirect(ctx context.Context, ref string, accept []string) (*ManifestResponse, error) {
	what := fmt.Sprintf("manifest %s:%s", r.repo, ref)
	var want digest.Digest
	if strings.Contains(ref, ":") {
		d, err := digest.Parse(ref)
		if err != nil {
			return nil, fmt.Errorf("%s: invalid digest: %w", what, err)
		}
		want = d
		what = fmt.Sprintf("manifest %s@%s", r.repo, ref)
	} else if !validTag(ref) {
		return nil, fmt.Errorf("manifest %s: invalid tag %q", r.repo, ref)
	}

	// Wrong bytes may be a transient fault of some proxy: ask once more.
	m, err := r.manifestOnce(ctx, what, ref, want, accept)
	if errors.Is(err, ErrDigest) {
		r.log.WarnContext(ctx, "manifest failed verification, fetching it again", "manifest", what)
		m, err = r.manifestOnce(ctx, what, ref, want, accept)
	}
	return m, err
}

// signedSchema1MediaType is the one manifest type whose digest is not the
// hash of the bytes received.
const signedSchema1MediaType = "application/vnd.docker.distribution.manifest.v1+prettyjws"

func (r *repository) manifestOnce(ctx context.Context, what, ref string, want digest.Digest, accept []string) (*ManifestResponse, error) {
	header, body, err := r.getWhole(ctx, what, r.url("manifests", ref), accept, maxManifestSize)
	if err != nil {
		return nil, err
	}
	out := &ManifestResponse{Body: body, MediaType: mediaType(header.Get("Content-Type"))}
	// A signed schema 1 manifest's digest covers its payload without the
	// signatures, which only a manifest parser can cut out: the caller checks it.
	if want != "" && out.MediaType != signedSchema1MediaType {
		if got := want.Algorithm().FromBytes(body); got != want {
			return nil, fmt.Errorf("%s: %w: body hashes to %s", what, ErrDigest, got)
		}
	}
	if h := header.Get("Docker-Content-Digest"); h != "" {
		if d, err := digest.Parse(strings.TrimSpace(h)); err == nil {
			out.DockerContentDigest = d
		} else {
			r.log.WarnContext(ctx, "ignoring invalid Docker-Content-Digest header", "manifest", what, "value", oneLine(h, 100))
		}
	}
	return out, nil
}

// mediaType is a Content-Type without its parameters.
func mediaType(contentType string) string {
	mt, _, _ := strings.Cut(contentType, ";")
	return strings.TrimSpace(mt)
}

// readLimited reads a whole body of at most limit bytes; a body that claims
// or turns out to be larger is an error, not a truncation.
func readLimited(resp *http.Response, limit int64) ([]byte, error) {
	if resp.ContentLength > limit {
		return nil, fmt.Errorf("body of %d bytes exceeds the limit of %d", resp.ContentLength, limit)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, &brokenBody{err: err}
	}
	if int64(len(body)) > limit {
		return nil, fmt.Errorf("body exceeds the limit of %d bytes", limit)
	}
	return body, nil
}

func (r *repository) fetchBlob(ctx context.Context, dgst digest.Digest, maxSize int64) ([]byte, error) {
	what := fmt.Sprintf("blob %s@%s", r.repo, dgst)
	if err := dgst.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if maxSize <= 0 {
		maxSize = defaultMaxBlob
	}
	for _, m := range r.mirrors { // content-addressed: any mirror may serve it
		if !m.cfg.Digests {
			continue
		}
		if data, err := m.fetchSmallBlob(ctx, dgst, maxSize); err == nil {
			return data, nil
		}
	}
	data, err := r.fetchBlobOnce(ctx, what, dgst, maxSize)
	if errors.Is(err, ErrDigest) {
		r.log.WarnContext(ctx, "blob failed verification, fetching it again", "blob", what)
		data, err = r.fetchBlobOnce(ctx, what, dgst, maxSize)
	}
	return data, err
}

func (r *repository) fetchBlobOnce(ctx context.Context, what string, dgst digest.Digest, maxSize int64) ([]byte, error) {
	_, body, err := r.getWhole(ctx, what, r.url("blobs", dgst.String()), nil, maxSize)
	if err != nil {
		return nil, err
	}
	if got := dgst.Algorithm().FromBytes(body); got != dgst {
		return nil, fmt.Errorf("%s: %w: body hashes to %s", what, ErrDigest, got)
	}
	return body, nil
}

// getWhole GETs url and reads the whole body, at most maxSize bytes; any
// answer but 200 is an error in the registry's words. A body that breaks
// off is asked for again, within the retry policy (the transport retries
// only until the response headers).
func (r *repository) getWhole(ctx context.Context, what, url string, accept []string, maxSize int64) (http.Header, []byte, error) {
	start := time.Now()
	for attempt := 1; ; attempt++ {
		header, body, err := r.getWholeOnce(ctx, what, url, accept, maxSize)
		var broken *brokenBody
		if !errors.As(err, &broken) {
			return header, body, err
		}
		delay := r.policy.backoff(attempt, rand.Float64())
		if !transientError(broken.err) || attempt >= r.policy.MaxAttempts || time.Since(start)+delay > r.policy.MaxElapsed {
			return nil, nil, err
		}
		r.log.LogAttrs(ctx, slog.LevelInfo, "registry answer broke off, asking again",
			slog.String("what", what), slog.String("error", redactErrorText(broken.err.Error())), slog.Int("attempt", attempt))
		if err := sleepContext(ctx, delay); err != nil {
			return nil, nil, err
		}
	}
}

// brokenBody marks a body that broke off while being read.
type brokenBody struct{ err error }

func (e *brokenBody) Error() string { return "read body: " + e.err.Error() }
func (e *brokenBody) Unwrap() error { return e.err }

func (r *repository) getWholeOnce(ctx context.Context, what, url string, accept []string, maxSize int64) (http.Header, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", what, err)
	}
	if len(accept) > 0 {
		req.Header.Set("Accept", strings.Join(accept, ", "))
	}
	resp, err := r.do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", what, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("%s: %w", what, responseError(resp, r.statusHint(resp.StatusCode)))
	}
	defer resp.Body.Close()
	body, err := readLimited(resp, maxSize)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", what, err)
	}
	return resp.Header, body, nil
}
