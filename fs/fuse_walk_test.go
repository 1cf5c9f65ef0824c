package fs

import (
	"context"
	"fmt"
	iofs "io/fs"
	"path/filepath"
	"syscall"
	"testing"
)

// walkTestTree is 20 directories of 10 files, nested two deep, with a
// symlink and a hard link in each.
func walkTestTree(t *testing.T) (*Tree, []ContentReader) {
	t.Helper()
	var l layerBuilder
	for d := range 20 {
		dn := fmt.Sprintf("top%d/d%02d", d%4, d)
		for f := range 10 {
			e := reg(fmt.Sprintf("%s/f%02d", dn, f), 0)
			e.UID, e.GID, e.Mode = uint32(d), uint32(f), 0o600+uint32(f)
			l.add(e, []byte(fmt.Sprintf("%s/%d", dn, f)))
		}
		l.add(sym(dn+"/link", "f00"), nil)
		l.add(hardlink(dn+"/hard", dn+"/f01"), nil)
	}
	return mustMerge(t, l.entries), []ContentReader{memReader{l.data}}
}

// TestFUSEWalkNeedsOnlyListings: a walk that lstats everything it lists
// (find, ls -l, overlayfs) costs READDIRPLUS requests and nothing else:
// the listings carry every entry's attributes, with timeouts that keep
// them valid, so no LOOKUP or GETATTR follows. What lstat sees is the
// tree's, inode numbers included (hard links share theirs). A second walk
// is served by the kernel alone.
func TestFUSEWalkNeedsOnlyListings(t *testing.T) {
	tree, readers := walkTestTree(t)
	mnt, m := mountForTest(t, context.Background(), tree, readers, MountOptions{Logger: quietLogger()})
	var st syscall.Stat_t
	if err := syscall.Lstat(mnt, &st); err != nil { // the root's attributes come from a GETATTR
		t.Fatal(err)
	}
	dirs := 0
	_ = tree.Walk(func(_ string, n *Node) error {
		if n.IsDir() {
			dirs++
		}
		return nil
	})
	walk := func() {
		t.Helper()
		seen := 0
		err := filepath.WalkDir(mnt, func(p string, _ iofs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(mnt, p)
			n, ok := tree.Lookup(rel)
			if !ok {
				return fmt.Errorf("%s: not in the tree", rel)
			}
			var st syscall.Stat_t
			if err := syscall.Lstat(p, &st); err != nil {
				return err
			}
			if st.Ino != n.Ino() || st.Mode != n.Mode() || st.Size != n.Size() || st.Nlink != uint64(n.Nlink()) ||
				st.Uid != n.UID() || st.Gid != n.GID() || st.Mtim.Nano() != max(n.ModTime().UnixNano(), 0) {
				t.Errorf("%s: ino %d mode %o size %d nlink %d owner %d:%d mtime %d; tree: %d %o %d %d %d:%d %v",
					rel, st.Ino, st.Mode, st.Size, st.Nlink, st.Uid, st.Gid, st.Mtim.Nano(),
					n.Ino(), n.Mode(), n.Size(), n.Nlink(), n.UID(), n.GID(), n.ModTime())
			}
			seen++
			return nil
		})
		if err != nil || seen != tree.Len() {
			t.Fatalf("walk: %v; %d of %d paths", err, seen, tree.Len())
		}
	}
	cold := requestDelta(t, m, walk)
	others := 0
	for kind, n := range cold {
		// The mount's first OPENDIR is answered ENOSYS (TestFUSENoOpendir).
		if kind != "readdirplus" && (kind != "opendir" || n > 1) {
			others++
		}
	}
	if others > 0 || cold["readdirplus"] == 0 || cold["readdirplus"] > uint64(2*dirs) {
		t.Errorf("cold walk of %d directories sent %v; want READDIRPLUS only, at most 2 per directory", dirs, cold)
	}
	if warm := requestDelta(t, m, walk); len(warm) != 0 {
		t.Errorf("second walk sent %v; want nothing (the kernel's caches)", warm)
	}
	var a, b syscall.Stat_t
	if err := syscall.Lstat(filepath.Join(mnt, "top0/d00/hard"), &a); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Lstat(filepath.Join(mnt, "top0/d00/f01"), &b); err != nil || a.Ino != b.Ino || a.Nlink != 2 {
		t.Errorf("hard link: ino %d and %d, nlink %d, %v", a.Ino, b.Ino, a.Nlink, err)
	}
}
