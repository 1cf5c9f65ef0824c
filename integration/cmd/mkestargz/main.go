// Command mkestargz builds a multi-layer eStargz image from host directory
// trees and pushes it to a plain-HTTP registry: the test image of
// scripts/stargz-compare, which both stargz-store and imgfs can mount.
//
//	mkestargz -layer /usr/lib/python3.11 -layer /usr/share/perl,/usr/share/zoneinfo 127.0.0.1:5000/test/esgz:1
//
// Each -layer (repeatable; one layer each, in order) names one or more
// host dirs, comma-separated. Each dir is stored under its own absolute path
// (without the leading "/"), after its parent dirs, so the layers of
// different dirs do not overlap; a path through a symlink is refused. Only regular files, dirs and symlinks are
// kept. Every layer carries the containerd.io/snapshot/stargz/toc.digest and
// io.containers.estargz.uncompressed-size annotations: stargz-store refuses
// to verify (and so to mount) a layer without the TOC digest, and names the
// layer's directory after it. The image is an OCI manifest, linux/GOARCH.
//
// It prints one line per layer and the manifest digest; -summary also
// writes "index blob-digest toc-digest size uncompressed-size files dirs"
// per layer and "manifest DIGEST" to a file.
package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, " ") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// options are the eStargz build settings.
type options struct {
	chunkSize  int      // 0: estargz's default (4 MiB)
	level      int      // noLevel: estargz's default (gzip.BestCompression)
	prioritize []string // in-layer paths for the prefetch section
	tmpDir     string
}

const noLevel = -100

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "mkestargz:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		layers  multiFlag
		o       options
		prio    string
		summary string
	)
	flag.Var(&layers, "layer", "host dir(s) of one layer, comma-separated (repeatable, in order)")
	flag.IntVar(&o.chunkSize, "chunk-size", 0, "eStargz chunk size in bytes (0: estargz's default, 4 MiB)")
	flag.IntVar(&o.level, "level", noLevel, "gzip level (default: estargz's, gzip.BestCompression)")
	flag.StringVar(&prio, "prioritize", "", "comma-separated in-layer paths (e.g. usr/lib/python3.11/os.py) for the prefetch section of each layer that has them")
	flag.StringVar(&o.tmpDir, "tmp", "", "directory for the temporary tar and blob files (default $TMPDIR)")
	flag.StringVar(&summary, "summary", "", "also write a summary (one line per layer, then the manifest digest) here")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: mkestargz [flags] -layer DIR[,DIR...] [-layer ...] REGISTRY/REPO:TAG")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 || len(layers) == 0 {
		flag.Usage()
		os.Exit(2)
	}
	if prio != "" {
		o.prioritize = strings.Split(prio, ",")
	}
	// name.Insecure: plain HTTP is allowed (the registries are on loopback).
	ref, err := name.ParseReference(flag.Arg(0), name.Insecure)
	if err != nil {
		return fmt.Errorf("reference %q: %w", flag.Arg(0), err)
	}

	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	var sum bytes.Buffer
	for i, spec := range layers {
		l, err := buildLayer(strings.Split(spec, ","), o)
		if err != nil {
			return fmt.Errorf("layer %d (%s): %w", i, spec, err)
		}
		defer os.Remove(l.path)
		fmt.Printf("layer %d: %s size=%d uncompressed=%d files=%d dirs=%d toc=%s (%s)\n",
			i, l.digest, l.size, l.usize, l.files, l.dirs, l.toc, spec)
		fmt.Fprintf(&sum, "%d %s %s %d %d %d %d\n", i, l.digest, l.toc, l.size, l.usize, l.files, l.dirs)
		img, err = mutate.Append(img, mutate.Addendum{
			Layer:     l,
			MediaType: types.OCILayer,
			Annotations: map[string]string{
				estargz.TOCJSONDigestAnnotation:         l.toc,
				estargz.StoreUncompressedSizeAnnotation: strconv.FormatInt(l.usize, 10),
			},
		})
		if err != nil {
			return fmt.Errorf("layer %d: append: %w", i, err)
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Config.Cmd = []string{"/bin/sh"}
	cf.Config.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if err := remote.Write(ref, img); err != nil {
		return fmt.Errorf("push %s: %w", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		return fmt.Errorf("manifest digest: %w", err)
	}
	fmt.Printf("pushed %s@%s\n", ref.Context().Name(), d)
	if summary != "" {
		fmt.Fprintf(&sum, "manifest %s\n", d)
		if err := os.WriteFile(summary, sum.Bytes(), 0o644); err != nil {
			return fmt.Errorf("summary: %w", err)
		}
	}
	return nil
}

// esgzLayer is a v1.Layer backed by an eStargz blob in a temp file.
type esgzLayer struct {
	path         string
	digest, diff v1.Hash
	toc          string
	size, usize  int64
	files, dirs  int
}

func (l *esgzLayer) Digest() (v1.Hash, error)            { return l.digest, nil }
func (l *esgzLayer) DiffID() (v1.Hash, error)            { return l.diff, nil }
func (l *esgzLayer) Size() (int64, error)                { return l.size, nil }
func (l *esgzLayer) MediaType() (types.MediaType, error) { return types.OCILayer, nil }
func (l *esgzLayer) Compressed() (io.ReadCloser, error)  { return os.Open(l.path) }

// Uncompressed is not needed to push (the diff ID is known).
func (l *esgzLayer) Uncompressed() (io.ReadCloser, error) {
	return nil, errors.New("mkestargz: uncompressed layer not available")
}

// buildLayer writes dirs into a temp tar, converts it to eStargz into
// another temp file, and returns that (the caller removes l.path).
func buildLayer(dirs []string, o options) (*esgzLayer, error) {
	tf, err := os.CreateTemp(o.tmpDir, "mkestargz-tar-")
	if err != nil {
		return nil, fmt.Errorf("temp tar: %w", err)
	}
	defer os.Remove(tf.Name())
	defer tf.Close()
	files, ndirs, err := writeTar(tf, dirs)
	if err != nil {
		return nil, fmt.Errorf("tar: %w", err)
	}
	st, err := tf.Stat()
	if err != nil {
		return nil, fmt.Errorf("temp tar: %w", err)
	}

	var opts []estargz.Option
	if o.chunkSize > 0 {
		opts = append(opts, estargz.WithChunkSize(o.chunkSize))
	}
	if o.level != noLevel {
		opts = append(opts, estargz.WithCompressionLevel(o.level))
	}
	if len(o.prioritize) > 0 {
		// Not every layer has every prioritized path.
		var missed []string
		opts = append(opts, estargz.WithPrioritizedFiles(o.prioritize), estargz.WithAllowPrioritizeNotFound(&missed))
	}
	blob, err := estargz.Build(io.NewSectionReader(tf, 0, st.Size()), opts...)
	if err != nil {
		return nil, fmt.Errorf("estargz build: %w", err)
	}
	defer blob.Close()

	bf, err := os.CreateTemp(o.tmpDir, "mkestargz-blob-")
	if err != nil {
		return nil, fmt.Errorf("temp blob: %w", err)
	}
	ok := false
	defer func() {
		bf.Close()
		if !ok {
			os.Remove(bf.Name())
		}
	}()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(bf, h), blob)
	if err != nil {
		return nil, fmt.Errorf("estargz build: %w", err)
	}
	if err := blob.Close(); err != nil {
		return nil, fmt.Errorf("estargz build: %w", err)
	}
	usize, err := blob.UncompressedSize()
	if err != nil {
		return nil, fmt.Errorf("uncompressed size: %w", err)
	}
	diff, err := v1.NewHash(blob.DiffID().String())
	if err != nil {
		return nil, fmt.Errorf("diff ID: %w", err)
	}
	if err := bf.Close(); err != nil {
		return nil, fmt.Errorf("temp blob: %w", err)
	}
	ok = true
	return &esgzLayer{
		path:   bf.Name(),
		digest: v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))},
		diff:   diff,
		toc:    blob.TOCDigest().String(),
		size:   n,
		usize:  usize,
		files:  files,
		dirs:   ndirs,
	}, nil
}

