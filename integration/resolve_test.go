package integration

// End-to-end tests of manifest.Resolve and fetch against docker-registry.

import (
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/imgfs/imgfs/fetch"
	"github.com/imgfs/imgfs/image"
	"github.com/imgfs/imgfs/manifest"
)

// testRetry keeps failing cases fast: a wrong password must not be retried
// for long.
var testRetry = fetch.RetryPolicy{MaxAttempts: 3, MaxElapsed: 10 * time.Second, BaseDelay: 20 * time.Millisecond, MaxDelay: 200 * time.Millisecond}

// resolveOptions are image Options for a registry on 127.0.0.1 whose
// platform choice does not depend on the host or the environment.
func resolveOptions(ref, platform string, keychain authn.Keychain) resolveArgs {
	want, from := LinuxAMD64, "test"
	if platform != "" {
		p, err := manifest.ParsePlatform(platform)
		if err != nil {
			panic(err) // a test's own constant
		}
		want, from = p, "--platform"
	}
	return resolveArgs{ref: ref, opts: image.Options{
		Platform:     want,
		PlatformFrom: from,
		Registry:     fetch.Options{PlainHTTP: true, Keychain: keychain, Retry: testRetry},
	}}
}

type resolveArgs struct {
	ref  string
	opts image.Options
}

func resolve(t *testing.T, args resolveArgs) (*manifest.Image, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return image.Resolve(ctx, args.ref, args.opts)
}

// mixedFormatImage has one layer of each format imgfs detects from the manifest.
func mixedFormatImage(t testing.TB, kind ManifestKind) *BuiltImage {
	t.Helper()
	var layers []*BuiltLayer
	for i, c := range []Compression{Gzip, Uncompressed, Zstd, Estargz} {
		layers = append(layers, MustLayer(t, LayerSpec{Compression: c, Entries: []Entry{
			Dir("data"), File("data/"+string(c), strings.Repeat(string(c), 100+i)),
		}}))
	}
	return MustImage(t, ImageSpec{
		Kind: kind,
		Config: ocispec.ImageConfig{
			Env:        []string{"PATH=/usr/local/bin:/usr/bin", "LANG=C.UTF-8"},
			Entrypoint: []string{"/entry", "--serve"},
			Cmd:        []string{"default-arg"},
			Labels:     map[string]string{"org.opencontainers.image.title": "mixed", "maintainer": "imgfs"},
			WorkingDir: "/work",
			User:       "1000:1000",
		},
		Layers: layers,
	})
}

var wantFormats = []manifest.Format{manifest.FormatGzip, manifest.FormatTar, manifest.FormatZstd, manifest.FormatEstargz}

// assertResolved compares a resolved image with what was pushed.
func assertResolved(t *testing.T, got *manifest.Image, want *BuiltImage) {
	t.Helper()
	if got.Digest != want.Digest || got.MediaType != want.MediaType || got.ConfigDigest != want.ConfigDigest {
		t.Errorf("resolved %s %s config %s; want %s %s config %s",
			got.Digest, got.MediaType, got.ConfigDigest, want.Digest, want.MediaType, want.ConfigDigest)
	}
	if got.Platform.OS != want.Platform.OS || got.Platform.Architecture != want.Platform.Architecture ||
		got.Platform.Variant != want.Platform.Variant {
		t.Errorf("platform %+v, want %+v", got.Platform, want.Platform)
	}
	if len(got.Layers) != len(want.Layers) {
		t.Fatalf("%d layers, want %d", len(got.Layers), len(want.Layers))
	}
	for i, l := range got.Layers {
		w := want.Layers[i]
		if l.Digest != w.Digest || l.Size != int64(len(w.Blob)) || l.MediaType != w.MediaTypeFor(want.Kind) || l.DiffID != w.DiffID {
			t.Errorf("layer %d: %+v; want %s size %d %s diffID %s", i, l, w.Digest, len(w.Blob), w.MediaTypeFor(want.Kind), w.DiffID)
		}
	}
}

