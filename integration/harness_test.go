package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// smallImage is a two-layer gzip image with a recognisable config.
func smallImage(t testing.TB, kind ManifestKind) *BuiltImage {
	t.Helper()
	base := MustLayer(t, LayerSpec{Entries: []Entry{
		Dir("etc"), File("etc/hostname", "imgfs\n"), Dir("bin"), File("bin/tool", "#!/bin/sh\necho hi\n"),
	}})
	top := MustLayer(t, LayerSpec{Entries: []Entry{File("etc/motd", "hello from the top layer\n")}})
	return MustImage(t, ImageSpec{
		Kind: kind,
		Config: ocispec.ImageConfig{
			Env:        []string{"PATH=/usr/bin:/bin", "GREETING=hello world"},
			Entrypoint: []string{"/bin/tool"},
			Cmd:        []string{"--flag"},
			Labels:     map[string]string{"org.example.name": "small"},
		},
		Layers: []*BuiltLayer{base, top},
	})
}

func ggcrOptions(ctx context.Context, auth authn.Authenticator) []remote.Option {
	return []remote.Option{remote.WithContext(ctx), remote.WithAuth(auth)}
}

// assertPulledImage pulls ref with go-containerregistry and compares every
// byte with what was built.
func assertPulledImage(t *testing.T, ref string, auth authn.Authenticator, want *BuiltImage) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(r, ggcrOptions(ctx, auth)...)
	if err != nil {
		t.Fatalf("pull %s: %v", ref, err)
	}
	raw, err := img.RawManifest()
	if err != nil || !bytes.Equal(raw, want.Manifest) {
		t.Fatalf("manifest differs (err %v):\n got %s\nwant %s", err, raw, want.Manifest)
	}
	if mt, _ := img.MediaType(); string(mt) != want.MediaType {
		t.Errorf("media type %q, want %q", mt, want.MediaType)
	}
	cfg, err := img.RawConfigFile()
	if err != nil || !bytes.Equal(cfg, want.Config) {
		t.Fatalf("config differs (err %v)", err)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != len(want.Layers) {
		t.Fatalf("layers: %d, err %v; want %d", len(layers), err, len(want.Layers))
	}
	for i, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			t.Fatalf("layer %d: %v", i, err)
		}
		blob, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(blob, want.Layers[i].Blob) {
			t.Fatalf("layer %d blob differs (err %v)", i, err)
		}
	}
}

func TestHarnessPushPullAnonymous(t *testing.T) {
	reg := StartRegistry(t, RegistryOptions{})
	for _, kind := range []ManifestKind{OCI, DockerSchema2} {
		img := smallImage(t, kind)
		byDigest := reg.PushImage(t, "harness/anon", kind.String(), img)
		assertPulledImage(t, reg.Ref("harness/anon", kind.String()), authn.Anonymous, img)
		assertPulledImage(t, byDigest, authn.Anonymous, img)
	}
}

func TestHarnessPushPullHtpasswd(t *testing.T) {
	reg := StartRegistry(t, RegistryOptions{Auth: AuthHtpasswd})
	img := smallImage(t, OCI)
	reg.PushImage(t, "harness/basic", "v1", img)
	assertPulledImage(t, reg.Ref("harness/basic", "v1"), reg.Authenticator(), img)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ref, _ := name.ParseReference(reg.Ref("harness/basic", "v1"), name.Insecure)
	for _, auth := range []authn.Authenticator{
		authn.Anonymous,
		&authn.Basic{Username: reg.Username, Password: "wrong"},
	} {
		if _, err := remote.Image(ref, ggcrOptions(ctx, auth)...); !isUnauthorized(err) {
			t.Errorf("pull with %T: got %v, want 401", auth, err)
		}
	}
}

