package integration

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

// TreeEntry is what a conformance test compares of one path of a tree: the
// metadata lstat(2) and the xattr calls report, and a digest of the content.
type TreeEntry struct {
	Path   string // relative to the tree's root, "/"-separated; "." for the root
	Type   string // file, dir, symlink, char, block, fifo, socket
	Perm   uint32 // permission and special bits (07777)
	UID    uint32
	GID    uint32
	Size   int64 // regular files and symlinks
	Mtime  time.Time
	Link   string            // symlink target
	Rdev   uint64            // devices
	Nlink  uint64            //
	Xattrs map[string]string // name -> raw value
	SHA256 string            // regular files
	Ino    uint64            // for hard-link identity; never compared directly
}

// Tree is a scanned directory tree, keyed by relative path.
type Tree struct {
	Root    string
	Entries map[string]*TreeEntry
}

// ScanOptions tune ScanTree.
type ScanOptions struct {
	// Skip returns true for relative paths left out of the scan (a skipped
	// directory is not entered).
	Skip func(rel string) bool
	// NoContent leaves SHA256 empty (metadata-only scans of big trees).
	NoContent bool
	// SkipContent returns true for relative paths of files not to read
	// (their SHA256 stays empty); see CompareOptions.SkipContent.
	SkipContent func(rel string) bool
}

// scanHashWorkers read file contents in parallel: over a lazy mount each
// read may be a registry round trip.
const scanHashWorkers = 16

