package integration

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	digest "github.com/opencontainers/go-digest"
)

// pushRequestTimeout bounds every request of a push.
const pushRequestTimeout = 30 * time.Second

// Target is where and as whom to push.
type Target struct {
	Host string              // 127.0.0.1:PORT
	Auth authn.Authenticator // nil: anonymous
}

// Target returns the registry with the credentials that may push to it.
func (r *Registry) Target() Target { return Target{Host: r.Host, Auth: r.Authenticator()} }

// PushImage uploads the config and layers of img (skipping blobs already
// there) and PUTs its manifest under tag ("" = by digest only).
func PushImage(ctx context.Context, target Target, repo, tag string, img *BuiltImage) error {
	p, err := newPusher(ctx, target, repo)
	if err != nil {
		return err
	}
	return p.pushImage(ctx, tag, img)
}

// PushIndex pushes every image of idx by digest, then the index under tag.
func PushIndex(ctx context.Context, target Target, repo, tag string, idx *BuiltIndex) error {
	p, err := newPusher(ctx, target, repo)
	if err != nil {
		return err
	}
	for _, img := range idx.Images {
		if err := p.pushImage(ctx, "", img); err != nil {
			return err
		}
	}
	return p.putManifest(ctx, tag, idx.MediaType, idx.Manifest)
}

// PushImage pushes img as repo:tag and returns the by-digest reference.
func (r *Registry) PushImage(t testing.TB, repo, tag string, img *BuiltImage) string {
	t.Helper()
	if err := PushImage(context.Background(), r.Target(), repo, tag, img); err != nil {
		t.Fatalf("push %s:%s: %v", repo, tag, err)
	}
	return r.Ref(repo, img.Digest.String())
}

// PushIndex pushes idx as repo:tag and returns the by-digest reference.
func (r *Registry) PushIndex(t testing.TB, repo, tag string, idx *BuiltIndex) string {
	t.Helper()
	if err := PushIndex(context.Background(), r.Target(), repo, tag, idx); err != nil {
		t.Fatalf("push index %s:%s: %v", repo, tag, err)
	}
	return r.Ref(repo, idx.Digest.String())
}

// pusher speaks the distribution push protocol over plain HTTP; go-
// containerregistry's transport does the Basic or bearer token dance.
type pusher struct {
	client *http.Client
	base   string // http://HOST/v2/REPO
}

func newPusher(ctx context.Context, target Target, repo string) (*pusher, error) {
	ref, err := name.NewRepository(target.Host+"/"+repo, name.Insecure)
	if err != nil {
		return nil, fmt.Errorf("repository %q: %w", repo, err)
	}
	auth := target.Auth
	if auth == nil {
		auth = authn.Anonymous
	}
	rt, err := transport.NewWithContext(ctx, ref.Registry, auth, http.DefaultTransport,
		[]string{ref.Scope(transport.PushScope)})
	if err != nil {
		return nil, fmt.Errorf("authenticate to %s for push: %w", target.Host, err)
	}
	return &pusher{
		client: &http.Client{Transport: rt, Timeout: pushRequestTimeout},
		base:   fmt.Sprintf("%s://%s/v2/%s", ref.Registry.Scheme(), ref.RegistryStr(), ref.RepositoryStr()),
	}, nil
}

func (p *pusher) pushImage(ctx context.Context, tag string, img *BuiltImage) error {
	if err := p.uploadBlob(ctx, img.ConfigDigest, img.Config); err != nil {
		return err
	}
	for _, l := range img.Layers {
		if err := p.uploadBlob(ctx, l.Digest, l.Blob); err != nil {
			return err
		}
	}
	if tag == "" {
		tag = img.Digest.String()
	}
	return p.putManifest(ctx, tag, img.MediaType, img.Manifest)
}

// uploadBlob does a monolithic upload: POST uploads/, then PUT ?digest=.
func (p *pusher) uploadBlob(ctx context.Context, dgst digest.Digest, data []byte) error {
	resp, err := p.do(ctx, http.MethodHead, p.base+"/blobs/"+dgst.String(), "", nil)
	if err != nil {
		return fmt.Errorf("HEAD blob %s: %w", dgst, err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return nil
	}

	resp, err = p.do(ctx, http.MethodPost, p.base+"/blobs/uploads/", "", nil)
	if err != nil {
		return fmt.Errorf("start upload of %s: %w", dgst, err)
	}
	if err := expectStatus(resp, http.StatusAccepted); err != nil {
		return fmt.Errorf("start upload of %s: %w", dgst, err)
	}
	location, err := resp.Request.URL.Parse(resp.Header.Get("Location"))
	if err != nil {
		return fmt.Errorf("upload location of %s: %w", dgst, err)
	}
	q := location.Query()
	q.Set("digest", dgst.String())
	location.RawQuery = q.Encode()

	resp, err = p.do(ctx, http.MethodPut, location.String(), "application/octet-stream", data)
	if err != nil {
		return fmt.Errorf("upload %s: %w", dgst, err)
	}
	if err := expectStatus(resp, http.StatusCreated); err != nil {
		return fmt.Errorf("upload %s: %w", dgst, err)
	}
	return nil
}

func (p *pusher) putManifest(ctx context.Context, ref, mediaType string, body []byte) error {
	want := digest.FromBytes(body)
	resp, err := p.do(ctx, http.MethodPut, p.base+"/manifests/"+url.PathEscape(ref), mediaType, body)
	if err != nil {
		return fmt.Errorf("put manifest %s: %w", ref, err)
	}
	got := resp.Header.Get("Docker-Content-Digest")
	if err := expectStatus(resp, http.StatusCreated); err != nil {
		return fmt.Errorf("put manifest %s (%s): %w", ref, mediaType, err)
	}
	if got != want.String() {
		return fmt.Errorf("put manifest %s: registry says digest %q, we sent %s", ref, got, want)
	}
	return nil
}

func (p *pusher) do(ctx context.Context, method, u, contentType string, body []byte) (*http.Response, error) {
	ctx, cancel := context.WithTimeout(ctx, pushRequestTimeout)
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		cancel()
		return nil, err
	}
	req.ContentLength = int64(len(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		cancel()
		return nil, err
	}
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

// expectStatus closes the body, returning an error with its start unless
// the status is want.
func expectStatus(resp *http.Response, want int) error {
	defer resp.Body.Close()
	if resp.StatusCode == want {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		return nil
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
	return fmt.Errorf("HTTP %s (want %d): %s", resp.Status, want, bytes.TrimSpace(msg))
}