func TestHarnessPushPullToken(t *testing.T) {
	reg := StartRegistry(t, RegistryOptions{Auth: AuthToken})
	img := smallImage(t, DockerSchema2)
	reg.PushImage(t, "harness/token", "v1", img)
	issuedAfterPush := reg.Tokens.Issued()
	if issuedAfterPush == 0 {
		t.Fatal("push went through without a token")
	}
	assertPulledImage(t, reg.Ref("harness/token", "v1"), reg.Authenticator(), img)
	if reg.Tokens.Issued() <= issuedAfterPush {
		t.Errorf("pull issued no token (%d before, %d after)", issuedAfterPush, reg.Tokens.Issued())
	}
	for _, r := range reg.Tokens.Requests() {
		if r.Granted && r.Username != reg.Username {
			t.Errorf("token granted to %q", r.Username)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ref, _ := name.ParseReference(reg.Ref("harness/token", "v1"), name.Insecure)
	for _, auth := range []authn.Authenticator{
		authn.Anonymous,
		&authn.Basic{Username: reg.Username, Password: "wrong"},
	} {
		if _, err := remote.Image(ref, ggcrOptions(ctx, auth)...); err == nil {
			t.Errorf("pull with %v credentials succeeded", auth)
		}
	}
	reg.Tokens.SetDenied(true)
	if _, err := remote.Image(ref, ggcrOptions(ctx, reg.Authenticator())...); err == nil {
		t.Error("pull succeeded while the token server denies")
	}
	reg.Tokens.SetDenied(false)
	assertPulledImage(t, reg.Ref("harness/token", "v1"), reg.Authenticator(), img)
}

func TestHarnessTokenAnonymousPullOnly(t *testing.T) {
	reg := StartRegistry(t, RegistryOptions{Auth: AuthToken, Token: TokenServerOptions{
		Username: "pusher", Password: "pw", Anonymous: true,
	}})
	img := smallImage(t, OCI)
	reg.PushImage(t, "harness/public", "v1", img)
	assertPulledImage(t, reg.Ref("harness/public", "v1"), authn.Anonymous, img)
	err := PushImage(context.Background(), Target{Host: reg.Host}, "harness/public", "anon", img)
	if err == nil {
		t.Fatal("anonymous push succeeded with a pull-only token")
	}
}

// TestHarnessTokenExpiry proves a short-lived token really stops working:
// the token server compensates the registry's 60 s leeway.
func TestHarnessTokenExpiry(t *testing.T) {
	const lifetime = 2 * time.Second
	reg := StartRegistry(t, RegistryOptions{Auth: AuthToken, Token: TokenServerOptions{Lifetime: lifetime}})
	img := smallImage(t, OCI)
	reg.PushImage(t, "harness/expiry", "v1", img)

	token := fetchToken(t, reg, "repository:harness/expiry:pull")
	issued := time.Now()
	manifestStatus := func() int {
		resp, err := reg.Get(context.Background(), "/v2/harness/expiry/manifests/v1", http.Header{
			"Authorization": {"Bearer " + token},
			"Accept":        {ocispec.MediaTypeImageManifest},
		})
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		return resp.StatusCode
	}
	if got := manifestStatus(); got != http.StatusOK {
		t.Fatalf("fresh token: HTTP %d, want 200\n%s", got, tailFile(reg.LogPath, 5))
	}
	// exp has whole-second precision: wait out the lifetime plus one second.
	time.Sleep(time.Until(issued.Add(lifetime + time.Second + 100*time.Millisecond)))
	if got := manifestStatus(); got != http.StatusUnauthorized {
		t.Fatalf("token older than its %s lifetime: HTTP %d, want 401", lifetime, got)
	}
}

// fetchToken asks the registry's token server directly, as a client would.
func fetchToken(t *testing.T, reg *Registry, scope string) string {
	t.Helper()
	q := url.Values{"service": {reg.Tokens.Service}, "scope": {scope}}
	req, _ := http.NewRequest(http.MethodGet, reg.Tokens.Realm+"?"+q.Encode(), nil)
	req.SetBasicAuth(reg.Username, reg.Password)
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
		IssuedAt    string `json:"issued_at"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("token request: HTTP %d, %v", resp.StatusCode, err)
	}
	if body.Token == "" || body.Token != body.AccessToken || body.ExpiresIn <= 0 || body.IssuedAt == "" {
		t.Fatalf("token response incomplete: %+v", body)
	}
	return body.Token
}

func TestHarnessIndexes(t *testing.T) {
	reg := StartRegistry(t, RegistryOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, kind := range []ManifestKind{OCI, DockerSchema2} {
		idx := multiPlatformIndex(t, kind)
		reg.PushIndex(t, "harness/multi", kind.String(), idx)
		ref, _ := name.ParseReference(reg.Ref("harness/multi", kind.String()), name.Insecure)
		got, err := remote.Index(ref, ggcrOptions(ctx, authn.Anonymous)...)
		if err != nil {
			t.Fatalf("%s: pull index: %v", kind, err)
		}
		raw, _ := got.RawManifest()
		if !bytes.Equal(raw, idx.Manifest) {
			t.Fatalf("%s: index bytes differ", kind)
		}
		im, err := got.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		var platforms []string
		for _, m := range im.Manifests {
			platforms = append(platforms, m.Platform.String())
		}
		if want := []string{"linux/amd64", "linux/arm64", "linux/arm/v7"}; !slices.Equal(platforms, want) {
			t.Errorf("%s: platforms %v, want %v", kind, platforms, want)
		}
		for _, img := range idx.Images {
			assertPulledImage(t, reg.Ref("harness/multi", img.Digest.String()), authn.Anonymous, img)
		}
	}
}

// multiPlatformIndex builds linux/amd64, linux/arm64 and linux/arm/v7
// images, each with a file naming its platform and an ARCH env entry.
func multiPlatformIndex(t testing.TB, kind ManifestKind) *BuiltIndex {
	t.Helper()
	var images []*BuiltImage
	for _, p := range []ocispec.Platform{LinuxAMD64, LinuxARM64, LinuxARMv7} {
		label := platformString(p)
		layer := MustLayer(t, LayerSpec{Entries: []Entry{File("platform", label+"\n")}})
		images = append(images, MustImage(t, ImageSpec{
			Kind:     kind,
			Platform: p,
			Config: ocispec.ImageConfig{
				Env:    []string{"ARCH=" + label},
				Labels: map[string]string{"platform": label},
			},
			Layers: []*BuiltLayer{layer},
		}))
	}
	return MustIndex(t, kind, images...)
}

func platformString(p ocispec.Platform) string {
	return strings.Join(slices.DeleteFunc([]string{p.OS, p.Architecture, p.Variant}, func(s string) bool { return s == "" }), "/")
}

// isUnauthorized reports whether go-containerregistry saw an HTTP 401.
func isUnauthorized(err error) bool {
	var terr *transport.Error
	return errors.As(err, &terr) && terr.StatusCode == http.StatusUnauthorized
}
