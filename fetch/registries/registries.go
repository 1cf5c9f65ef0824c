// Package registries reads the registries configuration users of podman,
// skopeo and Apptainer already have, containers-registries.conf(5)
// version 2, and says for an image reference which mirrors to try and
// whether the registry is blocked or insecure. It reads files only where
// it is told (cmd/imgfs passes the paths).
//
// What imgfs takes from the file: [[registry]] tables with prefix (default:
// location), location, insecure, blocked, mirror-by-digest-only, and their
// [[registry.mirror]] tables with location, insecure and pull-from-mirror
// ("all", "digest-only", "tag-only"). Short-name settings
// (unqualified-search-registries, short-name-mode, aliases) are ignored:
// imgfs completes short names with Docker Hub, as Docker does.
package registries

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/BurntSushi/toml"
)

// Config is the merged configuration of one or more files.
type Config struct {
	Registries []Registry `toml:"registry"`
	// Sources are the files read, in order, for messages.
	Sources []string `toml:"-"`
}

// Registry is one [[registry]] table.
type Registry struct {
	Prefix             string   `toml:"prefix"`
	Location           string   `toml:"location"`
	Insecure           bool     `toml:"insecure"`
	Blocked            bool     `toml:"blocked"`
	MirrorByDigestOnly bool     `toml:"mirror-by-digest-only"`
	Mirrors            []Mirror `toml:"mirror"`
}

// Mirror is one [[registry.mirror]] table.
type Mirror struct {
	Location       string `toml:"location"`
	Insecure       bool   `toml:"insecure"`
	PullFromMirror string `toml:"pull-from-mirror"`
	// PlainHTTP: speak http:// (only from --registry-mirror http://HOST;
	// the file's insecure also allows it).
	PlainHTTP bool `toml:"-"`
}

// Paths are the files a configuration is read from, as
// containers/image does: $IMGFS_REGISTRIES_CONF alone if set (override);
// else the user's file ($HOME/.config/containers/registries.conf) with the
// user's drop-in dir, if that file exists; else the system file
// (/etc/containers/registries.conf) with the system and user drop-in dirs.
// Drop-in dirs hold *.conf files read in name order after the main file.
func Paths(override, home string) (file string, dirs []string) {
	if override != "" {
		return override, nil
	}
	if home != "" {
		user := filepath.Join(home, ".config", "containers", "registries.conf")
		if _, err := os.Stat(user); err == nil {
			return user, []string{user + ".d"}
		}
	}
	dirs = []string{"/etc/containers/registries.conf.d"}
	if home != "" {
		dirs = append(dirs, filepath.Join(home, ".config", "containers", "registries.conf.d"))
	}
	return "/etc/containers/registries.conf", dirs
}

// Load reads file (a missing one is no configuration) and the *.conf files
// of dirs. A drop-in's [[registry]] replaces one of the same prefix.
func Load(file string, dirs []string) (*Config, error) {
	c := &Config{}
	files := []string{file}
	for _, d := range dirs {
		entries, err := os.ReadDir(d)
		if err != nil {
			continue
		}
		for _, e := range entries {
			if !e.IsDir() && strings.HasSuffix(e.Name(), ".conf") {
				files = append(files, filepath.Join(d, e.Name()))
			}
		}
	}
	for _, f := range files {
		if f == "" {
			continue
		}
		data, err := os.ReadFile(f)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		var part Config
		md, err := toml.Decode(string(data), &part)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		if md.IsDefined("registries") { // version 1 tables
			return nil, fmt.Errorf("%s: registries.conf version 1 ([registries.search] ...) is not supported; use [[registry]] tables (version 2)", f)
		}
		for _, r := range part.Registries {
			if err := c.add(r); err != nil {
				return nil, fmt.Errorf("%s: %w", f, err)
			}
		}
		c.Sources = append(c.Sources, f)
	}
	return c, nil
}

// add normalises r and adds it, replacing one of the same prefix.
func (c *Config) add(r Registry) error {
	r.Location = strings.TrimSuffix(strings.TrimSpace(r.Location), "/")
	r.Prefix = strings.TrimSuffix(strings.TrimSpace(r.Prefix), "/")
	if r.Prefix == "" {
		r.Prefix = r.Location
	}
	if r.Prefix == "" {
		return errors.New("[[registry]] without location or prefix")
	}
	if strings.HasPrefix(r.Prefix, "*.") && r.Location != "" {
		return fmt.Errorf("[[registry]] prefix %q: a wildcard prefix takes no location", r.Prefix)
	}
	for i, m := range r.Mirrors {
		m.Location = strings.TrimSuffix(strings.TrimSpace(m.Location), "/")
		switch m.PullFromMirror {
		case "":
			m.PullFromMirror = "all"
		case "all", "digest-only", "tag-only":
		default:
			return fmt.Errorf("mirror %q: pull-from-mirror %q: want all, digest-only or tag-only", m.Location, m.PullFromMirror)
		}
		if m.Location == "" {
			return fmt.Errorf("[[registry.mirror]] of %q without location", r.Prefix)
		}
		r.Mirrors[i] = m
	}
	c.Registries = slices.DeleteFunc(c.Registries, func(o Registry) bool { return o.Prefix == r.Prefix })
	c.Registries = append(c.Registries, r)
	return nil
}

