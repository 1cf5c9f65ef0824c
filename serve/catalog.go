package serve

import (
	"context"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/imgfs/imgfs/fs"
	"github.com/imgfs/imgfs/image"
)

// Names of the mount's top level besides registries.
const (
	statusDir = ".imgfs"
	localDir  = "local"
)

// catalog answers the mount's lookups for a Server.
type catalog struct{ s *Server }

var _ fs.Catalog = catalog{}

// component is a repository path component (the distribution spec's
// grammar); registry names are checked by the reference parser.
var component = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$`)

// maxDepth bounds the repository components under a registry.
const maxDepth = 16

// Reference is what the path dir/name means: a registry reference with a
// tag (tag true) or a digest, from DIR/<registry>/<repository>:<tag> or
// @<digest>. Docker Hub names map as the docker CLI maps them:
// docker.io/python:3.12 is docker.io/library/python:3.12. ok is false when
// the name is not an image (a directory of the path, or nothing).
func Reference(dir []string, name string) (ref string, tag, ok bool) {
	if len(dir) == 0 || dir[0] == statusDir || dir[0] == localDir {
		return "", false, false
	}
	repo, d, pinned := strings.Cut(name, "@")
	if !pinned {
		var t string
		if repo, t, tag = strings.Cut(name, ":"); !tag || t == "" {
			return "", false, false
		}
	} else if strings.Contains(repo, ":") || d == "" {
		return "", false, false
	}
	if !component.MatchString(repo) {
		return "", false, false
	}
	return strings.Join(append(append([]string{}, dir...), name), "/"), tag, true
}

// isRegistry tells a top-level name that may be a registry host: one with
// a dot or a port, or localhost.
func isRegistry(name string) bool {
	return strings.ContainsAny(name, ".:") && !strings.HasPrefix(name, ".") || name == "localhost"
}

func (c catalog) Lookup(ctx context.Context, dir []string, name string) (fs.CatalogEntry, error) {
	s := c.s
	switch {
	case len(dir) == 0 && name == statusDir:
		return fs.CatalogEntry{Name: name, Kind: fs.CatalogDir}, nil
	case len(dir) == 0 && name == localDir && len(s.opts.Local) > 0:
		return fs.CatalogEntry{Name: name, Kind: fs.CatalogDir}, nil
	case len(dir) == 0:
		if !isRegistry(name) {
			return fs.CatalogEntry{}, syscall.ENOENT
		}
		return fs.CatalogEntry{Name: name, Kind: fs.CatalogDir}, nil
	case dir[0] == statusDir:
		if content, ok := s.statusFiles()[name]; ok && len(dir) == 1 {
			return fs.CatalogEntry{Name: name, Kind: fs.CatalogFile, Content: content}, nil
		}
		return fs.CatalogEntry{}, syscall.ENOENT
	case dir[0] == localDir:
		ref, ok := s.opts.Local[name]
		if !ok || len(dir) != 1 {
			return fs.CatalogEntry{}, syscall.ENOENT
		}
		return c.image(ref, dir, name)
	}
	ref, tag, ok := Reference(dir, name)
	switch {
	case !ok && component.MatchString(name) && len(dir) < maxDepth:
		return fs.CatalogEntry{Name: name, Kind: fs.CatalogDir}, nil // a namespace of the repository path
	case !ok:
		return fs.CatalogEntry{}, syscall.ENOENT
	case tag:
		path := fs.CatalogPath(dir, name)
		d, err := s.resolveTag(ctx, ref, path)
		if err != nil {
			s.recordError(path, err)
			return fs.CatalogEntry{}, errnoFor(err)
		}
		repo, _, _ := strings.Cut(name, ":")
		ttl := s.opts.TagTTL
		if ttl < 0 {
			ttl = -1
		}
		return fs.CatalogEntry{Name: name, Kind: fs.CatalogLink, Target: repo + "@" + d.String(), TTL: ttl}, nil
	}
	return c.image(ref, dir, name)
}

func (c catalog) image(ref string, dir []string, name string) (fs.CatalogEntry, error) {
	sv, err := c.s.open(ref, dir, name)
	if err != nil {
		c.s.recordError(fs.CatalogPath(dir, name), err)
		return fs.CatalogEntry{}, errnoFor(err)
	}
	return fs.CatalogEntry{Name: name, Kind: fs.CatalogImage, Image: sv.attached}, nil
}

// List shows what is open or resolved under dir, and the status files.
func (c catalog) List(dir []string) []fs.CatalogEntry {
	s := c.s
	if len(dir) == 1 && dir[0] == statusDir {
		var out []fs.CatalogEntry
		files := s.statusFiles()
		for _, n := range slices.Sorted(maps.Keys(files)) {
			out = append(out, fs.CatalogEntry{Name: n, Kind: fs.CatalogFile, Content: files[n]})
		}
		return out
	}
	if len(dir) == 1 && dir[0] == localDir {
		var out []fs.CatalogEntry
		for _, n := range slices.Sorted(maps.Keys(s.opts.Local)) {
			out = append(out, fs.CatalogEntry{Name: n, Kind: fs.CatalogDir})
		}
		return out
	}
	seen := map[string]fs.CatalogEntry{}
	if len(dir) == 0 {
		seen[statusDir] = fs.CatalogEntry{Name: statusDir, Kind: fs.CatalogDir}
		if len(s.opts.Local) > 0 {
			seen[localDir] = fs.CatalogEntry{Name: localDir, Kind: fs.CatalogDir}
		}
	}
	s.mu.Lock()
	add := func(path string, e fs.CatalogEntry) {
		parts := strings.Split(strings.TrimPrefix(path, "/"), "/")
		if len(parts) <= len(dir) || !slices.Equal(parts[:len(dir)], dir) {
			return
		}
		if len(parts) > len(dir)+1 {
			e = fs.CatalogEntry{Name: parts[len(dir)], Kind: fs.CatalogDir}
		}
		seen[e.Name] = e
	}
	for _, sv := range s.images {
		if len(sv.dir) > 0 && sv.dir[0] != localDir {
			add(sv.path, fs.CatalogEntry{Name: sv.name, Kind: fs.CatalogImage, Image: sv.attached})
		}
	}
	for _, t := range s.tags {
		name := t.path[strings.LastIndex(t.path, "/")+1:]
		repo, _, _ := strings.Cut(name, ":")
		add(t.path, fs.CatalogEntry{Name: name, Kind: fs.CatalogLink, Target: repo + "@" + t.digest.String()})
	}
	s.mu.Unlock()
	var out []fs.CatalogEntry
	for _, n := range slices.Sorted(maps.Keys(seen)) {
		out = append(out, seen[n])
	}
	return out
}

// statusFiles are the files of DIR/.imgfs, each made when read.
func (s *Server) statusFiles() map[string]func() []byte {
	return map[string]func() []byte{
		"images": s.imagesStatus,
		"stats":  s.statsStatus,
		"errors": s.errorsStatus,
	}
}

// imagesStatus lists the open images and the resolved tags.
func (s *Server) imagesStatus() []byte {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PATH\tDIGEST\tOPENED\tLAST USE\tOPEN FILES\tLAYERS\tFILES")
	s.mu.Lock()
	images := slices.SortedFunc(maps.Values(s.images), func(a, b *served) int { return strings.Compare(a.path, b.path) })
	tags := slices.SortedFunc(maps.Values(s.tags), func(a, b *tagRecord) int { return strings.Compare(a.path, b.path) })
	s.mu.Unlock()
	for _, sv := range images {
		a := sv.attached.Activity
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\n", sv.path, sv.img.Manifest.Digest, sv.opened.UTC().Format(time.RFC3339),
			a.LastUse().UTC().Format(time.RFC3339), a.OpenFiles(), len(sv.img.Layers()), sv.img.Tree().Len())
	}
	tw.Flush()
	fmt.Fprintln(&b)
	tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TAG\tDIGEST\tRESOLVED\tRESOLVED AGAIN AFTER")
	for _, t := range tags {
		again := "every lookup"
		if s.opts.TagTTL > 0 {
			again = t.resolved.Add(s.opts.TagTTL).UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", t.path, t.digest, t.resolved.UTC().Format(time.RFC3339), again)
	}
	tw.Flush()
	return []byte(b.String())
}

// statsStatus is, per open image and layer, what it cost: registry
// requests and bytes, span lookups, hits and misses; then the shared span
// cache and the FUSE requests of the mount.
func (s *Server) statsStatus() []byte {
	var b strings.Builder
	s.mu.Lock()
	images := slices.SortedFunc(maps.Values(s.images), func(a, b *served) int { return strings.Compare(a.path, b.path) })
	s.mu.Unlock()
	for _, sv := range images {
		st := sv.img.Stats()
		fmt.Fprintf(&b, "%s (%s)\n", sv.path, sv.img.Manifest.Digest)
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  LAYER\tDIGEST\tFORMAT\tREQUESTS\tFETCHED\tLOOKUPS\tHITS\tSHARED\tMISSES")
		for i, l := range st.Layers {
			r := l.Reads
			fmt.Fprintf(tw, "  %d\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\n", i+1, l.Layer.Digest, l.Layer.Format, l.Requests, l.Fetched,
				r.Lookups, r.Hits, r.Shared, r.SpansDecoded)
		}
		tw.Flush()
	}
	c := s.cache.Stats()
	fmt.Fprintf(&b, "span cache (shared): %d memory hits, %d disk hits, %d misses; %d bytes in memory, %d on disk\n",
		c.MemoryHits, c.DiskHits, c.Misses, c.MemoryBytes, c.DiskBytes)
	if m := s.Mounted(); m != nil {
		r := m.Requests()
		parts := make([]string, 0, len(r))
		for _, k := range r {
			parts = append(parts, fmt.Sprintf("%s %d", k.Kind, k.N))
		}
		fmt.Fprintf(&b, "fuse requests: %s, total %d\n", strings.Join(parts, ", "), r.Total())
	}
	return []byte(b.String())
}

// errorsStatus lists the last errors, oldest first.
func (s *Server) errorsStatus() []byte {
	var b strings.Builder
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.errors {
		fmt.Fprintf(&b, "%s %s: %s\n", e.when.UTC().Format(time.RFC3339), e.path, e.err)
	}
	return []byte(b.String())
}

// LocalReference checks a --local NAME=REFERENCE value.
func LocalReference(s string) (name, ref string, err error) {
	name, ref, ok := strings.Cut(s, "=")
	if !ok || !component.MatchString(name) {
		return "", "", fmt.Errorf("want NAME=REFERENCE with NAME in [a-z0-9._-], got %q", s)
	}
	r, err := image.ParseReference(ref, false)
	if err != nil {
		return "", "", err
	}
	if !r.IsLocal() {
		return "", "", fmt.Errorf("%s is not a local source (oci:, oci-archive:, docker-archive:)", ref)
	}
	return name, ref, nil
}
