package fetch

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	digest "github.com/opencontainers/go-digest"
)

// fakeRegistry is a small in-process distribution registry: /v2/ ping, a
// token endpoint, manifests, blobs with Range support, and switches for
// faults. Counters let tests assert what reached the network.
type fakeRegistry struct {
	t    *testing.T
	srv  *httptest.Server
	repo string

	mu         sync.Mutex
	authMode   string // "" (open), "basic" or "bearer"
	user, pass string // required credentials; for bearer, "" lets anonymous get tokens
	tokens     map[string]bool
	tokenSeq   int
	manifests  map[string]fakeManifest
	blobs      map[digest.Digest][]byte
	corrupt    map[digest.Digest]bool
	hits       map[string]int      // by request kind, see kindOf
	auths      map[string][]string // Authorization headers seen, by kind
	userAgents []string

	// Fault switches.
	fault           func(w http.ResponseWriter, r *http.Request, kind string) bool // true: handled
	ignoreRange     bool                                                           // answer Range with 200 and the whole blob
	badContentRange bool                                                           // answer Range with a wrong Content-Range
	noHeadLength    bool                                                           // HEAD of a blob without Content-Length
	redirectTo      *fakeStorage                                                   // redirect blob GETs to this storage
}

type fakeManifest struct {
	body      []byte
	mediaType string
}

func newFakeRegistry(t *testing.T) *fakeRegistry {
	return newFakeRegistryTLS(t, false)
}

func newFakeRegistryTLS(t *testing.T, useTLS bool) *fakeRegistry {
	t.Helper()
	r := &fakeRegistry{
		t:         t,
		repo:      "test/app",
		tokens:    map[string]bool{},
		manifests: map[string]fakeManifest{},
		blobs:     map[digest.Digest][]byte{},
		corrupt:   map[digest.Digest]bool{},
		hits:      map[string]int{},
		auths:     map[string][]string{},
	}
	if useTLS {
		r.srv = httptest.NewTLSServer(http.HandlerFunc(r.serve))
	} else {
		r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	}
	t.Cleanup(r.srv.Close)
	return r
}

func (r *fakeRegistry) host() string {
	return strings.TrimPrefix(strings.TrimPrefix(r.srv.URL, "http://"), "https://")
}

func (r *fakeRegistry) repository(t *testing.T) name.Repository {
	t.Helper()
	repo, err := name.NewRepository(r.host() + "/" + r.repo)
	if err != nil {
		t.Fatal(err)
	}
	return repo
}

func (r *fakeRegistry) addManifest(tag, mediaType string, body []byte) digest.Digest {
	d := digest.FromBytes(body)
	r.mu.Lock()
	defer r.mu.Unlock()
	m := fakeManifest{body: body, mediaType: mediaType}
	r.manifests[d.String()] = m
	if tag != "" {
		r.manifests[tag] = m
	}
	return d
}

func (r *fakeRegistry) addBlob(data []byte) digest.Digest {
	d := digest.FromBytes(data)
	r.mu.Lock()
	r.blobs[d] = data
	r.mu.Unlock()
	return d
}

func (r *fakeRegistry) set(f func(r *fakeRegistry)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(r)
}

func (r *fakeRegistry) hit(kind string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.hits[kind]
}

func (r *fakeRegistry) authsFor(kind string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.auths[kind]...)
}

// expireTokens invalidates every token issued so far.
func (r *fakeRegistry) expireTokens() {
	r.mu.Lock()
	r.tokens = map[string]bool{}
	r.mu.Unlock()
}

func kindOf(req *http.Request) string {
	p := req.URL.Path
	switch {
	case p == "/v2/" || p == "/v2":
		return "ping"
	case p == "/token":
		return "token"
	case strings.Contains(p, "/manifests/"):
		return "manifest"
	case strings.Contains(p, "/blobs/") && req.Method == http.MethodHead:
		return "blob-head"
	case strings.Contains(p, "/blobs/") && req.Header.Get("Range") != "":
		return "blob-range"
	case strings.Contains(p, "/blobs/"):
		return "blob-get"
	}
	return "other"
}