// ScanTree walks root without following symlinks and records every entry.
// Contents are digested by a pool of workers once the walk is done.
func ScanTree(root string, opts ScanOptions) (*Tree, error) {
	t := &Tree{Root: root, Entries: map[string]*TreeEntry{}}
	var files []*TreeEntry
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if rel != "." && opts.Skip != nil && opts.Skip(rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		e, err := scanEntry(p, rel, false)
		if err != nil {
			return err
		}
		t.Entries[rel] = e
		if e.Type == "file" && (opts.SkipContent == nil || !opts.SkipContent(rel)) {
			files = append(files, e)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("scan %s: %w", root, err)
	}
	if opts.NoContent {
		return t, nil
	}
	var g errgroup.Group
	g.SetLimit(scanHashWorkers)
	for _, e := range files {
		g.Go(func() error {
			sum, err := fileSHA256(filepath.Join(root, filepath.FromSlash(e.Path)))
			e.SHA256 = sum
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, fmt.Errorf("scan %s: %w", root, err)
	}
	return t, nil
}

func scanEntry(p, rel string, content bool) (*TreeEntry, error) {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return nil, fmt.Errorf("lstat %s: %w", p, err)
	}
	e := &TreeEntry{
		Path:  rel,
		Type:  fileType(st.Mode),
		Perm:  st.Mode & 0o7777,
		UID:   st.Uid,
		GID:   st.Gid,
		Mtime: time.Unix(st.Mtim.Sec, st.Mtim.Nsec).UTC(),
		Nlink: uint64(st.Nlink),
		Ino:   st.Ino,
	}
	switch e.Type {
	case "file":
		e.Size = st.Size
		if content {
			sum, err := fileSHA256(p)
			if err != nil {
				return nil, err
			}
			e.SHA256 = sum
		}
	case "symlink":
		e.Size = st.Size
		target, err := os.Readlink(p)
		if err != nil {
			return nil, fmt.Errorf("readlink %s: %w", p, err)
		}
		e.Link = target
	case "char", "block":
		e.Rdev = st.Rdev
	}
	xattrs, err := readXattrs(p)
	if err != nil {
		return nil, err
	}
	e.Xattrs = xattrs
	return e, nil
}

func fileType(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return "file"
	case unix.S_IFDIR:
		return "dir"
	case unix.S_IFLNK:
		return "symlink"
	case unix.S_IFCHR:
		return "char"
	case unix.S_IFBLK:
		return "block"
	case unix.S_IFIFO:
		return "fifo"
	case unix.S_IFSOCK:
		return "socket"
	}
	return fmt.Sprintf("type-%o", mode&unix.S_IFMT)
}

// fileSHA256 digests a regular file's content.
func fileSHA256(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", fmt.Errorf("open %s: %w", p, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read %s: %w", p, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// readXattrs lists and reads every extended attribute of p (not following
// a symlink). An empty map means none.
func readXattrs(p string) (map[string]string, error) {
	out := map[string]string{}
	size, err := unix.Llistxattr(p, nil)
	if errors.Is(err, unix.ENOTSUP) || size == 0 {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listxattr %s: %w", p, err)
	}
	buf := make([]byte, size)
	size, err = unix.Llistxattr(p, buf)
	if err != nil {
		return nil, fmt.Errorf("listxattr %s: %w", p, err)
	}
	for _, name := range strings.Split(strings.TrimRight(string(buf[:size]), "\x00"), "\x00") {
		if name == "" {
			continue
		}
		n, err := unix.Lgetxattr(p, name, nil)
		if err != nil {
			return nil, fmt.Errorf("getxattr %s %s: %w", p, name, err)
		}
		val := make([]byte, n)
		if n > 0 {
			if n, err = unix.Lgetxattr(p, name, val); err != nil {
				return nil, fmt.Errorf("getxattr %s %s: %w", p, name, err)
			}
		}
		out[name] = string(val[:n])
	}
	return out, nil
}

// CompareOptions say what a comparison leaves out, each for a stated reason.
type CompareOptions struct {
	// IgnoreMtime returns true for paths whose mtime is not compared.
	IgnoreMtime func(e *TreeEntry) bool
	// IgnoreXattr returns true for attributes the oracle cannot set.
	IgnoreXattr func(path, name string) bool
	// IgnoreDirNlink skips the link count of directories (file systems
	// count them differently); files' link counts are always compared.
	IgnoreDirNlink bool
	// SkipContent returns true for paths whose content was not read (the
	// same predicate as the scan's ScanOptions.SkipContent).
	SkipContent func(rel string) bool
}

// CompareTrees lists every difference of got from want, sorted by path:
// paths present in only one tree, then per path type, permission bits,
// owner, size, mtime (to the nanosecond), symlink target, device number,
// xattr names and values, content digest, link count and hard-link
// identity (the set of paths sharing an inode must be the same).
func CompareTrees(want, got *Tree, opts CompareOptions) []string {
	var diffs []string
	add := func(p, format string, args ...any) {
		diffs = append(diffs, "/"+strings.TrimPrefix(p, ".")+": "+fmt.Sprintf(format, args...))
	}
	paths := make([]string, 0, len(want.Entries)+len(got.Entries))
	for p := range want.Entries {
		paths = append(paths, p)
	}
	for p := range got.Entries {
		if _, ok := want.Entries[p]; !ok {
			paths = append(paths, p)
		}
	}
	slices.Sort(paths)
	wantLinks, gotLinks := hardlinkGroups(want), hardlinkGroups(got)
	for _, p := range paths {
		w, g := want.Entries[p], got.Entries[p]
		switch {
		case g == nil:
			add(p, "missing (oracle has a %s)", w.Type)
			continue
		case w == nil:
			add(p, "unexpected %s (not in the oracle)", g.Type)
			continue
		case w.Type != g.Type:
			add(p, "type %s, want %s", g.Type, w.Type)
			continue
		}
		if w.Perm != g.Perm {
			add(p, "mode %04o, want %04o", g.Perm, w.Perm)
		}
		if w.UID != g.UID || w.GID != g.GID {
			add(p, "owner %d:%d, want %d:%d", g.UID, g.GID, w.UID, w.GID)
		}
		if w.Type != "dir" && w.Size != g.Size {
			add(p, "size %d, want %d", g.Size, w.Size)
		}
		if (opts.IgnoreMtime == nil || !opts.IgnoreMtime(w)) && !w.Mtime.Equal(g.Mtime) {
			add(p, "mtime %s, want %s", g.Mtime.Format(time.RFC3339Nano), w.Mtime.Format(time.RFC3339Nano))
		}
		if w.Link != g.Link {
			add(p, "link target %q, want %q", g.Link, w.Link)
		}
		if w.Rdev != g.Rdev {
			add(p, "rdev %d:%d, want %d:%d", unix.Major(g.Rdev), unix.Minor(g.Rdev), unix.Major(w.Rdev), unix.Minor(w.Rdev))
		}
		if w.SHA256 != g.SHA256 && (opts.SkipContent == nil || !opts.SkipContent(p)) {
			add(p, "content sha256 %.12s, want %.12s", g.SHA256, w.SHA256)
		}
		if (w.Type != "dir" || !opts.IgnoreDirNlink) && w.Nlink != g.Nlink {
			add(p, "nlink %d, want %d", g.Nlink, w.Nlink)
		}
		compareXattrs(p, w.Xattrs, g.Xattrs, opts.IgnoreXattr, add)
		if w.Type != "dir" {
			if wl, gl := wantLinks[w.Ino], gotLinks[g.Ino]; !slices.Equal(wl, gl) {
				add(p, "shares its inode with %q, want %q", gl, wl)
			}
		}
	}
	return diffs
}

func compareXattrs(p string, want, got map[string]string, ignore func(string, string) bool, add func(string, string, ...any)) {
	names := map[string]bool{}
	for k := range want {
		names[k] = true
	}
	for k := range got {
		names[k] = true
	}
	sorted := slices.Sorted(func(yield func(string) bool) {
		for k := range names {
			if !yield(k) {
				return
			}
		}
	})
	for _, k := range sorted {
		if ignore != nil && ignore(p, k) {
			continue
		}
		w, inWant := want[k]
		g, inGot := got[k]
		switch {
		case !inGot:
			add(p, "xattr %s missing (want %q)", k, w)
		case !inWant:
			add(p, "unexpected xattr %s=%q", k, g)
		case w != g:
			add(p, "xattr %s=%q, want %q", k, g, w)
		}
	}
}

// hardlinkGroups maps each inode of the tree's non-directories to the
// sorted paths that share it.
func hardlinkGroups(t *Tree) map[uint64][]string {
	groups := map[uint64][]string{}
	for p, e := range t.Entries {
		if e.Type != "dir" {
			groups[e.Ino] = append(groups[e.Ino], p)
		}
	}
	for _, g := range groups {
		slices.Sort(g)
	}
	return groups
}

// FormatDiffs renders at most limit differences, one per line, with a count
// of the rest.
func FormatDiffs(diffs []string, limit int) string {
	var b strings.Builder
	for i, d := range diffs {
		if i == limit {
			fmt.Fprintf(&b, "... and %d more\n", len(diffs)-limit)
			break
		}
		b.WriteString(d)
		b.WriteByte('\n')
	}
	return b.String()
}
