package integration

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base32"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// RegistryTokenLeeway is the clock skew distribution 2.8 adds to a token's
// exp (and subtracts from nbf) before rejecting it: Leeway in
// github.com/docker/distribution/registry/auth/token/token.go. The token
// server subtracts it from exp so a token's Lifetime is what the registry
// really accepts.
const RegistryTokenLeeway = 60 * time.Second

// DefaultTokenLifetime is used when TokenServerOptions.Lifetime is zero.
const DefaultTokenLifetime = 5 * time.Minute

// TokenServerOptions configure StartTokenServer.
type TokenServerOptions struct {
	// Username and Password, when set, are required (HTTP Basic on GET, or
	// the OAuth2 password grant on POST); wrong ones get a 401.
	Username, Password string
	// Anonymous allows requests without credentials; they get pull access
	// only. With no Username set, every request is anonymous.
	Anonymous bool
	// Lifetime is how long the registry accepts a token (whole seconds,
	// at least 1s). Zero: DefaultTokenLifetime.
	Lifetime time.Duration
	Service  string // audience; default "imgfs-test-registry"
	Issuer   string // default "imgfs-test-token-issuer"
}

// TokenRequest records one request to the token server (never the password).
type TokenRequest struct {
	Method   string
	Username string   // presented user name, "" if none
	Scopes   []string // requested scopes as sent
	Granted  bool
}

// TokenServer implements the Docker registry token protocol
// (https://distribution.github.io/distribution/spec/auth/token/) on
// 127.0.0.1, issuing ES256 JWTs that docker-registry verifies against
// CertPath.
type TokenServer struct {
	Realm    string // token endpoint URL (http://localhost:PORT/token), the realm of the registry's challenge
	Service  string
	Issuer   string
	CertPath string // PEM certificate bundle for the registry's rootcertbundle
	KeyID    string // libtrust key ID of the signing key, sent as the JWT "kid"

	opts     TokenServerOptions
	key      *ecdsa.PrivateKey
	lifetime atomic.Int64 // seconds
	issued   atomic.Int64
	denied   atomic.Bool

	mu       sync.Mutex
	requests []TokenRequest
}

// StartTokenServer starts a token server that lives until the test ends.
func StartTokenServer(t testing.TB, opts TokenServerOptions) *TokenServer {
	t.Helper()
	if opts.Service == "" {
		opts.Service = "imgfs-test-registry"
	}
	if opts.Issuer == "" {
		opts.Issuer = "imgfs-test-token-issuer"
	}
	if opts.Username == "" {
		opts.Anonymous = true
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("token server key: %v", err)
	}
	keyID, err := LibtrustKeyID(&key.PublicKey)
	if err != nil {
		t.Fatalf("token server key ID: %v", err)
	}
	certPath := filepath.Join(t.TempDir(), "token-root.pem")
	if err := writeSelfSignedCert(certPath, key, opts.Issuer); err != nil {
		t.Fatalf("token server certificate: %v", err)
	}
	s := &TokenServer{
		Service:  opts.Service,
		Issuer:   opts.Issuer,
		CertPath: certPath,
		KeyID:    keyID,
		opts:     opts,
		key:      key,
	}
	lifetime := opts.Lifetime
	if lifetime == 0 {
		lifetime = DefaultTokenLifetime
	}
	s.SetLifetime(lifetime)
	srv := httptest.NewServer(http.HandlerFunc(s.serveToken))
	t.Cleanup(srv.Close)
	// The realm names "localhost", not 127.0.0.1: go-containerregistry
	// (v0.22+) refuses token realms on loopback/private IP literals unless
	// they are the registry's own host:port (SSRF guard), and imgfs uses it.
	s.Realm = "http://localhost:" + strconv.Itoa(srv.Listener.Addr().(*net.TCPAddr).Port) + "/token"
	return s
}

// LibtrustKeyID is the key ID libtrust (and so distribution) derives from a
// public key: sha256 of the DER SubjectPublicKeyInfo, first 240 bits,
// base32 without padding, in 12 groups of 4 joined by ':'.
func LibtrustKeyID(pub any) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("marshal public key: %w", err)
	}
	sum := sha256.Sum256(der)
	s := strings.TrimRight(base32.StdEncoding.EncodeToString(sum[:30]), "=")
	groups := make([]string, 0, len(s)/4)
	for i := 0; i < len(s); i += 4 {
		groups = append(groups, s[i:i+4])
	}
	return strings.Join(groups, ":"), nil
}

func writeSelfSignedCert(path string, key *ecdsa.PrivateKey, commonName string) error {
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(now.UnixNano()),
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(48 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("create certificate: %w", err)
	}
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

// Issued counts the tokens issued so far.
func (s *TokenServer) Issued() int64 { return s.issued.Load() }

// SetDenied makes every later token request fail with 401 (true) or be
// served normally again (false).
func (s *TokenServer) SetDenied(denied bool) { s.denied.Store(denied) }

// SetLifetime changes the lifetime of tokens issued from now on.
func (s *TokenServer) SetLifetime(d time.Duration) {
	secs := int64((d + time.Second - 1) / time.Second)
	if secs < 1 {
		secs = 1
	}
	s.lifetime.Store(secs)
}

// Lifetime is the validity of newly issued tokens at the registry.
func (s *TokenServer) Lifetime() time.Duration {
	return time.Duration(s.lifetime.Load()) * time.Second
}

// Requests returns a copy of the requests seen so far.
func (s *TokenServer) Requests() []TokenRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]TokenRequest(nil), s.requests...)
}

