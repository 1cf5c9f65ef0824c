package fetch

import (
	"context"
	"encoding/base64"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestSecretsNeverLogged drives every path that handles a credential with
// the logger at Debug and checks that none reaches the log.
func TestSecretsNeverLogged(t *testing.T) {
	for _, mode := range []string{"bearer", "basic"} {
		t.Run(mode, func(t *testing.T) {
			const user, pass = "dave", "s3cr3t-PASSWORD"
			reg := newFakeRegistry(t)
			storage := newFakeStorage(t, reg)
			reg.set(func(r *fakeRegistry) { r.authMode, r.user, r.pass = mode, user, pass })
			reg.addManifest("latest", ociManifest, []byte(`{}`))
			data := randomBytes(10_000, 20)
			d := reg.addBlob(data)
			opts, logs := testOptions(t)
			opts.Keychain = staticKeychain{user, pass}
			repo := openRepo(t, reg, opts)
			ctx := context.Background()

			if _, err := repo.Manifest(ctx, "latest", testAccept); err != nil {
				t.Fatal(err)
			}
			reg.expireTokens()
			if _, err := repo.FetchBlob(ctx, d, 1<<20); err != nil {
				t.Fatal(err)
			}
			reg.set(func(r *fakeRegistry) { r.redirectTo = storage })
			b, err := repo.OpenBlob(ctx, d, -1)
			if err != nil {
				t.Fatal(err)
			}
			mustReadAt(t, b, data, 0, 100)
			mustReadAt(t, b, data, 100, 100)

			out := logs.String()
			for _, secret := range []string{
				pass,
				base64.StdEncoding.EncodeToString([]byte(user + ":" + pass)),
				"tok-SECRET",
				"SIGSECRET",
			} {
				if strings.Contains(out, secret) {
					t.Errorf("log contains secret %q", secret)
				}
			}
			for _, want := range []string{
				"kind=manifest", "accept=\"" + strings.Join(testAccept, ", "), "status=200",
				"status=401", "challenge=", "REDACTED", "range=\"bytes=0-99\"", "location=",
				"Authorization: REDACTED",
			} {
				if !strings.Contains(out, want) {
					t.Errorf("log lacks %q", want)
				}
			}
			if mode == "bearer" {
				for _, want := range []string{"kind=token", `realm=http://`, "service=fake", `scope=repository:test/app:pull`} {
					if !strings.Contains(out, want) {
						t.Errorf("log lacks %q", want)
					}
				}
			}
		})
	}
}

// TestRangeReadsOnlyAtDebug: at Info the log has one line per registry call
// but none per range read.
func TestRangeReadsOnlyAtDebug(t *testing.T) {
	reg := newFakeRegistry(t)
	data := randomBytes(1000, 21)
	d := reg.addBlob(data)
	reg.addManifest("latest", ociManifest, []byte(`{}`))
	opts, _ := testOptions(t)
	logs := &lockedBuffer{}
	opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	repo := openRepo(t, reg, opts)
	ctx := context.Background()
	repo.Manifest(ctx, "latest", testAccept)
	b, err := repo.OpenBlob(ctx, d, -1)
	if err != nil {
		t.Fatal(err)
	}
	mustReadAt(t, b, data, 0, 10)
	out := logs.String()
	if strings.Contains(out, "Range") || strings.Contains(out, "range=") || strings.Contains(out, "headers") {
		t.Errorf("Info log has range reads or headers:\n%s", out)
	}
	for _, want := range []string{"kind=ping", "kind=manifest", "method=HEAD"} {
		if !strings.Contains(out, want) {
			t.Errorf("Info log lacks %q:\n%s", want, out)
		}
	}
}

func TestRedactURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"https://auth.example/token?scope=repository%3Aa%3Apull&service=reg", "https://auth.example/token?scope=repository%3Aa%3Apull&service=reg"},
		{"https://auth.example/token?password=p1&access_token=p2&refresh_token=p3&client_secret=p4&token=p5", "https://auth.example/token?access_token=REDACTED&client_secret=REDACTED&password=REDACTED&refresh_token=REDACTED&token=REDACTED"},
		{"https://s3.example/b?X-Amz-Credential=p1&X-Amz-Signature=p2&X-Amz-Security-Token=p3&x=1", "https://s3.example/b?X-Amz-Credential=REDACTED&X-Amz-Security-Token=REDACTED&X-Amz-Signature=REDACTED&x=1"},
		{"https://blob.core.example/c?sv=1&sig=p1", "https://blob.core.example/c?sig=REDACTED&sv=1"},
		{"https://user:p1@reg.example/v2/", "https://REDACTED@reg.example/v2/"},
	} {
		u, _ := url.Parse(tc.in)
		if got := redactURL(u); got != tc.want {
			t.Errorf("redactURL(%s) = %s, want %s", tc.in, got, tc.want)
		}
	}
	if got := redactErrorText(`Get "https://s3.example/b?X-Amz-Signature=p1": EOF`); strings.Contains(got, "p1") {
		t.Errorf("redactErrorText leaks: %s", got)
	}
}

func TestRedactHeaders(t *testing.T) {
	h := http.Header{}
	h.Set("Authorization", "Bearer p1")
	h.Set("Proxy-Authorization", "Basic p2")
	h.Set("Cookie", "a=p3")
	h.Set("Set-Cookie", "b=p4")
	h.Set("X-Registry-Token", "p5")
	h.Set("Location", "https://s3.example/b?X-Amz-Signature=p6")
	h.Set("Accept", "application/json")
	out := strings.Join(redactHeaders(h), "\n")
	for _, s := range []string{"p1", "p2", "p3", "p4", "p5", "p6"} {
		if strings.Contains(out, s) {
			t.Errorf("headers leak %s:\n%s", s, out)
		}
	}
	if !strings.Contains(out, "Accept: application/json") {
		t.Errorf("harmless header lost:\n%s", out)
	}
}

func TestParseChallenges(t *testing.T) {
	cs := parseChallenges([]string{`Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull",error="invalid_token"`, `Basic realm="x, y"`})
	if len(cs) != 2 || cs[0].Scheme != "Bearer" || cs[0].Params["realm"] != "https://auth.example/token" ||
		cs[0].Params["scope"] != "repository:a/b:pull" || cs[0].Params["error"] != "invalid_token" ||
		cs[1].Scheme != "Basic" || cs[1].Params["realm"] != "x, y" {
		t.Errorf("parseChallenges = %+v", cs)
	}
}
