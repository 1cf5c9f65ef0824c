// Package serve serves any image by path from one FUSE mount: DIR/<registry>/
// <repository>@sha256:<hex> is the image with that manifest digest, and
// DIR/<registry>/<repository>:<tag> a symbolic link to the digest its tag
// resolves to. Images are opened on first lookup (as autofs mounts), share
// one span cache and decode bound (a layer two images share is indexed,
// fetched and cached once), are released when idle, and tags are resolved
// again once their time to live has passed; digests never change. DIR/.imgfs/
// holds status files: the images served, their statistics, recent errors.
//
// The file system part is fs.MountCatalog; this package decides what a path
// means and opens images with image.Open.
package serve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sync/singleflight"

	"github.com/imgfs/imgfs/fetch"
	"github.com/imgfs/imgfs/fs"
	"github.com/imgfs/imgfs/image"
	"github.com/imgfs/imgfs/index"
	"github.com/imgfs/imgfs/index/cache"
)

// Defaults of Options.
const (
	DefaultTagTTL      = 5 * time.Minute
	DefaultIdleTimeout = 30 * time.Minute
)

// Options configure a Server.
type Options struct {
	// Image is how every image is opened: platform, registry access, cache
	// dir, span cache sizes. Cache and Decode, when nil, are made once by
	// New and shared by every image; Synthesize is always on.
	Image image.Options
	// PlainHTTPRegistries are registry hosts (host[:port]) spoken to over
	// plain HTTP; Image.Registry.PlainHTTP makes every registry so.
	PlainHTTPRegistries []string
	// TagTTL is how long a tag's resolution is used before the registry is
	// asked again (0: DefaultTagTTL; negative: every lookup asks).
	TagTTL time.Duration
	// IdleTimeout releases an image with no open file and no use for this
	// long (0: DefaultIdleTimeout; negative: never).
	IdleTimeout time.Duration
	// Local serves local sources under DIR/local/<name>: name -> reference
	// (oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE).
	Local map[string]string
	// Mount configures the FUSE mount (allow_other, read timeout...).
	Mount  fs.MountOptions
	Logger *slog.Logger // nil: slog.Default()
}

// Server serves images by path.
type Server struct {
	opts      Options
	log       *slog.Logger
	cache     *cache.Cache
	ownsCache bool
	copies    *cache.Copies // nil: no file copies
	decode    *index.DecodeLimit
	mount     *fs.CatalogMount
	opening   singleflight.Group
	started   time.Time

	mu     sync.Mutex
	images map[string]*served    // by reference with digest: registry/repo@sha256:...
	tags   map[string]*tagRecord // by registry/repo:tag
	errors []errorRecord
	layers map[digest.Digest]*sync.Mutex
	closed bool
	stop   chan struct{}
}

// served is an open image.
type served struct {
	path     string // in the mount, /registry/repo@sha256:...
	dir      []string
	name     string
	img      *image.Image
	attached *fs.ServedImage
	opened   time.Time
}

// tagRecord is a tag's last resolution.
type tagRecord struct {
	path     string
	digest   digest.Digest
	resolved time.Time
}

type errorRecord struct {
	when time.Time
	path string
	err  string
}

// maxErrors is how many recent errors .imgfs/errors keeps.
const maxErrors = 100

// New makes a server; Mount serves it.
func New(opts Options) (*Server, error) {
	s := &Server{opts: opts, log: opts.Logger, images: map[string]*served{}, tags: map[string]*tagRecord{},
		layers: map[digest.Digest]*sync.Mutex{}, started: time.Now(), stop: make(chan struct{})}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.opts.TagTTL == 0 {
		s.opts.TagTTL = DefaultTagTTL
	}
	if s.opts.IdleTimeout == 0 {
		s.opts.IdleTimeout = DefaultIdleTimeout
	}
	s.cache, s.decode = opts.Image.Cache, opts.Image.Decode
	if s.cache == nil {
		co := cache.Options{MemoryBytes: opts.Image.MemoryCache, Logger: s.log}
		if opts.Image.DiskCache > 0 && opts.Image.CacheDir != "" {
			co.Dir = opts.Image.CacheDir + "/spans"
			co.DiskBytes = opts.Image.DiskCache
		}
		c, err := cache.New(co)
		if err != nil {
			return nil, err
		}
		s.cache, s.ownsCache = c, true
	}
	if s.decode == nil {
		s.decode = index.NewDecodeLimit(0)
	}
	s.copies = opts.Image.Copies
	if s.copies == nil && opts.Image.FileCopies > 0 && opts.Image.CacheDir != "" {
		// One store for every image, so that their copies share the budget.
		c, err := cache.NewCopies(filepath.Join(opts.Image.CacheDir, "files"), opts.Image.FileCopies, s.log)
		if err != nil {
			s.log.Warn("file copies disabled", "err", err)
		} else {
			s.copies = c
		}
	}
	return s, nil
}

// Mount serves at dir; it returns once the kernel has the mount.
func (s *Server) Mount(ctx context.Context, dir string) error {
	mo := s.opts.Mount
	if mo.Logger == nil {
		mo.Logger = s.log
	}
	m, err := fs.MountCatalog(ctx, dir, catalog{s}, mo)
	if err != nil {
		return err
	}
	s.mount = m
	if s.opts.IdleTimeout > 0 {
		go s.releaseIdle()
	}
	return nil
}

// Mounted is the live mount (Wait, Unmount, Requests).
func (s *Server) Mounted() *fs.Mounted {
	if s.mount == nil {
		return nil
	}
	return s.mount.Mounted
}

