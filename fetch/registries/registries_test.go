package registries

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func write(t *testing.T, path, s string) {
	t.Helper()
	os.MkdirAll(filepath.Dir(path), 0o755)
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestForMirrorsInOrderByKind(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "registries.conf")
	write(t, file, `
unqualified-search-registries = ["docker.io"]
[[registry]]
location = "docker.io"
[[registry.mirror]]
location = "cache.local:5000"
insecure = true
[[registry.mirror]]
location = "digests.local/hub"
pull-from-mirror = "digest-only"
[[registry.mirror]]
location = "tags.local"
pull-from-mirror = "tag-only"

[[registry]]
prefix = "example.com/team"
location = "internal.example.com/mirror/team"
blocked = false

[[registry]]
location = "evil.example.com"
blocked = true

[[registry]]
prefix = "*.corp.example"
insecure = true
`)
	write(t, filepath.Join(dir, "registries.conf.d", "10-more.conf"), `
[[registry]]
location = "quay.io"
mirror-by-digest-only = true
[[registry.mirror]]
location = "quay-mirror.local"
`)
	c, err := Load(file, []string{filepath.Join(dir, "registries.conf.d")})
	if err != nil {
		t.Fatal(err)
	}
	byTag := c.For("index.docker.io", "library/ubuntu", false)
	var got []string
	for _, m := range byTag.Mirrors {
		got = append(got, m.Host+"/"+m.Repository+" tags="+boolStr(m.Tags)+" digests="+boolStr(m.Digests))
	}
	want := []string{"cache.local:5000/library/ubuntu tags=1 digests=1", "digests.local/hub/library/ubuntu tags=0 digests=1", "tags.local/library/ubuntu tags=1 digests=1"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("tag pull mirrors:\n got %q\nwant %q", got, want)
	}
	if !byTag.Mirrors[0].Insecure {
		t.Error("insecure mirror")
	}
	byDigest := c.For("index.docker.io", "library/ubuntu", true)
	if len(byDigest.Mirrors) != 2 || byDigest.Mirrors[1].Host != "digests.local" || byDigest.Mirrors[0].Tags {
		t.Errorf("digest pull mirrors: %+v", byDigest.Mirrors)
	}
	if p := c.For("example.com", "team/app", false); p.Host != "internal.example.com" || p.Repository != "mirror/team/app" || p.Blocked {
		t.Errorf("location rewrite: %+v", p)
	}
	if p := c.For("example.com", "teamwork/app", false); p.Registry != nil {
		t.Errorf("prefix matched inside a path component: %+v", p)
	}
	if p := c.For("evil.example.com", "x", false); !p.Blocked {
		t.Error("blocked registry")
	}
	if p := c.For("reg.corp.example:5000", "x", false); !p.Insecure {
		t.Errorf("wildcard: %+v", p)
	}
	if p := c.For("quay.io", "x/y", false); len(p.Mirrors) != 1 || p.Mirrors[0].Tags || !p.Mirrors[0].Digests {
		t.Errorf("mirror-by-digest-only from a drop-in: %+v", p.Mirrors)
	}
	if p := c.For("ghcr.io", "x", false); p.Registry != nil || len(p.Mirrors) != 0 || p.Host != "ghcr.io" {
		t.Errorf("unconfigured: %+v", p)
	}
	if err := c.AddMirror("docker.io=http://127.0.0.1:5001"); err != nil {
		t.Fatal(err)
	}
	if p := c.For("index.docker.io", "library/ubuntu", false); p.Mirrors[0].Host != "127.0.0.1:5001" || !p.Mirrors[0].PlainHTTP {
		t.Errorf("--registry-mirror goes first: %+v", p.Mirrors[0])
	}
}

func boolStr(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

func TestLoadRefusesBadFiles(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"v1":       "[registries.search]\nregistries = ['docker.io']\n",
		"pull":     "[[registry]]\nlocation='a'\n[[registry.mirror]]\nlocation='b'\npull-from-mirror='sometimes'\n",
		"toml":     "[[registry]\n",
		"wildcard": "[[registry]]\nprefix='*.a'\nlocation='b'\n",
	} {
		f := filepath.Join(dir, name+".conf")
		write(t, f, body)
		if _, err := Load(f, nil); err == nil {
			t.Errorf("%s: loaded", name)
		}
	}
	if c, err := Load(filepath.Join(dir, "missing.conf"), nil); err != nil || len(c.Registries) != 0 {
		t.Errorf("a missing file: %v", err)
	}
	if err := (&Config{}).AddMirror("docker.io"); err == nil {
		t.Error("--registry-mirror without =")
	}
}
