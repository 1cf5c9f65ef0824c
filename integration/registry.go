package integration

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
)

// AuthMode selects how the test registry authenticates clients.
type AuthMode int

const (
	AuthNone     AuthMode = iota // anonymous pull and push
	AuthHtpasswd                 // HTTP Basic against an htpasswd file (bcrypt)
	AuthToken                    // Docker token auth, tokens from a TokenServer
)

func (m AuthMode) String() string {
	switch m {
	case AuthNone:
		return "none"
	case AuthHtpasswd:
		return "htpasswd"
	case AuthToken:
		return "token"
	default:
		return fmt.Sprintf("AuthMode(%d)", int(m))
	}
}

// Default credentials of an authenticated test registry.
const (
	DefaultUsername = "imgfs"
	DefaultPassword = "s3cret-Pa55"
)

// RegistryOptions configure StartRegistry.
type RegistryOptions struct {
	Auth AuthMode
	// Username and Password are the one account of an htpasswd registry, and
	// the credentials the token server requires. Empty: DefaultUsername and
	// DefaultPassword. For AuthToken, Token.Username/Password win when set,
	// and Token.Anonymous without Token.Username makes an anonymous-only server.
	Username, Password string
	// Token configures the token server started for AuthToken.
	Token TokenServerOptions
	// ProxyRemoteURL, when set, runs the registry as a pull-through cache
	// of that registry (docker-registry's proxy mode: read-only, every
	// blob and manifest fetched from upstream once, then served locally).
	ProxyRemoteURL string
}

// Registry is a running docker-registry on 127.0.0.1.
type Registry struct {
	Host     string // 127.0.0.1:PORT, the registry part of references
	URL      string // http://127.0.0.1:PORT
	Dir      string // storage root
	LogPath  string // registry stdout+stderr, printed when the test fails
	Auth     AuthMode
	Username string       // "" for AuthNone
	Password string       // "" for AuthNone
	Tokens   *TokenServer // set for AuthToken
}

// registryStartTimeout bounds the wait for /v2/ to answer.
const registryStartTimeout = 15 * time.Second

// StartRegistry runs docker-registry with filesystem storage in a temporary
// directory, deletes enabled, on a free port of 127.0.0.1, and waits until
// /v2/ answers. The process is killed when the test ends; its log is shown
// if the test failed. A missing binary skips the test (fails it in CI).
func StartRegistry(t testing.TB, opts RegistryOptions) *Registry {
	t.Helper()
	bin := RequireTool(t, "docker-registry")
	if opts.Auth != AuthNone {
		if opts.Username == "" {
			opts.Username = DefaultUsername
		}
		if opts.Password == "" {
			opts.Password = DefaultPassword
		}
	}
	dir := t.TempDir()
	r := &Registry{
		Dir:      filepath.Join(dir, "storage"),
		LogPath:  filepath.Join(dir, "registry.log"),
		Auth:     opts.Auth,
		Username: opts.Username,
		Password: opts.Password,
	}
	authYAML, err := r.prepareAuth(t, dir, opts)
	if err != nil {
		t.Fatalf("registry auth setup: %v", err)
	}
	// A port picked free may be taken before the registry binds it: retry.
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := FreePort()
		if err != nil {
			t.Fatalf("find a free port: %v", err)
		}
		r.Host = fmt.Sprintf("127.0.0.1:%d", port)
		r.URL = "http://" + r.Host
		configPath := filepath.Join(dir, "config.yml")
		config := registryConfig(r.Host, r.Dir, authYAML)
		if opts.ProxyRemoteURL != "" {
			config += fmt.Sprintf("proxy:\n  remoteurl: %s\n", opts.ProxyRemoteURL)
		}
		if err := os.WriteFile(configPath, []byte(config), 0o600); err != nil {
			t.Fatalf("write registry config: %v", err)
		}
		if lastErr = r.run(t, bin, configPath); lastErr == nil {
			return r
		}
	}
	t.Fatalf("start docker-registry: %v\n%s", lastErr, tailFile(r.LogPath, 40))
	return nil
}