func TestResolveAnonymous(t *testing.T) {
	reg := StartRegistry(t, RegistryOptions{})
	for _, kind := range []ManifestKind{OCI, DockerSchema2} {
		img := mixedFormatImage(t, kind)
		reg.PushImage(t, "app/mixed", kind.String(), img)
		got, err := resolve(t, resolveOptions(reg.Ref("app/mixed", kind.String()), "", nil))
		if err != nil {
			t.Fatalf("%s: resolve: %v", kind, err)
		}
		assertResolved(t, got, img)
		var formats []manifest.Format
		for _, l := range got.Layers {
			formats = append(formats, l.Format)
		}
		if !slices.Equal(formats, wantFormats) {
			t.Errorf("%s: formats %v, want %v", kind, formats, wantFormats)
		}
		cfg := got.Config.Config
		if !slices.Equal(cfg.Env, []string{"PATH=/usr/local/bin:/usr/bin", "LANG=C.UTF-8"}) ||
			!slices.Equal(cfg.Entrypoint, []string{"/entry", "--serve"}) || !slices.Equal(cfg.Cmd, []string{"default-arg"}) ||
			cfg.Labels["maintainer"] != "imgfs" || cfg.WorkingDir != "/work" || cfg.User != "1000:1000" {
			t.Errorf("%s: config %+v", kind, cfg)
		}
		if got.Registry != reg.Host || got.Repository != "app/mixed" || got.Tag != kind.String() {
			t.Errorf("%s: reference parts %q %q %q", kind, got.Registry, got.Repository, got.Tag)
		}
		if got.Size() != int64(len(img.Config))+sumBlobSizes(img) {
			t.Errorf("%s: size %d", kind, got.Size())
		}

		byDigest, err := resolve(t, resolveOptions(reg.Ref("app/mixed", img.Digest.String()), "", nil))
		if err != nil || byDigest.Digest != img.Digest {
			t.Errorf("%s: resolve by digest: %v", kind, err)
		}
	}
}

func sumBlobSizes(img *BuiltImage) int64 {
	var n int64
	for _, l := range img.Layers {
		n += int64(len(l.Blob))
	}
	return n
}

// TestResolveHtpasswd covers each way of passing Basic credentials, and
// that wrong or missing ones give a clear unauthorized error.
func TestResolveHtpasswd(t *testing.T) {
	reg := StartRegistry(t, RegistryOptions{Auth: AuthHtpasswd})
	img := smallImage(t, OCI)
	ref := reg.Ref("private/app", "v1")
	reg.PushImage(t, "private/app", "v1", img)
	isolateCredentialEnv(t)

	t.Run("keychain", func(t *testing.T) {
		got, err := resolve(t, resolveOptions(ref, "", reg.Keychain()))
		if err != nil {
			t.Fatal(err)
		}
		assertResolved(t, got, img)
	})
	t.Run("env", func(t *testing.T) {
		t.Setenv("IMGFS_USERNAME", reg.Username)
		t.Setenv("IMGFS_PASSWORD", reg.Password)
		got, err := resolve(t, resolveOptions(ref, "", nil))
		if err != nil {
			t.Fatal(err)
		}
		assertResolved(t, got, img)
	})
	t.Run("docker-config", func(t *testing.T) {
		t.Setenv("DOCKER_CONFIG", reg.WriteDockerConfig(t, reg.Username, reg.Password))
		got, err := resolve(t, resolveOptions(ref, "", nil))
		if err != nil {
			t.Fatal(err)
		}
		assertResolved(t, got, img)
	})
	t.Run("wrong-password", func(t *testing.T) {
		const wrong = "not-the-Password-42"
		_, err := resolve(t, resolveOptions(ref, "", StaticKeychain{Host: reg.Host, Auth: &authn.Basic{Username: reg.Username, Password: wrong}}))
		assertUnauthorized(t, err, wrong)
	})
	t.Run("anonymous", func(t *testing.T) {
		_, err := resolve(t, resolveOptions(ref, "", StaticKeychain{Host: reg.Host, Auth: authn.Anonymous}))
		assertUnauthorized(t, err, "")
	})
}

// isolateCredentialEnv clears every variable imgfs reads credentials from,
// and points HOME at an empty directory, so only what a test sets counts.
func isolateCredentialEnv(t *testing.T) {
	t.Helper()
	t.Setenv("HOME", t.TempDir())
	for _, v := range []string{"DOCKER_CONFIG", "REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR", "XDG_CONFIG_HOME",
		"IMGFS_USERNAME", "IMGFS_PASSWORD", "APPTAINER_DOCKER_USERNAME", "APPTAINER_DOCKER_PASSWORD",
		"SINGULARITY_DOCKER_USERNAME", "SINGULARITY_DOCKER_PASSWORD"} {
		t.Setenv(v, "")
	}
}