func writeRegistryError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"errors":[{"code":%q,"message":%q,"detail":{"x":"y"}}]}`+"\n", code, message)
}

func (r *fakeRegistry) serve(w http.ResponseWriter, req *http.Request) {
	kind := kindOf(req)
	r.mu.Lock()
	r.hits[kind]++
	r.auths[kind] = append(r.auths[kind], req.Header.Get("Authorization"))
	r.userAgents = append(r.userAgents, req.Header.Get("User-Agent"))
	fault := r.fault
	r.mu.Unlock()

	if fault != nil && fault(w, req, kind) {
		return
	}
	if kind == "token" {
		r.serveToken(w, req)
		return
	}
	if !r.authorized(w, req) {
		return
	}
	switch kind {
	case "ping":
		w.WriteHeader(http.StatusOK)
	case "manifest":
		r.serveManifest(w, req)
	case "blob-head", "blob-range", "blob-get":
		r.serveBlob(w, req)
	default:
		writeRegistryError(w, http.StatusNotFound, "NAME_UNKNOWN", "repository name not known to registry")
	}
}

func (r *fakeRegistry) serveToken(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.user != "" {
		u, p, ok := req.BasicAuth()
		if !ok || u != r.user || p != r.pass {
			writeRegistryError(w, http.StatusUnauthorized, "UNAUTHORIZED", "authentication required")
			return
		}
	}
	r.tokenSeq++
	tok := fmt.Sprintf("tok-SECRET-%d", r.tokenSeq)
	r.tokens[tok] = true
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"token": tok, "expires_in": 300})
}

// authorized checks credentials and answers 401 with a challenge if needed.
func (r *fakeRegistry) authorized(w http.ResponseWriter, req *http.Request) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := req.Header.Get("Authorization")
	switch r.authMode {
	case "basic":
		u, p, ok := req.BasicAuth()
		if ok && u == r.user && p == r.pass {
			return true
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="fake"`)
	case "bearer":
		if tok, ok := strings.CutPrefix(h, "Bearer "); ok && r.tokens[tok] {
			return true
		}
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="%s/token",service="fake",scope="repository:%s:pull"`, r.srv.URL, r.repo))
	default:
		return true
	}
	writeRegistryError(w, http.StatusUnauthorized, "UNAUTHORIZED", "authentication required")
	return false
}

func (r *fakeRegistry) serveManifest(w http.ResponseWriter, req *http.Request) {
	ref := req.URL.Path[strings.LastIndex(req.URL.Path, "/")+1:]
	r.mu.Lock()
	m, ok := r.manifests[ref]
	corrupt := ok && r.corrupt[digest.FromBytes(m.body)]
	r.mu.Unlock()
	if !ok || !strings.HasPrefix(req.URL.Path, "/v2/"+r.repo+"/") {
		writeRegistryError(w, http.StatusNotFound, "MANIFEST_UNKNOWN", "manifest unknown")
		return
	}
	body := m.body
	if corrupt {
		body = flipped(body)
	}
	w.Header().Set("Content-Type", m.mediaType+"; charset=utf-8")
	w.Header().Set("Docker-Content-Digest", digest.FromBytes(m.body).String())
	w.Write(body)
}

func flipped(b []byte) []byte {
	c := bytes.Clone(b)
	if len(c) > 0 {
		c[len(c)/2] ^= 0xff
	}
	return c
}

func (r *fakeRegistry) serveBlob(w http.ResponseWriter, req *http.Request) {
	d, err := digest.Parse(req.URL.Path[strings.LastIndex(req.URL.Path, "/")+1:])
	r.mu.Lock()
	data, ok := r.blobs[d]
	corrupt, ignoreRange, badCR, noHeadLength, storage := r.corrupt[d], r.ignoreRange, r.badContentRange, r.noHeadLength, r.redirectTo
	r.mu.Unlock()
	if err != nil || !ok {
		writeRegistryError(w, http.StatusNotFound, "BLOB_UNKNOWN", "blob unknown to registry")
		return
	}
	if corrupt {
		data = flipped(data)
	}
	switch {
	case req.Method == http.MethodHead && noHeadLength:
		w.WriteHeader(http.StatusOK)
	case req.Method == http.MethodGet && storage != nil:
		http.Redirect(w, req, storage.signedURL(d), http.StatusTemporaryRedirect)
	default:
		serveBytes(w, req, data, ignoreRange, badCR)
	}
}

// serveBytes serves data honouring Range, or misbehaving as asked.
func serveBytes(w http.ResponseWriter, req *http.Request, data []byte, ignoreRange, badContentRange bool) {
	w.Header().Set("Content-Type", "application/octet-stream")
	switch {
	case ignoreRange:
		w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		if req.Method != http.MethodHead {
			w.Write(data)
		}
	case badContentRange && req.Header.Get("Range") != "":
		w.Header().Set("Content-Range", fmt.Sprintf("bytes 0-0/%d", len(data)))
		w.WriteHeader(http.StatusPartialContent)
		w.Write(data[:1])
	default:
		http.ServeContent(w, req, "", time.Time{}, bytes.NewReader(data))
	}
}

// fakeStorage is blob storage a registry redirects to, with pre-signed URLs.
// It fails the test if it ever sees an Authorization header.
type fakeStorage struct {
	t   *testing.T
	srv *httptest.Server
	reg *fakeRegistry

	mu        sync.Mutex
	hits      int
	sigSeq    int
	sigsSeen  []string
	forbidden int // answer this many next requests with 403
}

func newFakeStorage(t *testing.T, reg *fakeRegistry) *fakeStorage {
	s := &fakeStorage{t: t, reg: reg}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *fakeStorage) signedURL(d digest.Digest) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sigSeq++
	return fmt.Sprintf("%s/storage/%s?X-Amz-Signature=SIGSECRET%d&X-Amz-Expires=300", s.srv.URL, d.Encoded(), s.sigSeq)
}

func (s *fakeStorage) serve(w http.ResponseWriter, req *http.Request) {
	if h := req.Header.Get("Authorization"); h != "" {
		s.t.Errorf("blob storage received an Authorization header (%d bytes)", len(h))
	}
	s.mu.Lock()
	s.hits++
	s.sigsSeen = append(s.sigsSeen, req.URL.Query().Get("X-Amz-Signature"))
	forbid := s.forbidden > 0
	if forbid {
		s.forbidden--
	}
	s.mu.Unlock()
	if forbid {
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprint(w, "<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>")
		return
	}
	d := digest.NewDigestFromEncoded(digest.SHA256, strings.TrimPrefix(req.URL.Path, "/storage/"))
	s.reg.mu.Lock()
	data, ok := s.reg.blobs[d]
	s.reg.mu.Unlock()
	if !ok {
		http.NotFound(w, req)
		return
	}
	serveBytes(w, req, data, false, false)
}

func (s *fakeStorage) state() (hits int, sigs []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits, append([]string(nil), s.sigsSeen...)
}

// staticKeychain gives one credential to every registry.
type staticKeychain struct{ user, pass string }

func (k staticKeychain) Resolve(authn.Resource) (authn.Authenticator, error) {
	if k.user == "" {
		return authn.Anonymous, nil
	}
	return authn.FromConfig(authn.AuthConfig{Username: k.user, Password: k.pass}), nil
}

// lockedBuffer collects log output written from several goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func fastRetry() RetryPolicy {
	return RetryPolicy{MaxAttempts: 4, MaxElapsed: 5 * time.Second, BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond}
}

// testOptions: plain HTTP, anonymous, fast retries, logs at Debug into the
// returned buffer (so every test also exercises the Debug paths).
func testOptions(t *testing.T) (Options, *lockedBuffer) {
	buf := &lockedBuffer{}
	log := slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log:\n%s", buf.String())
		}
	})
	return Options{
		PlainHTTP: true,
		UserAgent: "imgfs/test",
		Keychain:  staticKeychain{},
		Retry:     fastRetry(),
		Logger:    log,
	}, buf
}

func openRepo(t *testing.T, reg *fakeRegistry, opts Options) *Repository {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	r, err := NewRepository(ctx, reg.repository(t), opts)
	if err != nil {
		t.Fatalf("NewRepository: %v", err)
	}
	return r
}

func basicHeader(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

// schemeRecorder records the scheme of every request reaching the network.
type schemeRecorder struct {
	inner   http.RoundTripper
	mu      sync.Mutex
	schemes []string
}

func (s *schemeRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	s.mu.Lock()
	s.schemes = append(s.schemes, req.URL.Scheme)
	s.mu.Unlock()
	return s.inner.RoundTrip(req)
}
