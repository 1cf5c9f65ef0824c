package fetch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
)

const ociManifest = "application/vnd.oci.image.manifest.v1+json"

var testAccept = []string{ociManifest, "application/vnd.docker.distribution.manifest.v2+json"}

func TestAnonymousBearerFlow(t *testing.T) {
	reg := newFakeRegistry(t)
	reg.set(func(r *fakeRegistry) { r.authMode = "bearer" })
	body := []byte(`{"schemaVersion":2}`)
	d := reg.addManifest("latest", ociManifest, body)
	opts, _ := testOptions(t)
	repo := openRepo(t, reg, opts)

	m, err := repo.Manifest(context.Background(), "latest", testAccept)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(m.Body, body) || m.MediaType != ociManifest || m.DockerContentDigest != d {
		t.Fatalf("got %q %q %q", m.Body, m.MediaType, m.DockerContentDigest)
	}
	if n := reg.hit("token"); n != 1 {
		t.Errorf("token requests = %d, want 1", n)
	}
	for _, h := range reg.authsFor("token") {
		if h != "" {
			t.Errorf("anonymous token request carried Authorization")
		}
	}
	if got := reg.authsFor("manifest"); len(got) != 1 || !strings.HasPrefix(got[0], "Bearer tok-SECRET-") {
		t.Errorf("manifest Authorization = %q", got)
	}
	reg.mu.Lock()
	defer reg.mu.Unlock()
	for _, ua := range reg.userAgents {
		if ua != "imgfs/test" {
			t.Errorf("User-Agent %q, want imgfs/test", ua)
		}
	}
}

func TestBearerWithCredentials(t *testing.T) {
	reg := newFakeRegistry(t)
	reg.set(func(r *fakeRegistry) { r.authMode, r.user, r.pass = "bearer", "alice", "pw-1" })
	reg.addManifest("v1", ociManifest, []byte(`{}`))
	opts, _ := testOptions(t)
	opts.Keychain = staticKeychain{"alice", "pw-1"}
	repo := openRepo(t, reg, opts)
	if _, err := repo.Manifest(context.Background(), "v1", testAccept); err != nil {
		t.Fatal(err)
	}
	if got := reg.authsFor("token"); len(got) == 0 || got[0] != basicHeader("alice", "pw-1") {
		t.Errorf("token request Authorization = %q", got)
	}

	opts.Keychain = staticKeychain{"alice", "wrong"}
	_, err := NewRepository(context.Background(), reg.repository(t), opts)
	if !errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), "check the credentials") {
		t.Fatalf("wrong password: err = %v, want ErrUnauthorized with a hint", err)
	}
}

func TestBasicAuth(t *testing.T) {
	reg := newFakeRegistry(t)
	reg.set(func(r *fakeRegistry) { r.authMode, r.user, r.pass = "basic", "bob", "pw-2" })
	reg.addManifest("v1", ociManifest, []byte(`{}`))
	ctx := context.Background()

	opts, _ := testOptions(t)
	opts.Keychain = staticKeychain{"bob", "pw-2"}
	if _, err := openRepo(t, reg, opts).Manifest(ctx, "v1", testAccept); err != nil {
		t.Fatal(err)
	}
	if got := reg.authsFor("manifest"); len(got) != 1 || got[0] != basicHeader("bob", "pw-2") {
		t.Errorf("manifest Authorization = %q", got)
	}

	opts.Keychain = staticKeychain{"bob", "nope"}
	_, err := openRepo(t, reg, opts).Manifest(ctx, "v1", testAccept)
	if !errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), "check the credentials") {
		t.Errorf("wrong password: %v", err)
	}
	opts.Keychain = staticKeychain{}
	_, err = openRepo(t, reg, opts).Manifest(ctx, "v1", testAccept)
	if !errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), "no credentials found") {
		t.Errorf("anonymous: %v", err)
	}
}

func TestTokenExpiryRenewedTransparently(t *testing.T) {
	reg := newFakeRegistry(t)
	reg.set(func(r *fakeRegistry) { r.authMode = "bearer" })
	reg.addManifest("latest", ociManifest, []byte(`{}`))
	opts, _ := testOptions(t)
	repo := openRepo(t, reg, opts)
	ctx := context.Background()
	if _, err := repo.Manifest(ctx, "latest", testAccept); err != nil {
		t.Fatal(err)
	}
	reg.expireTokens()
	if _, err := repo.Manifest(ctx, "latest", testAccept); err != nil {
		t.Fatalf("after expiry: %v", err)
	}
	if n := reg.hit("token"); n != 2 {
		t.Errorf("token requests = %d, want 2", n)
	}
	if n := reg.hit("manifest"); n != 3 { // ok, 401, ok
		t.Errorf("manifest requests = %d, want 3", n)
	}
}

