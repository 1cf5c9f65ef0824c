package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/imgfs/imgfs/manifest"
)

// putTreeImage stores a one-layer image with a small tree: directories,
// files, and symlinks to a file and to a directory.
func putTreeImage(t *testing.T, src *memSource) string {
	t.Helper()
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	mtime := time.Date(2023, 11, 14, 22, 13, 20, 0, time.UTC)
	for _, e := range []struct {
		name, body, link string
		typ              byte
		mode             int64
	}{
		{name: "usr/", typ: tar.TypeDir, mode: 0o755},
		{name: "usr/bin/", typ: tar.TypeDir, mode: 0o755},
		{name: "usr/bin/python3.12", typ: tar.TypeReg, mode: 0o755, body: "elf"},
		{name: "usr/bin/python3", typ: tar.TypeSymlink, link: "python3.12", mode: 0o777},
		{name: "usr/lib/", typ: tar.TypeDir, mode: 0o755},
		{name: "usr/lib/os-release", typ: tar.TypeReg, mode: 0o644, body: "NAME=test\n"},
		{name: "etc/", typ: tar.TypeDir, mode: 0o755},
		{name: "etc/os-release", typ: tar.TypeSymlink, link: "../usr/lib/os-release", mode: 0o777},
		{name: "lib", typ: tar.TypeSymlink, link: "usr/lib", mode: 0o777},
	} {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Linkname: e.link, Size: int64(len(e.body)), ModTime: mtime}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(e.body))
	}
	tw.Close()
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(tb.Bytes())
	zw.Close()
	layer := gz.Bytes()
	cfg := ocispec.Image{Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"}}
	cfg.RootFS.Type = "layers"
	cfgBytes := mustJSON(t, cfg)
	m := ocispec.Manifest{MediaType: manifest.MediaTypeOCIManifest,
		Config: ocispec.Descriptor{MediaType: manifest.MediaTypeOCIConfig, Digest: src.PutBlob(cfgBytes), Size: int64(len(cfgBytes))},
		Layers: []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: src.PutBlob(layer), Size: int64(len(layer))}}}
	m.SchemaVersion = 2
	src.put(manifest.MediaTypeOCIManifest, mustJSON(t, m), "tree")
	return testRegistryHost + "/team/tree:tree"
}

func TestLs(t *testing.T) {
	src := newMemSource(t)
	ref := putTreeImage(t, src)
	env := map[string]string{"IMGFS_CACHE_DIR": t.TempDir()}
	for _, c := range []struct {
		args []string
		want string
	}{
		// A symlink is listed as a link, by the path given.
		{[]string{"/usr/bin/python3"}, "/usr/bin/python3\n"},
		{[]string{"-l", "/usr/bin/python3"}, "lrwxrwxrwx   1     0     0           10 2023-11-14 22:13:20 /usr/bin/python3 -> python3.12\n"},
		// -L shows what it points to.
		{[]string{"-lL", "/usr/bin/python3"}, "-rwxr-xr-x   1     0     0            3 2023-11-14 22:13:20 /usr/bin/python3\n"},
		{[]string{"-l", "/etc/os-release"}, "lrwxrwxrwx   1     0     0           21 2023-11-14 22:13:20 /etc/os-release -> ../usr/lib/os-release\n"},
		// A link to a directory given as PATH is listed as the directory,
		// unless -l or -d.
		{[]string{"/lib"}, "os-release\n"},
		{[]string{"-d", "/lib"}, "/lib\n"},
		{[]string{"-d", "/usr"}, "/usr\n"},
		// Several paths: files first, then each directory under a header.
		{[]string{"/usr/bin", "/etc/os-release", "/etc"}, "/etc/os-release\n\n/usr/bin:\npython3\npython3.12\n\n/etc:\nos-release\n"},
		{[]string{"-R", "/usr"}, "/usr:\nbin\nlib\n\n/usr/bin:\npython3\npython3.12\n\n/usr/lib:\nos-release\n"},
		{[]string{"--format", "{{.Type}} {{.Path}} {{.Linkname}}", "/usr/bin"}, "symlink /usr/bin/python3 python3.12\nfile /usr/bin/python3.12 \n"},
	} {
		code, stdout, stderr := runCLI(t, env, src, append([]string{"ls", ref}, c.args...)...)
		if code != 0 || stdout != c.want {
			t.Errorf("ls %q: exit %d, stderr %q\n%s\nwant\n%s", c.args, code, stderr, stdout, c.want)
		}
	}

	code, stdout, stderr := runCLI(t, env, src, "ls", "--json", ref, "/usr/bin/python3", "/usr/lib")
	var entries []LsEntry
	if code != 0 || json.Unmarshal([]byte(stdout), &entries) != nil || len(entries) != 2 {
		t.Fatalf("--json: exit %d %s\n%s", code, stderr, stdout)
	}
	if e := entries[0]; e.Path != "/usr/bin/python3" || e.Type != "symlink" || e.Linkname != "python3.12" || e.Perm != 0o777 {
		t.Errorf("--json entry %+v", e)
	}
	if e := entries[1]; e.Path != "/usr/lib/os-release" || e.Name != "os-release" || e.Size != 10 || e.Mode != "-rw-r--r--" {
		t.Errorf("--json entry %+v", e)
	}

	// A missing path: one line for it, the others listed, exit status 3.
	code, stdout, stderr = runCLI(t, env, src, "ls", ref, "/nope", "/usr/lib", "/etc/nope")
	if code != exitNotFound || stdout != "/usr/lib:\nos-release\n" ||
		stderr != "imgfs: /nope: no such file or directory\nimgfs: /etc/nope: no such file or directory\n" {
		t.Errorf("missing paths: exit %d\nstdout %q\nstderr %q", code, stdout, stderr)
	}
}

