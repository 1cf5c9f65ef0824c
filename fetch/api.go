// Package fetch talks to registries: authentication, retries, manifests,
// small verified blobs and lazy range reads of large ones. It knows nothing
// of tar or of image formats.
package fetch

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	digest "github.com/opencontainers/go-digest"
)

// Options configure a Repository client.
type Options struct {
	PlainHTTP bool              // speak http:// to the registry (local registries)
	Insecure  bool              // skip TLS certificate verification
	UserAgent string            // default "imgfs/<version>"
	Keychain  authn.Keychain    // nil: DefaultKeychain()
	Retry     RetryPolicy       // zero value: DefaultRetryPolicy()
	Logger    *slog.Logger      // nil: slog.Default(); registry calls at Info, headers at Debug
	Transport http.RoundTripper // base transport under auth and retries; nil: a tuned *http.Transport
	// StallTimeout fails a response body that sends no byte for this long;
	// the read is then resumed within Retry. 0: DefaultStallTimeout.
	StallTimeout time.Duration
	// MaxWholeBlob bounds the blob kept whole in memory when its server
	// ignores Range requests (larger ones fail with a clear error); 0: 256 MiB.
	MaxWholeBlob int64
	// AllowPlainHTTP: when the registry cannot be reached over https,
	// speak http (containers-registries.conf's insecure = true, with
	// Insecure for the https attempt).
	AllowPlainHTTP bool
	// ManifestCacheDir keeps manifests fetched by digest (immutable); a
	// tag whose digest's manifest is there is resolved with a HEAD
	// request. "": no manifest cache. See manifestcache.go.
	ManifestCacheDir string
	// Mirrors are tried in order before the registry for the requests
	// they are eligible for (see Mirror); a failing one falls back to the
	// next, then to the registry.
	Mirrors []Mirror
	// Proxy chooses the HTTP proxy of a request when Transport is nil;
	// nil: http.ProxyFromEnvironment (HTTPS_PROXY, HTTP_PROXY, NO_PROXY).
	Proxy func(*http.Request) (*url.URL, error)
}

// RetryPolicy bounds retries of transient failures (5xx, 429, resets, timeouts).
type RetryPolicy struct {
	MaxAttempts int           // total attempts including the first
	MaxElapsed  time.Duration // give up once this much time has passed since the first attempt
	BaseDelay   time.Duration // first backoff; doubles each attempt, with jitter
	MaxDelay    time.Duration // cap of one backoff (also caps Retry-After)
}

// ManifestResponse is a manifest as the registry returned it.
type ManifestResponse struct {
	Body                []byte
	MediaType           string        // Content-Type, parameters stripped
	DockerContentDigest digest.Digest // "" when the header is absent
}

// BlobStats counts what a Blob cost on the network.
type BlobStats struct {
	Requests int64 // HTTP requests issued (including retries)
	Bytes    int64 // body bytes received
}

// Errors callers can test with errors.Is.
var (
	ErrNotFound     = errors.New("not found")
	ErrUnauthorized = errors.New("unauthorized")
	ErrDigest       = errors.New("digest mismatch")
)

// Repository is an authenticated client for one repository of one registry.
type Repository struct {
	impl *repository
}

// NewRepository pings the registry, negotiates authentication for pull and
// returns a client.
func NewRepository(ctx context.Context, repo name.Repository, opts Options) (*Repository, error) {
	r, err := connect(ctx, repo, opts)
	if err != nil {
		return nil, err
	}
	return &Repository{impl: r}, nil
}

// Manifest GETs /v2/<name>/manifests/<reference> with the given Accept types.
// reference is a tag or a digest. The body is limited in size. A by-digest
// request is verified against the digest, except a signed schema 1 manifest,
// whose digest covers its payload without signatures: the caller checks that.
func (r *Repository) Manifest(ctx context.Context, reference string, accept []string) (*ManifestResponse, error) {
	return r.impl.manifest(ctx, reference, accept)
}

// HeadManifest resolves a tag to its digest with a HEAD request to the
// registry (no GET: registries such as Docker Hub count GETs against pull
// limits, even through a pull-through cache, which GETs a tag upstream
// when its HEAD finds nothing). ErrNotFound when there is no such tag.
func (r *Repository) HeadManifest(ctx context.Context, tag string, accept []string) (digest.Digest, error) {
	return r.impl.headManifest(ctx, tag, accept)
}

// FetchBlob GETs a whole small blob (a config) and verifies its digest.
func (r *Repository) FetchBlob(ctx context.Context, dgst digest.Digest, maxSize int64) ([]byte, error) {
	return r.impl.fetchBlob(ctx, dgst, maxSize)
}

// OpenBlob returns a lazy reader of a blob. size < 0 means unknown: it is
// found with a HEAD request, under ctx.
func (r *Repository) OpenBlob(ctx context.Context, dgst digest.Digest, size int64) (*Blob, error) {
	return r.impl.openBlob(ctx, dgst, size)
}

// Blob reads one blob lazily with HTTP range requests. It is safe for
// concurrent use. Bytes it returns are not verified: callers verify.
type Blob struct {
	impl *blob
	srcs *sources // mirrors, then impl; nil without mirrors
}

func (b *Blob) Digest() digest.Digest { return b.impl.dgst }
func (b *Blob) Size() int64           { return b.impl.size }

// ReadAt reads len(p) bytes at off with one range request (retried, and
// resumed where a body broke off), as io.ReaderAt does, until ctx ends.
func (b *Blob) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	if b.srcs != nil {
		return b.srcs.readAt(ctx, p, off)
	}
	return b.impl.readAt(ctx, p, off)
}

// Open streams the whole blob from the start (for one-pass index builds),
// until ctx ends or the body is closed.
func (b *Blob) Open(ctx context.Context) (io.ReadCloser, error) {
	if b.srcs != nil {
		return b.srcs.open(ctx)
	}
	return b.impl.open(ctx)
}

// Stats reports the network cost so far (at mirrors and the registry).
func (b *Blob) Stats() BlobStats {
	if b.srcs != nil {
		return b.srcs.stats()
	}
	return b.impl.stats()
}