// AddMirror adds a one-off mirror for origin (--registry-mirror
// ORIGIN=MIRROR), tried before those of the files; MIRROR may start with
// http:// (plain HTTP) or https://.
func (c *Config) AddMirror(spec string) error {
	origin, mirror, ok := strings.Cut(spec, "=")
	origin, mirror = strings.TrimSpace(origin), strings.TrimSpace(mirror)
	if !ok || origin == "" || mirror == "" {
		return fmt.Errorf("--registry-mirror %q: want ORIGIN=MIRROR, e.g. docker.io=mirror.example.com:5000", spec)
	}
	m := Mirror{PullFromMirror: "all"}
	switch {
	case strings.HasPrefix(mirror, "http://"):
		m.PlainHTTP, mirror = true, strings.TrimPrefix(mirror, "http://")
	case strings.HasPrefix(mirror, "https://"):
		mirror = strings.TrimPrefix(mirror, "https://")
	}
	m.Location = strings.TrimSuffix(mirror, "/")
	origin = strings.TrimSuffix(origin, "/")
	for i := range c.Registries {
		if c.Registries[i].Prefix == origin {
			c.Registries[i].Mirrors = append([]Mirror{m}, c.Registries[i].Mirrors...)
			return nil
		}
	}
	c.Registries = append(c.Registries, Registry{Prefix: origin, Location: origin, Mirrors: []Mirror{m}})
	return nil
}

// Pull is what the configuration says about pulling one reference.
type Pull struct {
	// Registry is the matching [[registry]], nil when none matches.
	Registry *Registry
	// Host and Repository are where the image is pulled from: the
	// reference's own, or the location the matching entry rewrites its
	// prefix to.
	Host, Repository  string
	Blocked, Insecure bool
	// Mirrors are those to try for this reference, in order, each with
	// what it may serve: see fetch.Mirror.
	Mirrors []PullMirror
}

// PullMirror is one mirror of a Pull.
type PullMirror struct {
	Host, Repository    string
	Insecure, PlainHTTP bool
	Tags, Digests       bool
}

// dockerHub is how a reference names Docker Hub, and how the file does.
const (
	dockerHubRef  = "index.docker.io"
	dockerHubConf = "docker.io"
)

// For says how to pull registry/repository (as a reference resolves:
// index.docker.io/library/ubuntu); byDigest: the reference pins a digest.
//
// Mirrors: pull-from-mirror "all" mirrors serve tags and content;
// "tag-only" ones only a pull by tag (tags and its content);
// "digest-only" ones (and all of them under mirror-by-digest-only)
// serve content only. imgfs uses a digest-only mirror for the content of a
// pull by tag too (containers/image does not): the tag is then resolved at
// the registry, and content is checked against its digest whoever serves it.
func (c *Config) For(registry, repository string, byDigest bool) Pull {
	full := registry + "/" + repository
	if registry == dockerHubRef {
		full = dockerHubConf + "/" + repository
	}
	p := Pull{Host: registry, Repository: repository}
	r := c.match(full)
	if r == nil {
		return p
	}
	p.Registry, p.Blocked, p.Insecure = r, r.Blocked, r.Insecure
	if !strings.HasPrefix(r.Prefix, "*.") && r.Location != "" && r.Location != r.Prefix {
		p.Host, p.Repository = split(r.Location + strings.TrimPrefix(full, r.Prefix))
	}
	for _, m := range r.Mirrors {
		if strings.HasPrefix(r.Prefix, "*.") {
			continue // a mirror of a wildcard has no prefix to rewrite
		}
		host, repo := split(m.Location + strings.TrimPrefix(full, r.Prefix))
		pm := PullMirror{Host: host, Repository: repo, Insecure: m.Insecure, PlainHTTP: m.PlainHTTP}
		switch {
		case r.MirrorByDigestOnly || m.PullFromMirror == "digest-only":
			pm.Digests = true
		case m.PullFromMirror == "tag-only":
			pm.Tags, pm.Digests = !byDigest, !byDigest
		default:
			pm.Tags, pm.Digests = !byDigest, true
		}
		if pm.Tags || pm.Digests {
			p.Mirrors = append(p.Mirrors, pm)
		}
	}
	return p
}

// match is the [[registry]] whose prefix matches full longest: a prefix
// matches at a path boundary ("example.com/foo" matches
// "example.com/foo/bar", not "example.com/foobar"); "*.example.com"
// matches hosts under example.com.
func (c *Config) match(full string) *Registry {
	var best *Registry
	bestLen := -1
	host, _, _ := strings.Cut(full, "/")
	for i := range c.Registries {
		r := &c.Registries[i]
		n := -1
		if suffix, ok := strings.CutPrefix(r.Prefix, "*"); ok {
			hostname, _, _ := strings.Cut(host, ":")
			if strings.HasSuffix(hostname, suffix) {
				n = len(r.Prefix) - 1 // below any exact host prefix
			}
		} else if full == r.Prefix || strings.HasPrefix(full, r.Prefix) && (full[len(r.Prefix)] == '/' || strings.HasSuffix(r.Prefix, "/")) {
			n = len(r.Prefix) + 1
		} else if host == r.Prefix { // a prefix naming a registry with a port etc.
			n = len(r.Prefix) + 1
		}
		if n > bestLen {
			best, bestLen = r, n
		}
	}
	return best
}

// split cuts "host/path" into the registry host (Docker Hub's written
// docker.io becomes index.docker.io) and the repository path.
func split(s string) (host, repo string) {
	host, repo, _ = strings.Cut(s, "/")
	if host == dockerHubConf {
		host = dockerHubRef
	}
	return host, repo
}