// writeTar writes dirs (host paths) as one tar stream, each under its own
// absolute path without the leading "/", its parent dirs first. It returns
// the number of regular files and of dirs written.
func writeTar(w io.Writer, dirs []string) (files, ndirs int, err error) {
	tw := tar.NewWriter(w)
	seen := map[string]bool{}
	add := func(p string, fi fs.FileInfo) error {
		seen[p] = true
		if fi.IsDir() {
			ndirs++
		} else if fi.Mode().IsRegular() {
			files++
		}
		return addEntry(tw, p, fi)
	}
	for _, dir := range dirs {
		dir, err := filepath.Abs(dir)
		if err != nil {
			return 0, 0, err
		}
		// A symlink on the way (Debian's /usr/share/perl/5.36 -> 5.36.0)
		// would put entries under a symlink entry: a layer that mounters
		// read differently (a symlink, or a dir in its place).
		if real, err := filepath.EvalSymlinks(dir); err != nil {
			return 0, 0, err
		} else if real != dir {
			return 0, 0, fmt.Errorf("%s goes through a symlink: name %s instead", dir, real)
		}
		var parents []string
		for d := filepath.Dir(dir); d != "/" && d != "."; d = filepath.Dir(d) {
			parents = append(parents, d)
		}
		sort.Strings(parents) // shortest first
		for _, d := range parents {
			if seen[d] {
				continue
			}
			fi, err := os.Lstat(d)
			if err != nil {
				return 0, 0, err
			}
			if err := add(d, fi); err != nil {
				return 0, 0, err
			}
		}
		err = filepath.WalkDir(dir, func(p string, de fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if seen[p] {
				return nil
			}
			fi, err := de.Info()
			if err != nil {
				return err
			}
			if !fi.Mode().IsRegular() && !fi.IsDir() && fi.Mode()&fs.ModeSymlink == 0 {
				return nil // sockets, devices, fifos
			}
			return add(p, fi)
		})
		if err != nil {
			return 0, 0, err
		}
	}
	return files, ndirs, tw.Close()
}

func addEntry(tw *tar.Writer, p string, fi fs.FileInfo) error {
	link := ""
	if fi.Mode()&fs.ModeSymlink != 0 {
		var err error
		if link, err = os.Readlink(p); err != nil {
			return err
		}
	}
	hdr, err := tar.FileInfoHeader(fi, link)
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	hdr.Name = strings.TrimPrefix(p, "/")
	if fi.IsDir() {
		hdr.Name += "/"
	}
	// Numeric IDs only, and no atime/ctime: the image is the same
	// whichever user names this host has.
	hdr.Uname, hdr.Gname = "", ""
	hdr.AccessTime, hdr.ChangeTime = time.Time{}, time.Time{}
	hdr.Format = tar.FormatPAX
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	if fi.Mode().IsRegular() {
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		if _, err := io.CopyN(tw, f, fi.Size()); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
	}
	return nil
}
