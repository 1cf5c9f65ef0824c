package fs

import (
	"context"
	"errors"
	"fmt"
	iofs "io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// requestDelta runs op and returns how many requests of each kind the
// mount received meanwhile.
func requestDelta(t *testing.T, m *Mounted, op func()) map[string]uint64 {
	t.Helper()
	before := m.Requests()
	op()
	after := m.Requests()
	if len(before) != len(after) || len(after) != int(numRequestKinds) {
		t.Fatalf("Requests: %d then %d kinds, want %d", len(before), len(after), numRequestKinds)
	}
	d := map[string]uint64{}
	for i, c := range after {
		if c.Kind != before[i].Kind {
			t.Fatalf("kind %d: %q then %q", i, before[i].Kind, c.Kind)
		}
		if n := c.N - before[i].N; n > 0 {
			d[c.Kind] = n
		}
	}
	return d
}

// TestFUSERequestCounts: each kind of operation is counted under its kind,
// and Total is the sum.
func TestFUSERequestCounts(t *testing.T) {
	img := buildTestImage(t)
	mnt, m := mountForTest(t, context.Background(), img.tree, img.readers, MountOptions{Logger: quietLogger()})
	p := func(rel string) string { return filepath.Join(mnt, rel) }
	for _, tc := range []struct {
		kind string
		op   func() error
	}{
		{"lookup", func() error { _, err := os.Lstat(p("owned")); return err }},
		{"readdirplus", func() error { _, err := os.ReadDir(p("data")); return err }},
		{"read", func() error { _, err := os.ReadFile(p("data/big")); return err }},
		{"readlink", func() error { _, err := os.Readlink(p("lib")); return err }},
		{"getxattr", func() error { _, err := unix.Lgetxattr(p("owned"), "user.a", make([]byte, 16)); return err }},
		{"listxattr", func() error { _, err := unix.Llistxattr(p("owned"), make([]byte, 64)); return err }},
		{"statfs", func() error { var st unix.Statfs_t; return unix.Statfs(mnt, &st) }},
	} {
		var err error
		d := requestDelta(t, m, func() { err = tc.op() })
		if err != nil {
			t.Fatalf("%s: %v", tc.kind, err)
		}
		if d[tc.kind] == 0 {
			t.Errorf("%s: not counted; counted %v", tc.kind, d)
		}
	}
	var sum uint64
	for _, c := range m.Requests() {
		sum += c.N
	}
	if r := m.Requests(); r.Total() != sum || sum == 0 || r.Count("lookup") == 0 || r.Count("no such kind") != 0 {
		t.Errorf("Total %d, sum %d, lookup %d", r.Total(), sum, r.Count("lookup"))
	}
}

// capNetRaw is a valid security.capability value (VFS_CAP_REVISION_2,
// effective, CAP_NET_RAW permitted): the kernel checks the format when it
// reads one.
const capNetRaw = "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"

// xattrTestTree is 10 directories of 10 files (content "f/dNN/fNN"); with
// capFile, bin/ping carries security.capability, as Debian ships it.
func xattrTestTree(t *testing.T, capFile bool) (*Tree, []ContentReader) {
	t.Helper()
	var l layerBuilder
	l.add(dir("bin"), nil)
	ping := reg("bin/ping", 0)
	ping.Mode = 0o755
	if capFile {
		ping.Xattrs = map[string]string{"security.capability": capNetRaw}
	}
	l.add(ping, []byte("ping"))
	for d := range 10 {
		for f := range 10 {
			name := fmt.Sprintf("tree/d%02d/f%02d", d, f)
			l.add(reg(name, 0), []byte("f/"+name[len("tree/"):]))
		}
	}
	return mustMerge(t, l.entries), []ContentReader{memReader{l.data}}
}

// TestFUSENoXattrs: a tree without xattrs answers the first GETXATTR and
// LISTXATTR with ENOSYS; the kernel then answers EOPNOTSUPP itself and
// sends no more. A tree with xattrs answers each one, exactly.
func TestFUSENoXattrs(t *testing.T) {
	for _, withCap := range []bool{false, true} {
		t.Run(fmt.Sprintf("xattrs=%v", withCap), func(t *testing.T) {
			tree, readers := xattrTestTree(t, withCap)
			mnt, m := mountForTest(t, context.Background(), tree, readers, MountOptions{Logger: quietLogger()})
			if m.HasXattrs() != withCap {
				t.Fatalf("HasXattrs %v", m.HasXattrs())
			}
			paths := []string{"bin/ping", "tree", "tree/d00/f00", "tree/d09/f09", "tree/d05", "bin"}
			buf := make([]byte, 64)
			d := requestDelta(t, m, func() {
				for _, rel := range paths {
					_, err := unix.Lgetxattr(filepath.Join(mnt, rel), "trusted.overlay.opaque", buf)
					want := syscall.ENODATA
					if !withCap {
						want = syscall.EOPNOTSUPP
					}
					if !errors.Is(err, want) {
						t.Errorf("getxattr %s: %v, want %v", rel, err, want)
					}
					if _, err := unix.Llistxattr(filepath.Join(mnt, rel), buf); !withCap && !errors.Is(err, syscall.EOPNOTSUPP) {
						t.Errorf("listxattr %s: %v, want EOPNOTSUPP", rel, err)
					}
				}
			})
			want := uint64(1)
			if withCap {
				want = uint64(len(paths))
			}
			if d["getxattr"] != want || d["listxattr"] != want {
				t.Errorf("%d getxattr and %d listxattr requests for %d paths, want %d each", d["getxattr"], d["listxattr"], len(paths), want)
			}
			n, err := unix.Lgetxattr(filepath.Join(mnt, "bin/ping"), "security.capability", buf)
			switch {
			case withCap && (err != nil || string(buf[:n]) != capNetRaw):
				t.Errorf("security.capability: %q %v", buf[:n], err)
			case !withCap && !errors.Is(err, syscall.EOPNOTSUPP):
				t.Errorf("security.capability of a tree without xattrs: %v, want EOPNOTSUPP", err)
			}
			if withCap {
				n, err := unix.Llistxattr(filepath.Join(mnt, "bin/ping"), buf)
				if err != nil || string(buf[:n]) != "security.capability\x00" {
					t.Errorf("listxattr bin/ping: %q %v", buf[:n], err)
				}
			}
		})
	}
}

// TestFUSEUnderOverlay stacks a read-only overlayfs on the mount, as
// Apptainer does for a directory image (lowerdir=EMPTY:MNT, no upper),
// walks it and reads through it. The overlay asks trusted.overlay.* of
// every path it looks up: a tree without xattrs gets one GETXATTR in all;
// a tree with xattrs keeps them through the overlay, at a request per
// probe.
func TestFUSEUnderOverlay(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting overlayfs needs root")
	}
	for _, withCap := range []bool{false, true} {
		t.Run(fmt.Sprintf("xattrs=%v", withCap), func(t *testing.T) {
			tree, readers := xattrTestTree(t, withCap)
			mnt, m := mountForTest(t, context.Background(), tree, readers, MountOptions{Logger: quietLogger()})
			empty, root := t.TempDir(), t.TempDir()
			if err := unix.Mount("overlay", root, "overlay", unix.MS_RDONLY, "lowerdir="+empty+":"+mnt+",redirect_dir=on"); err != nil {
				t.Skipf("overlayfs over FUSE: %v", err)
			}
			t.Cleanup(func() {
				if err := unix.Unmount(root, 0); err != nil {
					t.Errorf("unmount overlay: %v", err)
					_ = unix.Unmount(root, unix.MNT_DETACH)
				}
			})
			var walked int
			d := requestDelta(t, m, func() {
				err := filepath.WalkDir(root, func(p string, de iofs.DirEntry, err error) error {
					if err != nil {
						return err
					}
					walked++
					var st unix.Stat_t
					if err := unix.Lstat(p, &st); err != nil {
						return err
					}
					if rel, _ := filepath.Rel(root, p); de.Type().IsRegular() && strings.HasPrefix(rel, "tree/") {
						if data, err := os.ReadFile(p); err != nil || string(data) != "f/"+rel[len("tree/"):] {
							t.Errorf("%s through the overlay: %q %v", rel, data, err)
						}
					}
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
			})
			if walked != tree.Len() {
				t.Errorf("walked %d paths through the overlay, the tree has %d", walked, tree.Len())
			}
			switch g := d["getxattr"]; {
			case !withCap && g > 1:
				t.Errorf("%d GETXATTR requests for a walk of %d paths of a tree without xattrs, want at most 1", g, walked)
			case withCap && g < uint64(walked-1):
				t.Errorf("%d GETXATTR requests for a walk of %d paths: the overlay probes each path of a tree with xattrs", g, walked)
			}
			buf := make([]byte, 64)
			n, err := unix.Lgetxattr(filepath.Join(root, "bin/ping"), "security.capability", buf)
			switch {
			case withCap && (err != nil || string(buf[:n]) != capNetRaw):
				t.Errorf("security.capability through the overlay: %q %v", buf[:n], err)
			case !withCap && !errors.Is(err, syscall.EOPNOTSUPP) && !errors.Is(err, syscall.ENODATA):
				t.Errorf("security.capability through the overlay, tree without xattrs: %v", err)
			}
		})
	}
}

// TestFUSENoOpendir: OPENDIR is answered ENOSYS (the kernel offers
// NO_OPENDIR_SUPPORT), so the kernel sends no OPENDIR or RELEASEDIR after
// the first, lists a directory in READDIRPLUS requests without a handle,
// and serves the next listings from its cache. A directory too big for one
// request lists whole, in order, at every offset.
func TestFUSENoOpendir(t *testing.T) {
	var l layerBuilder
	const n = 3000
	var want []string
	for i := range n {
		name := fmt.Sprintf("big/entry-with-a-longish-name-%05d", i)
		l.add(reg(name, 0), []byte("x"))
		want = append(want, name[len("big/"):])
	}
	l.add(dir("small"), nil)
	l.add(reg("small/a", 0), []byte("a"))
	tree := mustMerge(t, l.entries)
	mnt, m := mountForTest(t, context.Background(), tree, []ContentReader{memReader{l.data}}, MountOptions{Logger: quietLogger()})
	if m.server.KernelSettings().Flags64()&fuse.CAP_NO_OPENDIR_SUPPORT == 0 {
		t.Skip("this kernel does not offer NO_OPENDIR_SUPPORT (Linux 5.1 and later do): OPENDIR is served as before")
	}
	list := func(rel string) []string {
		t.Helper()
		f, err := os.Open(filepath.Join(mnt, rel))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		names, err := f.Readdirnames(-1)
		if err != nil {
			t.Fatal(err)
		}
		return names
	}
	if got := list("small"); len(got) != 1 || got[0] != "a" {
		t.Fatalf("small: %q", got)
	}
	first := requestDelta(t, m, func() {
		if got := list("big"); !slices.Equal(got, want) {
			t.Fatalf("big: %d names, want %d (first %q)", len(got), len(want), got[:min(3, len(got))])
		}
	})
	if first["opendir"] != 0 || first["releasedir"] != 0 || first["readdirplus"] < 2 {
		t.Errorf("first listing of a big directory: %v; want no opendir or releasedir and several readdirplus", first)
	}
	again := requestDelta(t, m, func() {
		if got := list("big"); !slices.Equal(got, want) {
			t.Fatalf("big, again: %d names", len(got))
		}
		if got := list("small"); len(got) != 1 {
			t.Fatalf("small, again: %q", got)
		}
	})
	if len(again) != 0 {
		t.Errorf("listing again sent requests %v; want none (the kernel's cache)", again)
	}
	if r := m.Requests(); r.Count("opendir") > 1 || r.Count("releasedir") != 0 {
		t.Errorf("%d OPENDIR and %d RELEASEDIR requests in all, want at most 1 and 0", r.Count("opendir"), r.Count("releasedir"))
	}
}