func TestExitCodes(t *testing.T) {
	src := newMemSource(t)
	ref := putTreeImage(t, src)
	// A registry that wants credentials.
	auth := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
	}))
	defer auth.Close()
	authHost := strings.TrimPrefix(auth.URL, "http://")
	for _, c := range []struct {
		args []string
		code int
	}{
		{[]string{"ls", ref, "/usr"}, exitOK},
		{[]string{"ls", "--bogus", ref}, exitUsage},
		{[]string{"cache", "prune", "--older-than", "7x"}, exitUsage},
		{[]string{"inspect", testRegistryHost + "/team/none:v1"}, exitNotFound},
		{[]string{"cat", ref, "/usr/none"}, exitNotFound},
		{[]string{"inspect", "oci:/nonexistent/layout"}, exitNotFound},
		{[]string{"inspect", authHost + "/team/x:v1"}, exitAuth},
		{[]string{"inspect", "127.0.0.1:1/team/x:v1"}, exitNetwork},
		{[]string{"cat", ref, "/usr"}, exitFailure},
	} {
		code, _, stderr := runCLI(t, nil, src, c.args...)
		if code != c.code {
			t.Errorf("imgfs %q: exit %d, want %d: %s", c.args, code, c.code, stderr)
		}
		if lines := strings.Count(stderr, "\n"); c.code != exitOK && c.code != exitUsage && lines != 1 {
			t.Errorf("imgfs %q: %d lines on stderr, want one:\n%s", c.args, lines, stderr)
		}
	}
}

func TestParseDuration(t *testing.T) {
	for s, want := range map[string]time.Duration{
		"30s": 30 * time.Second, "1.5h": 90 * time.Minute, "7d": 7 * 24 * time.Hour, "2w": 14 * 24 * time.Hour,
		"1d12h": 36 * time.Hour, "1w1d": 8 * 24 * time.Hour, "0": 0, "0.5d": 12 * time.Hour,
	} {
		if got, err := parseDuration(s); err != nil || got != want {
			t.Errorf("%q: %v, %v; want %v", s, got, err, want)
		}
	}
	for _, s := range []string{"", "7", "d", "7x", "1d-", "w1"} {
		if _, err := parseDuration(s); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
	for d, want := range map[time.Duration]string{720 * time.Hour: "30d", 14 * 24 * time.Hour: "2w", 90 * time.Minute: "1h30m0s", 0: "0s"} {
		if got := formatDuration(d); got != want {
			t.Errorf("formatDuration(%v) = %q, want %q", d, got, want)
		}
	}
}