// Close releases every image and the span cache. Unmount first.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.stop)
	images := s.images
	s.images = map[string]*served{}
	s.mu.Unlock()
	var errs []error
	for _, sv := range images {
		errs = append(errs, sv.img.Close())
	}
	if s.ownsCache {
		errs = append(errs, s.cache.Close())
	}
	return errors.Join(errs...)
}

// recordError keeps an error for .imgfs/errors and logs it.
func (s *Server) recordError(path string, err error) {
	s.log.Warn("serve", "path", path, "err", err)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.errors = append(s.errors, errorRecord{when: time.Now(), path: path, err: strings.Join(strings.Fields(err.Error()), " ")})
	if len(s.errors) > maxErrors {
		s.errors = s.errors[len(s.errors)-maxErrors:]
	}
}

// imageOptions are the options to open the image of ref with.
func (s *Server) imageOptions(ref string) image.Options {
	o := s.opts.Image
	o.Cache, o.Decode, o.Synthesize, o.Copies = s.cache, s.decode, true, s.copies
	o.Progress = nil
	o.LayerLock = s.lockLayer
	if host, _, _ := strings.Cut(ref, "/"); slices.Contains(s.opts.PlainHTTPRegistries, host) {
		o.Registry.PlainHTTP = true
	}
	return o
}

// lockLayer serializes the opening of one layer's index across images.
func (s *Server) lockLayer(d digest.Digest) func() {
	s.mu.Lock()
	m, ok := s.layers[d]
	if !ok {
		m = &sync.Mutex{}
		s.layers[d] = m
	}
	s.mu.Unlock()
	m.Lock()
	return m.Unlock
}

// openTimeout bounds the opening of one image (resolve, index every layer).
const openTimeout = 30 * time.Minute

// open returns the served image of ref (a reference with a digest, or a
// local one), opening it on first use.
func (s *Server) open(ref string, dir []string, name string) (*served, error) {
	s.mu.Lock()
	if sv, ok := s.images[ref]; ok {
		s.mu.Unlock()
		sv.attached.Activity.Touch()
		return sv, nil
	}
	if s.closed {
		s.mu.Unlock()
		return nil, syscall.ESHUTDOWN
	}
	s.mu.Unlock()
	v, err, _ := s.opening.Do(ref, func() (any, error) {
		// Not the lookup's context: an interrupted lookup must not abort
		// an open another lookup may wait for.
		ctx, cancel := context.WithTimeout(context.Background(), openTimeout)
		defer cancel()
		start := time.Now()
		img, err := image.Open(ctx, ref, s.imageOptions(ref))
		if err != nil {
			return nil, err
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.closed {
			img.Close()
			return nil, syscall.ESHUTDOWN
		}
		sv := &served{path: fs.CatalogPath(dir, name), dir: dir, name: name, img: img, opened: time.Now(),
			attached: &fs.ServedImage{Tree: img.Tree(), Readers: img.ContentReaders(), Activity: &fs.Activity{}, FileCopies: img.FileCopies()}}
		sv.attached.Activity.Touch()
		s.images[ref] = sv
		s.log.Info("image opened", "path", sv.path, "digest", img.Manifest.Digest, "in", time.Since(start).Round(time.Millisecond))
		return sv, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*served), nil
}

// resolveTag returns the digest ref's tag names now, asking the registry
// when the last answer is older than the tag TTL. When the registry cannot
// answer, the last known digest is kept (with the error recorded).
func (s *Server) resolveTag(ctx context.Context, ref, path string) (digest.Digest, error) {
	s.mu.Lock()
	rec, ok := s.tags[ref]
	s.mu.Unlock()
	if ok && s.opts.TagTTL > 0 && time.Since(rec.resolved) < s.opts.TagTTL {
		return rec.digest, nil
	}
	v, err, _ := s.opening.Do("tag "+ref, func() (any, error) {
		rctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		m, err := image.Resolve(rctx, ref, s.imageOptions(ref))
		if err != nil {
			return nil, err
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if old, ok := s.tags[ref]; ok && old.digest != m.Digest {
			s.log.Info("tag moved", "tag", ref, "from", old.digest, "to", m.Digest)
		}
		s.tags[ref] = &tagRecord{path: path, digest: m.Digest, resolved: time.Now()}
		return m.Digest, nil
	})
	if err != nil {
		if ok {
			s.recordError(path, fmt.Errorf("tag not resolved again, still %s: %w", rec.digest, err))
			return rec.digest, nil
		}
		return "", err
	}
	return v.(digest.Digest), nil
}

// releaseIdle closes, every little while, the images nobody used for the
// idle timeout and that have no file open.
func (s *Server) releaseIdle() {
	every := min(max(s.opts.IdleTimeout/4, 50*time.Millisecond), 30*time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		s.mu.Lock()
		var idle []*served
		for ref, sv := range s.images {
			a := sv.attached.Activity
			if a.OpenFiles() <= 0 && time.Since(a.LastUse()) > s.opts.IdleTimeout {
				idle = append(idle, sv)
				delete(s.images, ref)
			}
		}
		s.mu.Unlock()
		for _, sv := range idle {
			s.mount.Release(sv.dir, sv.name, sv.attached)
			s.log.Info("idle image released", "path", sv.path, "idle", time.Since(sv.attached.Activity.LastUse()).Round(time.Second))
			sv.img.Close()
		}
	}
}

// errnoFor maps an open or resolve error to what the lookup answers.
func errnoFor(err error) error {
	var errno syscall.Errno
	switch {
	case errors.As(err, &errno):
		return errno
	case errors.Is(err, fetch.ErrNotFound):
		return syscall.ENOENT
	case errors.Is(err, fetch.ErrUnauthorized):
		return syscall.EACCES
	}
	return syscall.EIO
}