// prepareAuth writes what the auth mode needs and returns the auth: section.
func (r *Registry) prepareAuth(t testing.TB, dir string, opts RegistryOptions) (string, error) {
	switch opts.Auth {
	case AuthNone:
		return "", nil
	case AuthHtpasswd:
		path := filepath.Join(dir, "htpasswd")
		if err := WriteHtpasswd(t, path, map[string]string{opts.Username: opts.Password}); err != nil {
			return "", err
		}
		return fmt.Sprintf("auth:\n  htpasswd:\n    realm: imgfs-test\n    path: %s\n", path), nil
	case AuthToken:
		tokenOpts := opts.Token
		if !tokenOpts.Anonymous && tokenOpts.Username == "" {
			tokenOpts.Username, tokenOpts.Password = opts.Username, opts.Password
		}
		// The token server's account is the registry's ("" when anonymous only).
		r.Username, r.Password = tokenOpts.Username, tokenOpts.Password
		ts := StartTokenServer(t, tokenOpts)
		r.Tokens = ts
		return fmt.Sprintf("auth:\n  token:\n    realm: %s\n    service: %s\n    issuer: %s\n    rootcertbundle: %s\n",
			ts.Realm, ts.Service, ts.Issuer, ts.CertPath), nil
	default:
		return "", fmt.Errorf("unknown auth mode %v", opts.Auth)
	}
}

func registryConfig(addr, storage, authYAML string) string {
	return fmt.Sprintf(`version: 0.1
log:
  level: info
  formatter: text
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: %s
  secret: imgfs-integration-secret
%s`, storage, addr, authYAML)
}

// run starts the process and waits for /v2/; on failure the process is gone.
func (r *Registry) run(t testing.TB, bin, configPath string) error {
	logFile, err := os.OpenFile(r.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open registry log: %w", err)
	}
	cmd := exec.Command(bin, "serve", configPath)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("exec %s: %w", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait(); logFile.Close() }()

	if err := waitForV2(r.URL, exited); err != nil {
		stopProcess(cmd, exited)
		return err
	}
	t.Cleanup(func() {
		stopProcess(cmd, exited)
		if t.Failed() {
			t.Logf("docker-registry log (%s):\n%s", r.LogPath, tailFile(r.LogPath, 60))
		}
	})
	return nil
}

// waitForV2 polls /v2/ until the registry answers (200 or 401) or exits.
func waitForV2(baseURL string, exited <-chan error) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(registryStartTimeout)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			return fmt.Errorf("docker-registry exited during start-up: %v", err)
		default:
		}
		resp, err := client.Get(baseURL + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("docker-registry did not answer %s/v2/ within %s", baseURL, registryStartTimeout)
}

// stopProcess sends SIGTERM to the registry's process group, then SIGKILL.
func stopProcess(cmd *exec.Cmd, exited <-chan error) {
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(3 * time.Second):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	}
}

// FreePort is a TCP port on 127.0.0.1 that nothing listens on now.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// tailFile returns the last n lines of a file, or a note why it cannot.
func tailFile(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Ref returns "HOST/repo:tag", or "HOST/repo@digest" when ref is a digest.
func (r *Registry) Ref(repo, ref string) string {
	if strings.Contains(ref, ":") {
		return r.Host + "/" + repo + "@" + ref
	}
	return r.Host + "/" + repo + ":" + ref
}

// Authenticator returns the credentials that can push to and pull from the
// registry (anonymous for AuthNone, or a token server that allows it).
func (r *Registry) Authenticator() authn.Authenticator {
	if r.Username == "" {
		return authn.Anonymous
	}
	return &authn.Basic{Username: r.Username, Password: r.Password}
}

// Keychain returns a keychain that answers Authenticator for this registry
// and anonymous for any other.
func (r *Registry) Keychain() authn.Keychain {
	return StaticKeychain{Host: r.Host, Auth: r.Authenticator()}
}

// StaticKeychain resolves one registry host to fixed credentials.
type StaticKeychain struct {
	Host string
	Auth authn.Authenticator
}

func (k StaticKeychain) Resolve(res authn.Resource) (authn.Authenticator, error) {
	if res.RegistryStr() == k.Host {
		return k.Auth, nil
	}
	return authn.Anonymous, nil
}

// WriteDockerConfig writes DIR/config.json with an "auths" entry for the
// registry, for DOCKER_CONFIG=DIR. It returns DIR.
func (r *Registry) WriteDockerConfig(t testing.TB, username, password string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.json"), DockerConfigJSON(r.Host, username, password), 0o600); err != nil {
		t.Fatalf("write docker config: %v", err)
	}
	return dir
}

// Get issues a bounded GET to the registry with optional extra headers,
// for tests that probe raw behaviour.
func (r *Registry) Get(ctx context.Context, path string, header http.Header) (*http.Response, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.URL+path, nil)
	if err != nil {
		cancel()
		return nil, err
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("GET %s: %w", path, err)
	}
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

// cancelOnClose releases a request's timeout when its body is closed.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}