func (s *TokenServer) record(r TokenRequest) {
	s.mu.Lock()
	s.requests = append(s.requests, r)
	s.mu.Unlock()
}

// serveToken answers GET realm?service=&scope= (Basic credentials optional)
// and the OAuth2 POST form (grant_type=password).
func (s *TokenServer) serveToken(w http.ResponseWriter, r *http.Request) {
	var (
		user, pass string
		hasCreds   bool
		scopes     []string
		service    string
	)
	switch r.Method {
	case http.MethodGet:
		user, pass, hasCreds = r.BasicAuth()
		scopes = splitScopes(r.URL.Query()["scope"])
		service = r.URL.Query().Get("service")
	case http.MethodPost:
		if err := r.ParseForm(); err != nil {
			tokenError(w, http.StatusBadRequest, "bad form")
			return
		}
		if gt := r.PostForm.Get("grant_type"); gt != "password" {
			tokenError(w, http.StatusBadRequest, fmt.Sprintf("unsupported grant_type %q", gt))
			return
		}
		user, pass = r.PostForm.Get("username"), r.PostForm.Get("password")
		hasCreds = user != "" || pass != ""
		scopes = splitScopes(r.PostForm["scope"])
		service = r.PostForm.Get("service")
	default:
		tokenError(w, http.StatusMethodNotAllowed, "GET or POST")
		return
	}
	req := TokenRequest{Method: r.Method, Username: user, Scopes: scopes}
	defer func() { s.record(req) }()

	if service != "" && service != s.Service {
		tokenError(w, http.StatusBadRequest, fmt.Sprintf("unknown service %q", service))
		return
	}
	if s.denied.Load() {
		tokenError(w, http.StatusUnauthorized, "access denied by the test token server")
		return
	}
	authenticated := false
	switch {
	case hasCreds && s.opts.Username != "" && user == s.opts.Username && pass == s.opts.Password:
		authenticated = true
	case hasCreds && s.opts.Username != "":
		tokenError(w, http.StatusUnauthorized, "incorrect username or password")
		return
	case !s.opts.Anonymous:
		tokenError(w, http.StatusUnauthorized, "authentication required")
		return
	}

	access := grantAccess(scopes, authenticated)
	token, issuedAt, err := s.sign(user, access)
	if err != nil {
		tokenError(w, http.StatusInternalServerError, err.Error())
		return
	}
	s.issued.Add(1)
	req.Granted = true
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"token":        token,
		"access_token": token,
		"expires_in":   s.lifetime.Load(),
		"issued_at":    issuedAt.UTC().Format(time.RFC3339),
	})
}

// resourceAccess is one entry of the JWT "access" claim.
type resourceAccess struct {
	Type    string   `json:"type"`
	Name    string   `json:"name"`
	Actions []string `json:"actions"`
}

// grantAccess gives authenticated users every action they ask for, and
// anonymous ones pull only.
func grantAccess(scopes []string, authenticated bool) []resourceAccess {
	access := []resourceAccess{}
	for _, scope := range scopes {
		first, last := strings.Index(scope, ":"), strings.LastIndex(scope, ":")
		if first < 0 || first == last {
			continue
		}
		typ, name := scope[:first], scope[first+1:last]
		var actions []string
		for _, action := range strings.Split(scope[last+1:], ",") {
			if authenticated || action == "pull" {
				actions = append(actions, action)
			}
		}
		access = append(access, resourceAccess{Type: typ, Name: name, Actions: actions})
	}
	return access
}

// splitScopes accepts repeated scope parameters and space-separated lists.
func splitScopes(values []string) []string {
	var scopes []string
	for _, v := range values {
		scopes = append(scopes, strings.Fields(v)...)
	}
	return scopes
}

// sign makes a JWT the registry accepts for exactly Lifetime (to the second).
func (s *TokenServer) sign(subject string, access []resourceAccess) (string, time.Time, error) {
	now := time.Now()
	claims := jwt.MapClaims{
		"iss":    s.Issuer,
		"sub":    subject,
		"aud":    s.Service, // a string: distribution's ClaimSet does not take an array
		"iat":    now.Unix(),
		"nbf":    now.Unix(),
		"exp":    now.Unix() - int64(RegistryTokenLeeway/time.Second) + s.lifetime.Load(),
		"jti":    fmt.Sprintf("imgfs-%d-%d", now.UnixNano(), s.issued.Load()),
		"access": access,
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, claims)
	tok.Header["kid"] = s.KeyID
	signed, err := tok.SignedString(s.key)
	if err != nil {
		return "", now, fmt.Errorf("sign token: %w", err)
	}
	return signed, now, nil
}

func tokenError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"details": msg,
		"errors":  []map[string]string{{"code": "UNAUTHORIZED", "message": msg}},
	})
}