func assertUnauthorized(t *testing.T, err error, secret string) {
	t.Helper()
	if err == nil {
		t.Fatal("resolve succeeded without valid credentials")
	}
	if !errors.Is(err, fetch.ErrUnauthorized) {
		t.Errorf("error does not wrap fetch.ErrUnauthorized: %v", err)
	}
	if secret != "" && strings.Contains(err.Error(), secret) {
		t.Errorf("error leaks the password: %v", err)
	}
}

// TestResolveTokenRenewal resolves, waits until the token has expired at the
// registry, then reads a layer through the same client: it must fetch a new
// token rather than fail.
func TestResolveTokenRenewal(t *testing.T) {
	const lifetime = 2 * time.Second
	reg := StartRegistry(t, RegistryOptions{Auth: AuthToken, Token: TokenServerOptions{Lifetime: lifetime}})
	img := smallImage(t, DockerSchema2)
	reg.PushImage(t, "token/app", "v1", img)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	repoName, err := name.NewRepository(reg.Host+"/token/app", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	before := reg.Tokens.Issued()
	repo, err := fetch.NewRepository(ctx, repoName, fetch.Options{PlainHTTP: true, Keychain: reg.Keychain(), Retry: testRetry})
	if err != nil {
		t.Fatalf("new repository: %v", err)
	}
	ref, err := manifest.ParseReference(reg.Ref("token/app", "v1"), name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	got, err := manifest.Resolve(ctx, repo, ref, manifest.Options{Platform: LinuxAMD64, PlatformFrom: "test"})
	if err != nil {
		t.Fatalf("resolve: %v", err)
	}
	assertResolved(t, got, img)
	afterResolve := reg.Tokens.Issued()

	time.Sleep(lifetime + 1200*time.Millisecond) // exp has whole-second precision
	layer := img.Layers[0]
	blob, err := repo.OpenBlob(ctx, layer.Digest, int64(len(layer.Blob)))
	if err != nil {
		t.Fatalf("open blob after token expiry: %v", err)
	}
	buf := make([]byte, len(layer.Blob))
	if _, err := blob.ReadAt(ctx, buf, 0); err != nil && !errors.Is(err, io.EOF) {
		t.Fatalf("read blob after token expiry: %v", err)
	}
	if string(buf) != string(layer.Blob) {
		t.Fatal("blob bytes differ")
	}
	if n := reg.Tokens.Issued(); n <= afterResolve || n-before < 2 {
		t.Errorf("tokens issued: %d before, %d after resolve, %d after the late read; want a renewal", before, afterResolve, n)
	}

	t.Run("wrong-password", func(t *testing.T) {
		const wrong = "token-Wrong-pw"
		_, err := resolve(t, resolveOptions(reg.Ref("token/app", "v1"), "",
			StaticKeychain{Host: reg.Host, Auth: &authn.Basic{Username: reg.Username, Password: wrong}}))
		assertUnauthorized(t, err, wrong)
	})
}

// TestResolvePlatforms selects each platform of an OCI index and of a
// Docker manifest list, and checks the no-match error.
func TestResolvePlatforms(t *testing.T) {
	reg := StartRegistry(t, RegistryOptions{})
	for _, kind := range []ManifestKind{OCI, DockerSchema2} {
		idx := multiPlatformIndex(t, kind)
		ref := reg.Ref("multi/app", kind.String())
		reg.PushIndex(t, "multi/app", kind.String(), idx)
		for _, want := range idx.Images {
			p := platformString(want.Platform)
			got, err := resolve(t, resolveOptions(ref, p, nil))
			if err != nil {
				t.Fatalf("%s %s: %v", kind, p, err)
			}
			assertResolved(t, got, want)
			if got.IndexDigest != idx.Digest || got.IndexMediaType != idx.MediaType || len(got.Platforms) != 3 {
				t.Errorf("%s %s: index %s %s platforms %v", kind, p, got.IndexDigest, got.IndexMediaType, got.Platforms)
			}
			if !slices.Equal(got.Config.Config.Env, []string{"ARCH=" + p}) {
				t.Errorf("%s %s: env %v", kind, p, got.Config.Config.Env)
			}
		}
		_, err := resolve(t, resolveOptions(ref, "linux/s390x", nil))
		if err == nil {
			t.Fatalf("%s: linux/s390x resolved", kind)
		}
		for _, p := range []string{"linux/amd64", "linux/arm64", "linux/arm/v7"} {
			if !strings.Contains(err.Error(), p) {
				t.Errorf("%s: no-match error does not list %s: %v", kind, p, err)
			}
		}
	}
}