func TestManifestNotFound(t *testing.T) {
	reg := newFakeRegistry(t)
	opts, _ := testOptions(t)
	_, err := openRepo(t, reg, opts).Manifest(context.Background(), "missing", testAccept)
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
	msg := err.Error()
	if !strings.Contains(msg, "MANIFEST_UNKNOWN manifest unknown") || strings.Contains(msg, "\n") || !strings.Contains(msg, "missing") {
		t.Errorf("message not one clear line: %q", msg)
	}
	var re *RegistryError
	if !errors.As(err, &re) || re.StatusCode != http.StatusNotFound {
		t.Errorf("not a *RegistryError with 404: %#v", err)
	}
}

func TestManifestByDigestVerified(t *testing.T) {
	reg := newFakeRegistry(t)
	body := []byte(`{"schemaVersion":2,"layers":[]}`)
	d := reg.addManifest("", ociManifest, body)
	opts, _ := testOptions(t)
	repo := openRepo(t, reg, opts)
	ctx := context.Background()
	m, err := repo.Manifest(ctx, d.String(), testAccept)
	if err != nil || !bytes.Equal(m.Body, body) {
		t.Fatalf("by digest: %v", err)
	}
	reg.set(func(r *fakeRegistry) { r.corrupt[d] = true })
	before := reg.hit("manifest")
	if _, err := repo.Manifest(ctx, d.String(), testAccept); !errors.Is(err, ErrDigest) {
		t.Fatalf("corrupt: err = %v, want ErrDigest", err)
	}
	if n := reg.hit("manifest") - before; n != 2 {
		t.Errorf("corrupt manifest fetched %d times, want 2 (one retry)", n)
	}
	before = reg.hit("manifest")
	for _, bad := range []string{"../../x", "sha256:zz", "", "a/b", "tag?x=1", strings.Repeat("a", 200)} {
		if _, err := repo.Manifest(ctx, bad, testAccept); err == nil {
			t.Errorf("reference %q accepted", bad)
		}
	}
	if reg.hit("manifest") != before {
		t.Errorf("invalid references reached the registry")
	}
}

func TestManifestAcceptAndSizeLimit(t *testing.T) {
	reg := newFakeRegistry(t)
	var accept string
	reg.set(func(r *fakeRegistry) {
		r.fault = func(w http.ResponseWriter, req *http.Request, kind string) bool {
			if kind == "manifest" {
				accept = req.Header.Get("Accept")
			}
			return false
		}
	})
	reg.addManifest("big", ociManifest, bytes.Repeat([]byte("x"), maxManifestSize+1))
	opts, _ := testOptions(t)
	_, err := openRepo(t, reg, opts).Manifest(context.Background(), "big", testAccept)
	if err == nil || !strings.Contains(err.Error(), "exceeds") {
		t.Fatalf("oversized manifest: %v", err)
	}
	if accept != strings.Join(testAccept, ", ") {
		t.Errorf("Accept = %q", accept)
	}
}

func TestFetchBlobVerified(t *testing.T) {
	reg := newFakeRegistry(t)
	data := []byte(`{"architecture":"amd64"}`)
	d := reg.addBlob(data)
	opts, _ := testOptions(t)
	repo := openRepo(t, reg, opts)
	ctx := context.Background()
	got, err := repo.FetchBlob(ctx, d, 1<<20)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("FetchBlob: %v", err)
	}
	if _, err := repo.FetchBlob(ctx, d, 4); err == nil || !strings.Contains(err.Error(), "exceeds") {
		t.Errorf("limit: %v", err)
	}
	if _, err := repo.FetchBlob(ctx, digest.FromString("other"), 1<<20); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing: %v", err)
	}
	if _, err := repo.FetchBlob(ctx, "sha256:short", 1<<20); err == nil {
		t.Errorf("invalid digest accepted")
	}
	reg.set(func(r *fakeRegistry) { r.corrupt[d] = true })
	before := reg.hit("blob-get")
	if _, err := repo.FetchBlob(ctx, d, 1<<20); !errors.Is(err, ErrDigest) || !strings.Contains(err.Error(), d.String()) {
		t.Errorf("corrupt: %v, want ErrDigest naming the digest", err)
	}
	if n := reg.hit("blob-get") - before; n != 2 {
		t.Errorf("corrupt blob fetched %d times, want 2 (one retry)", n)
	}

	// Wrong bytes once, then right: the retry hides the fault.
	seen := 0
	reg.set(func(r *fakeRegistry) {
		r.fault = func(w http.ResponseWriter, req *http.Request, kind string) bool {
			if kind == "blob-get" {
				if seen++; seen == 2 {
					reg.set(func(r *fakeRegistry) { r.corrupt[d] = false })
				}
			}
			return false
		}
	})
	if got, err := repo.FetchBlob(ctx, d, 1<<20); err != nil || !bytes.Equal(got, data) || seen != 2 {
		t.Errorf("corrupt once: %v after %d requests", err, seen)
	}
}

