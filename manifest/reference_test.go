package manifest

import (
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
)

const testDigest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestParseReference(t *testing.T) {
	tests := []struct {
		in                       string
		registry, repo, tag, dig string
		str                      string
	}{
		{"ubuntu", "index.docker.io", "library/ubuntu", "latest", "", "index.docker.io/library/ubuntu:latest"},
		{"docker://ubuntu", "index.docker.io", "library/ubuntu", "latest", "", "index.docker.io/library/ubuntu:latest"},
		{"ubuntu:22.04", "index.docker.io", "library/ubuntu", "22.04", "", "index.docker.io/library/ubuntu:22.04"},
		{"docker.io/library/busybox:1.36", "index.docker.io", "library/busybox", "1.36", "", "index.docker.io/library/busybox:1.36"},
		{"godlovedc/lolcow", "index.docker.io", "godlovedc/lolcow", "latest", "", "index.docker.io/godlovedc/lolcow:latest"},
		{"127.0.0.1:5000/ns/repo:v1", "127.0.0.1:5000", "ns/repo", "v1", "", "127.0.0.1:5000/ns/repo:v1"},
		{"localhost/repo", "localhost", "repo", "latest", "", "localhost/repo:latest"},
		{"docker://localhost:5000/a/b/c:tag", "localhost:5000", "a/b/c", "tag", "", "localhost:5000/a/b/c:tag"},
		{"ghcr.io/org/app@" + testDigest, "ghcr.io", "org/app", "", testDigest, "ghcr.io/org/app@" + testDigest},
		{"host:5000/ns/repo:v2@" + testDigest, "host:5000", "ns/repo", "v2", testDigest, "host:5000/ns/repo:v2@" + testDigest},
		{"ubuntu@" + testDigest, "index.docker.io", "library/ubuntu", "", testDigest, "index.docker.io/library/ubuntu@" + testDigest},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			ref, err := ParseReference(tc.in)
			if err != nil {
				t.Fatalf("ParseReference(%q): %v", tc.in, err)
			}
			if ref.Registry != tc.registry || ref.Repository != tc.repo || ref.Tag != tc.tag || ref.Digest.String() != tc.dig {
				t.Errorf("got registry=%q repo=%q tag=%q digest=%q", ref.Registry, ref.Repository, ref.Tag, ref.Digest)
			}
			if ref.String() != tc.str {
				t.Errorf("String() = %q, want %q", ref.String(), tc.str)
			}
			wantID := tc.tag
			if tc.dig != "" {
				wantID = tc.dig
			}
			if ref.Identifier() != wantID {
				t.Errorf("Identifier() = %q, want %q", ref.Identifier(), wantID)
			}
			if got := ref.Context().RegistryStr(); got != tc.registry {
				t.Errorf("Context().RegistryStr() = %q", got)
			}
		})
	}
}

func TestParseReferenceErrors(t *testing.T) {
	tests := []struct {
		in      string
		wantErr string
	}{
		{"", "empty image name"},
		{"docker://", "empty image name"},
		{"oras://ghcr.io/a/b:1", `unsupported transport "oras://"`},
		{"https://ghcr.io/a/b", `unsupported transport "https://"`},
		{"library://alpine", `unsupported transport "library://"`},
		{"Ubuntu", "repository can only contain"},
		{"ubuntu:", "must specify a tag name after the colon"},
		{"ubuntu@sha256:abc", "invalid"},
		{"ubuntu@md5:0123456789abcdef0123456789abcdef", "unsupported digest algorithm"},
		{"a@b@c", "exactly one '@'"},
		{" ubuntu", "white space"},
		{"ubuntu:bad tag", "tag can only contain"},
		// 250 characters pass go-containerregistry's check, but Docker Hub's
		// "library/" makes the repository 258 (found by FuzzParseReference).
		{strings.Repeat("t", 250), "longer than 255 characters"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			_, err := ParseReference(tc.in)
			if err == nil {
				t.Fatalf("ParseReference(%q) succeeded", tc.in)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, `invalid reference "`+tc.in+`": `) {
				t.Errorf("error %q lacks the invalid reference prefix", msg)
			}
			if !strings.Contains(msg, tc.wantErr) {
				t.Errorf("error %q does not contain %q", msg, tc.wantErr)
			}
		})
	}
}

func TestParseReferenceInsecure(t *testing.T) {
	ref, err := ParseReference("registry.example:5000/a:b", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if got := ref.Context().Scheme(); got != "http" {
		t.Errorf("scheme = %q, want http", got)
	}
}

func FuzzParseReference(f *testing.F) {
	for _, s := range []string{"ubuntu", "docker://a/b:c", "h:1/x@" + testDigest, "oras://x", "", "a@b@c", "x:y:z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ref, err := ParseReference(s)
		if err != nil {
			return
		}
		if ref.Registry == "" || ref.Repository == "" || (ref.Tag == "" && ref.Digest == "") {
			t.Fatalf("ParseReference(%q) = %+v: missing parts", s, ref)
		}
		// The normalised form must parse to the same thing.
		again, err := ParseReference(ref.String())
		if err != nil {
			t.Fatalf("re-parse %q: %v", ref.String(), err)
		}
		if again.String() != ref.String() {
			t.Fatalf("re-parse %q gave %q", ref.String(), again.String())
		}
	})
}