// failFirst answers the first n requests of a kind with status (and header).
func failFirst(kind string, n, status int, header, value string) func(http.ResponseWriter, *http.Request, string) bool {
	count := 0
	return func(w http.ResponseWriter, req *http.Request, k string) bool {
		if k != kind || count >= n {
			return false
		}
		count++
		if header != "" {
			w.Header().Set(header, value)
		}
		writeRegistryError(w, status, "UNAVAILABLE", fmt.Sprintf("try later %d", count))
		return true
	}
}

func TestRetry429WithRetryAfter(t *testing.T) {
	reg := newFakeRegistry(t)
	reg.addManifest("latest", ociManifest, []byte(`{}`))
	opts, _ := testOptions(t)
	repo := openRepo(t, reg, opts)
	reg.set(func(r *fakeRegistry) {
		r.fault = failFirst("manifest", 1, http.StatusTooManyRequests, "Retry-After", "30")
	})
	start := time.Now()
	if _, err := repo.Manifest(context.Background(), "latest", testAccept); err != nil {
		t.Fatal(err)
	}
	if n := reg.hit("manifest"); n != 2 {
		t.Errorf("manifest requests = %d, want 2", n)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("Retry-After not capped by MaxDelay: took %s", el)
	}
}

func TestRetryBurstOf503(t *testing.T) {
	reg := newFakeRegistry(t)
	d := reg.addBlob([]byte("config"))
	opts, _ := testOptions(t)
	repo := openRepo(t, reg, opts)
	reg.set(func(r *fakeRegistry) { r.fault = failFirst("blob-get", 3, http.StatusServiceUnavailable, "", "") })
	if _, err := repo.FetchBlob(context.Background(), d, 1<<20); err != nil {
		t.Fatal(err)
	}
	if n := reg.hit("blob-get"); n != 4 {
		t.Errorf("blob requests = %d, want 4", n)
	}
}

func TestRetryBudgetExhausted(t *testing.T) {
	reg := newFakeRegistry(t)
	reg.addManifest("latest", ociManifest, []byte(`{}`))
	opts, _ := testOptions(t)
	opts.Retry.MaxAttempts = 3
	repo := openRepo(t, reg, opts)
	reg.set(func(r *fakeRegistry) { r.fault = failFirst("manifest", 1000, http.StatusServiceUnavailable, "", "") })
	_, err := repo.Manifest(context.Background(), "latest", testAccept)
	if err == nil || !strings.Contains(err.Error(), "503") || !strings.Contains(err.Error(), "try later 3") {
		t.Fatalf("err = %v, want the last 503", err)
	}
	if n := reg.hit("manifest"); n != 3 {
		t.Errorf("manifest requests = %d, want 3", n)
	}
}

func TestRetryConnectionDropped(t *testing.T) {
	reg := newFakeRegistry(t)
	d := reg.addBlob([]byte("config"))
	opts, _ := testOptions(t)
	repo := openRepo(t, reg, opts)
	drops := 0
	reg.set(func(r *fakeRegistry) {
		r.fault = func(w http.ResponseWriter, req *http.Request, kind string) bool {
			if kind != "blob-get" || drops >= 2 {
				return false
			}
			drops++
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
			return true
		}
	})
	if _, err := repo.FetchBlob(context.Background(), d, 1<<20); err != nil {
		t.Fatal(err)
	}
	if n := reg.hit("blob-get"); n != 3 {
		t.Errorf("blob requests = %d, want 3", n)
	}
}

func TestPlainHTTPNeverTriesHTTPS(t *testing.T) {
	reg := newFakeRegistry(t)
	reg.set(func(r *fakeRegistry) { r.authMode = "bearer" })
	reg.addManifest("latest", ociManifest, []byte(`{}`))
	opts, _ := testOptions(t)
	rec := &schemeRecorder{inner: NewBaseTransport(false)}
	opts.Transport = rec
	if _, err := openRepo(t, reg, opts).Manifest(context.Background(), "latest", testAccept); err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.schemes) == 0 {
		t.Fatal("no requests recorded")
	}
	for _, s := range rec.schemes {
		if s != "http" {
			t.Errorf("request over %s with PlainHTTP", s)
		}
	}
}

func TestInsecureTLS(t *testing.T) {
	reg := newFakeRegistryTLS(t, true)
	reg.addManifest("latest", ociManifest, []byte(`{}`))
	opts, _ := testOptions(t)
	opts.PlainHTTP = false
	opts.Insecure = true
	if _, err := openRepo(t, reg, opts).Manifest(context.Background(), "latest", testAccept); err != nil {
		t.Fatalf("Insecure: %v", err)
	}
	opts.Insecure = false
	if _, err := NewRepository(context.Background(), reg.repository(t), opts); err == nil {
		t.Fatal("self-signed certificate accepted without Insecure")
	}
}

func TestCheckRedirectStripsCredentialsOffRegistry(t *testing.T) {
	r := &repository{}
	reg := newFakeRegistry(t)
	r.repo = reg.repository(t)
	for _, tc := range []struct {
		url      string
		keepAuth bool
	}{
		{"http://" + reg.host() + "/v2/x", true},
		{"http://127.0.0.1:1/storage", false},   // same host name, other port
		{"http://sub.127.0.0.1/storage", false}, // what net/http treats as a sub-domain
		{"https://storage.example/x", false},
	} {
		req, _ := http.NewRequest(http.MethodGet, tc.url, nil)
		req.Header.Set("Authorization", "Bearer secret")
		req.Header.Set("Cookie", "session=secret")
		if err := r.checkRedirect(req, []*http.Request{req}); err != nil {
			t.Fatal(err)
		}
		if got := req.Header.Get("Authorization") != ""; got != tc.keepAuth {
			t.Errorf("%s: Authorization kept = %v, want %v", tc.url, got, tc.keepAuth)
		}
		if !tc.keepAuth && req.Header.Get("Cookie") != "" {
			t.Errorf("%s: Cookie kept", tc.url)
		}
	}
	req, _ := http.NewRequest(http.MethodGet, "http://x/", nil)
	if err := r.checkRedirect(req, make([]*http.Request, 10)); err == nil {
		t.Error("11th redirect followed")
	}
}

// A signed schema 1 manifest is named by the digest of its payload without
// signatures, so its raw bytes never hash to the digest asked for: fetch must
// hand it to the caller (manifest) to verify instead of rejecting it.
func TestSignedSchema1ByDigestLeftToTheCaller(t *testing.T) {
	reg := newFakeRegistry(t)
	body := []byte(`{"schemaVersion":1,"fsLayers":[],"signatures":[{"signature":"x"}]}`)
	reg.addManifest("", signedSchema1MediaType, body)
	payloadDigest := digest.FromString(`{"schemaVersion":1,"fsLayers":[]}`)
	reg.mu.Lock()
	reg.manifests[payloadDigest.String()] = fakeManifest{body: body, mediaType: signedSchema1MediaType}
	reg.mu.Unlock()
	opts, _ := testOptions(t)
	repo := openRepo(t, reg, opts)
	m, err := repo.Manifest(context.Background(), payloadDigest.String(), testAccept)
	if err != nil {
		t.Fatalf("signed schema 1 by digest: %v", err)
	}
	if !bytes.Equal(m.Body, body) || m.MediaType != signedSchema1MediaType {
		t.Fatalf("got %q %q", m.Body, m.MediaType)
	}
}

// A manifest or config whose body breaks off is asked for again (the
// transport's retries end at the response headers): found by the fault
// proxy of the integration tests, where a config GET reset mid-body failed
// the mount.
func TestWholeBodyThatBreaksOffIsAskedAgain(t *testing.T) {
	reg := newFakeRegistry(t)
	cfg := []byte(`{"architecture":"amd64","os":"linux","config":{"Env":["A=` + strings.Repeat("x", 4000) + `"]}}`)
	d := reg.addBlob(cfg)
	var broke atomic.Int32
	reg.set(func(r *fakeRegistry) {
		r.fault = func(w http.ResponseWriter, req *http.Request, kind string) bool {
			if kind != "blob-get" || broke.Add(1) > 1 {
				return false
			}
			conn, buf, _ := w.(http.Hijacker).Hijack()
			fmt.Fprintf(buf, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", len(cfg))
			buf.Write(cfg[:100])
			buf.Flush()
			conn.(*net.TCPConn).SetLinger(0)
			conn.Close()
			return true
		}
	})
	opts, logs := testOptions(t)
	got, err := openRepo(t, reg, opts).FetchBlob(context.Background(), d, 1<<20)
	if err != nil || !bytes.Equal(got, cfg) {
		t.Fatalf("FetchBlob: %v", err)
	}
	if !strings.Contains(logs.String(), "asking again") {
		t.Errorf("no retry logged:\n%s", logs.String())
	}
}
