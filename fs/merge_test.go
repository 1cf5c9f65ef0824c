package fs

import (
	"errors"
	"fmt"
	iofs "io/fs"
	"math/rand/v2"
	"path"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/imgfs/imgfs/index"
)

func TestMergeRules(t *testing.T) {
	type layers = [][]index.Entry
	cases := []struct {
		name   string
		layers layers
		want   []string
		warns  int // expected warnings; -1: don't care
	}{
		{
			name:   "later file replaces earlier",
			layers: layers{{reg("a", 1), reg("b", 1)}, {reg("a", 2)}},
			want:   []string{"/ d0", "/a f1", "/b f0"},
		},
		{
			name:   "dir over dir merges children",
			layers: layers{{dir("d"), reg("d/x", 1)}, {dir("d"), reg("d/y", 1)}},
			want:   []string{"/ d0", "/d d1", "/d/x f0", "/d/y f1"},
		},
		{
			name:   "non-dir over dir removes the subtree",
			layers: layers{{dir("d"), dir("d/e"), reg("d/e/x", 1)}, {reg("d", 1)}},
			want:   []string{"/ d0", "/d f1"},
		},
		{
			name:   "symlink over dir removes the subtree",
			layers: layers{{dir("d"), reg("d/x", 1)}, {sym("d", "/elsewhere")}},
			want:   []string{"/ d0", "/d l1"},
		},
		{
			name:   "dir over non-dir replaces",
			layers: layers{{reg("d", 1)}, {dir("d"), reg("d/y", 1)}},
			want:   []string{"/ d0", "/d d1", "/d/y f1"},
		},
		{
			name:   "whiteout file",
			layers: layers{{reg("a", 1), reg("b", 1)}, {whiteout("a")}},
			want:   []string{"/ d0", "/b f0"},
		},
		{
			name:   "whiteout dir with subtree",
			layers: layers{{dir("d"), dir("d/e"), reg("d/e/x", 1), reg("keep", 1)}, {whiteout("d")}},
			want:   []string{"/ d0", "/keep f0"},
		},
		{
			name:   "whiteout of a missing path is harmless",
			layers: layers{{reg("a", 1)}, {whiteout("nope"), whiteout("a/b"), whiteout("x/y/z")}},
			want:   []string{"/ d0", "/a f0"},
		},
		{
			name:   "whiteout does not hide an entry of its own layer (whiteout after)",
			layers: layers{{reg("a", 1)}, {reg("a", 2), whiteout("a")}},
			want:   []string{"/ d0", "/a f1"},
		},
		{
			name:   "whiteout does not hide an entry of its own layer (whiteout before)",
			layers: layers{{dir("d"), reg("d/old", 1)}, {whiteout("d"), dir("d"), reg("d/new", 1)}},
			want:   []string{"/ d0", "/d d1", "/d/new f1"},
		},
		{
			name:   "opaque hides lower children, keeps same-layer ones (marker first)",
			layers: layers{{dir("d"), reg("d/x", 1), dir("d/e"), reg("d/e/y", 1)}, {dir("d"), opaque("d"), reg("d/z", 1)}},
			want:   []string{"/ d0", "/d d1", "/d/z f1"},
		},
		{
			name:   "opaque hides lower children, keeps same-layer ones (marker last)",
			layers: layers{{dir("d"), reg("d/x", 1)}, {dir("d"), reg("d/z", 1), opaque("d")}},
			want:   []string{"/ d0", "/d d1", "/d/z f1"},
		},
		{
			name:   "opaque dir itself stays without its own dir entry",
			layers: layers{{dir("d"), reg("d/x", 1)}, {opaque("d")}},
			want:   []string{"/ d0", "/d d0"},
		},
		{
			name:   "opaque root",
			layers: layers{{reg("a", 1), dir("d")}, {opaque(""), reg("b", 1)}},
			want:   []string{"/ d0", "/b f1"},
		},
		{
			name:   "whiteout then re-add in a later layer",
			layers: layers{{reg("a", 1)}, {whiteout("a")}, {reg("a", 3)}},
			want:   []string{"/ d0", "/a f2"},
		},
		{
			name:   "whiteout dir then re-add as dir: lower children stay gone",
			layers: layers{{dir("d"), reg("d/x", 1)}, {whiteout("d")}, {dir("d")}},
			want:   []string{"/ d0", "/d d2"},
		},
		{
			name:   "opaque only affects layers below",
			layers: layers{{dir("d"), reg("d/x", 1)}, {dir("d"), opaque("d"), reg("d/y", 1)}, {reg("d/z", 1)}},
			want:   []string{"/ d0", "/d d1", "/d/y f1", "/d/z f2"},
		},
		{
			name:   "implied parents",
			layers: layers{{reg("a/b/c", 1)}},
			want:   []string{"/ d0", "/a d0", "/a/b d0", "/a/b/c f0"},
		},
		{
			name:   "implied parent replaces a lower non-directory",
			layers: layers{{reg("a", 1)}, {reg("a/b", 1)}},
			want:   []string{"/ d0", "/a d1", "/a/b f1"},
			warns:  1,
		},
		{
			name: "path hygiene",
			layers: layers{{
				reg("./a", 1), reg("/b", 1), reg("c//d", 1), reg("e/./f", 1), dir("g/"),
				reg("i/../j", 1), reg("../x", 1), reg("h/../../y", 1), reg("/../z", 1),
			}},
			want:  []string{"/ d0", "/a f0", "/b f0", "/c d0", "/c/d f0", "/e d0", "/e/f f0", "/g d0", "/j f0"},
			warns: 3,
		},
		{
			// As umoci and containerd extract it: the entry goes where the
			// link leads, confined to the root.
			name:   "entry under a symlinked parent goes to the link's target",
			layers: layers{{dir("usr"), dir("usr/t"), sym("usr/l", "t")}, {reg("usr/l/f", 1), reg("usr/l/new/g", 1)}},
			want:   []string{"/ d0", "/usr d0", "/usr/l l0", "/usr/t d0", "/usr/t/f f1", "/usr/t/new d1", "/usr/t/new/g f1"},
		},
		{
			name:   "absolute and escaping link targets stay in the root",
			layers: layers{{sym("abs", "/opt/x"), sym("up", "../../../srv"), reg("abs/f", 1), reg("up/g", 1)}},
			want:   []string{"/ d0", "/abs l0", "/opt d0", "/opt/x d0", "/opt/x/f f0", "/srv d0", "/srv/g f0", "/up l0"},
		},
		{
			name:   "whiteout through a symlinked parent",
			layers: layers{{dir("t"), reg("t/f", 1), reg("t/keep", 1), sym("l", "t")}, {whiteout("l/f")}},
			want:   []string{"/ d0", "/l l0", "/t d0", "/t/keep f0"},
		},
		{
			name:   "a symlink loop is replaced by a directory",
			layers: layers{{sym("a", "b"), sym("b", "a"), reg("a/f", 1)}},
			want:   []string{"/ d0", "/a d0", "/a/f f0", "/b l0"},
			warns:  1,
		},
		{
			name:   "symlink targets kept verbatim",
			layers: layers{{sym("l", "../../etc/passwd")}},
			want:   []string{"/ d0", "/l l0"},
		},
		{
			name:   "devices and fifos",
			layers: layers{{{Name: "c", Type: index.TypeChar}, {Name: "b", Type: index.TypeBlock}, {Name: "p", Type: index.TypeFifo}}},
			want:   []string{"/ d0", "/b b0", "/c c0", "/p p0"},
		},
		{
			name:   "unknown type dropped",
			layers: layers{{{Name: "u", Type: 99}, reg("a", 1)}},
			want:   []string{"/ d0", "/a f0"},
			warns:  1,
		},
		{
			name:   "hardlink to whited-out target is dropped",
			layers: layers{{reg("f", 1)}, {whiteout("f"), hardlink("g", "f")}},
			want:   []string{"/ d0"},
			warns:  1,
		},
		{
			name:   "hardlink to missing, to dir, to itself, escaping: dropped",
			layers: layers{{dir("d"), reg("f", 1), hardlink("h1", "nope"), hardlink("h2", "d"), hardlink("f", "f"), hardlink("h3", "../f")}},
			want:   []string{"/ d0", "/d d0", "/f f0"},
			warns:  4,
		},
		{
			name:   "hardlink resolves to the lower target and keeps its layer",
			layers: layers{{reg("f", 5)}, {hardlink("g", "/f")}},
			want:   []string{"/ d0", "/f f0", "/g f0"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var w warnCounter
			tree := Merge(tc.layers, MergeOptions{Logger: w.logger()})
			checkInvariants(t, tree)
			if got := dump(tree); !slices.Equal(got, tc.want) {
				t.Errorf("tree:\n got %q\nwant %q", got, tc.want)
			}
			if got, ref := dumpWithLinks(tree), referenceMerge(tc.layers); !slices.Equal(got, ref) {
				t.Errorf("differs from the reference model:\n got %q\n ref %q", got, ref)
			}
			if tc.warns >= 0 && w.count() != tc.warns {
				t.Errorf("%d warnings, want %d:\n%s", w.count(), tc.warns, w.buf.String())
			}
		})
	}
}

// A directory remembered as the last parent used must be forgotten when it
// is removed or replaced, even when empty (regression: entries were then
// attached to the detached directory and lost).
func TestMergeStaleParentCache(t *testing.T) {
	cases := [][][]index.Entry{
		{{dir("d"), hardlink("d/h", "missing")}, {whiteout("d"), reg("d/x", 1)}},
		{{dir("d"), hardlink("d/h", "missing")}, {opaque("d"), reg("d/x", 1)}},
		{{dir("a"), dir("a/d"), hardlink("a/d/h", "missing"), sym("a", "elsewhere"), reg("a/d/x", 1)}},
	}
	for i, layers := range cases {
		tree := mustMerge(t, layers...)
		if _, ok := tree.Lookup("d/x"); !ok && i < 2 {
			t.Errorf("case %d: d/x lost: %q", i, dump(tree))
		}
		if got, ref := dumpWithLinks(tree), referenceMerge(layers); !slices.Equal(got, ref) {
			t.Errorf("case %d:\n got %q\n ref %q", i, got, ref)
		}
	}
}

func TestMergeDirMetadataFromLaterLayer(t *testing.T) {
	lower := dir("d")
	lower.Mode, lower.UID = 0o700, 7
	upper := dir("d")
	upper.Mode, upper.UID, upper.ModTime = 0o755, 9, testTime
	tree := mustMerge(t, []index.Entry{lower, reg("d/x", 1)}, []index.Entry{upper})
	d, _ := tree.Lookup("d")
	if d.Perm() != 0o755 || d.UID() != 9 || !d.ModTime().Equal(testTime) || d.Layer() != 1 {
		t.Errorf("dir metadata: perm %o uid %d mtime %v layer %d", d.Perm(), d.UID(), d.ModTime(), d.Layer())
	}
	if _, ok := tree.Lookup("d/x"); !ok {
		t.Error("lower child lost")
	}
}

func TestMergeRootEntry(t *testing.T) {
	root := dir("")
	root.Mode, root.ModTime = 0o700, testTime
	dot := dir("./")
	dot.Mode = 0o750
	tree := mustMerge(t, []index.Entry{root, reg("a", 1)}, []index.Entry{dot})
	if r := tree.Root(); r.Perm() != 0o750 || r.Layer() != 1 || r.Ino() != RootIno || r.Path() != "/" {
		t.Errorf("root: perm %o layer %d ino %d path %q", r.Perm(), r.Layer(), r.Ino(), r.Path())
	}
	// no root entry at all: implied 0755
	tree = mustMerge(t, []index.Entry{reg("a", 1)})
	if r := tree.Root(); r.Mode() != 0o40755 || r.UID() != 0 {
		t.Errorf("implied root mode %o", r.Mode())
	}
}

func TestMergeImpliedDirMetadata(t *testing.T) {
	f := reg("a/b/c", 1)
	f.UID, f.ModTime = 1000, testTime
	tree := mustMerge(t, []index.Entry{f})
	a, _ := tree.Lookup("/a/b")
	if a.Mode() != 0o40755 || a.UID() != 0 || a.GID() != 0 || !a.ModTime().Equal(time.Unix(0, 0)) {
		t.Errorf("implied dir: mode %o uid %d gid %d mtime %v", a.Mode(), a.UID(), a.GID(), a.ModTime())
	}
	// A later dir entry for an implied dir gives it real metadata.
	d := dir("a")
	d.Mode = 0o711
	tree = mustMerge(t, []index.Entry{f, d})
	if a, _ := tree.Lookup("a"); a.Perm() != 0o711 {
		t.Errorf("dir entry after implied: perm %o", a.Perm())
	}
}

func TestMergeHardlinks(t *testing.T) {
	f := reg("bin/f", 10)
	f.Mode, f.UID, f.Xattrs = 0o4755, 3, map[string]string{"user.k": "v"}
	tree := mustMerge(t,
		[]index.Entry{dir("bin"), f, hardlink("bin/g", "bin/f")},
		[]index.Entry{hardlink("h", "bin/g")}, // link to a link: same inode
	)
	nf, _ := tree.Lookup("bin/f")
	ng, _ := tree.Lookup("bin/g")
	nh, _ := tree.Lookup("h")
	for _, n := range []*Node{ng, nh} {
		if n.Ino() != nf.Ino() || n.Nlink() != 3 || n.Entry() != nf.Entry() || n.Layer() != 0 ||
			n.Mode() != 0o104755 || n.Size() != 10 || n.Xattrs()["user.k"] != "v" {
			t.Errorf("%s: ino %d/%d nlink %d layer %d mode %o size %d", n.Path(), n.Ino(), nf.Ino(), n.Nlink(), n.Layer(), n.Mode(), n.Size())
		}
	}
	if nf.Nlink() != 3 {
		t.Errorf("target nlink %d, want 3", nf.Nlink())
	}

	// Replacing the original path leaves the other links on the old inode.
	tree = mustMerge(t,
		[]index.Entry{f, hardlink("g", "bin/f"), hardlink("h", "bin/f")},
		[]index.Entry{reg("bin/f", 20)},
	)
	nf, _ = tree.Lookup("bin/f")
	ng, _ = tree.Lookup("g")
	nh, _ = tree.Lookup("h")
	if nf.Ino() == ng.Ino() || nf.Nlink() != 1 || nf.Size() != 20 {
		t.Errorf("replaced path: ino %d (links %d) nlink %d size %d", nf.Ino(), ng.Ino(), nf.Nlink(), nf.Size())
	}
	if ng.Ino() != nh.Ino() || ng.Nlink() != 2 || ng.Size() != 10 || ng.Layer() != 0 {
		t.Errorf("remaining links: ino %d/%d nlink %d size %d", ng.Ino(), nh.Ino(), ng.Nlink(), ng.Size())
	}

	// Whiting out one link leaves the other with nlink 1.
	tree = mustMerge(t, []index.Entry{reg("a", 1), hardlink("b", "a")}, []index.Entry{whiteout("a")})
	if nb, ok := tree.Lookup("b"); !ok || nb.Nlink() != 1 {
		t.Errorf("after whiteout of the original: %v nlink %d", ok, nb.Nlink())
	}
	if tree.FileBytes() != 1 {
		t.Errorf("FileBytes %d, want 1 (links counted once)", tree.FileBytes())
	}
}

// A link that comes before a whiteout of its target in the same layer
// keeps the target's content, as umoci's in-order extraction does; one
// after it finds nothing.
func TestMergeHardlinkBeforeWhiteoutInOneLayer(t *testing.T) {
	tree := mustMerge(t,
		[]index.Entry{dir("d"), reg("a", 7), reg("d/x", 3)},
		[]index.Entry{hardlink("b", "a"), whiteout("a"), hardlink("late", "a"), hardlink("y", "d/x"), opaque("d")},
	)
	if _, ok := tree.Lookup("a"); ok {
		t.Error("a survived its whiteout")
	}
	nb, ok := tree.Lookup("b")
	if !ok || nb.Size() != 7 || nb.Layer() != 0 || nb.Nlink() != 1 {
		t.Fatalf("b: %v", ok)
	}
	if _, ok := tree.Lookup("late"); ok {
		t.Error("a link after the whiteout found its target")
	}
	if ny, ok := tree.Lookup("y"); !ok || ny.Size() != 3 {
		t.Errorf("link before an opaque marker of its target's directory: %v", ok)
	}
	if nd, ok := tree.Lookup("d"); !ok || len(nd.Children()) != 0 {
		t.Errorf("opaque d still has children")
	}
}

// A root opaque marker hides everything the lower layers had.
func TestMergeRootOpaque(t *testing.T) {
	tree := mustMerge(t,
		[]index.Entry{dir("etc"), reg("etc/old", 1), reg("gone", 1)},
		[]index.Entry{opaque(""), dir("etc"), reg("etc/new", 1)},
	)
	if got := dump(tree); !slices.Equal(got, []string{"/ d0", "/etc d1", "/etc/new f1"}) {
		t.Errorf("tree %v", got)
	}
}

func TestMergeStableInodes(t *testing.T) {
	layers := [][]index.Entry{
		{dir("usr"), dir("usr/bin"), reg("usr/bin/a", 1), reg("usr/bin/b", 1), reg("etc/passwd", 1)},
		{reg("usr/bin/c", 1), whiteout("usr/bin/a")},
	}
	t1, t2 := mustMerge(t, layers...), mustMerge(t, layers...)
	d1, d2 := dump(t1), dump(t2)
	if !slices.Equal(d1, d2) {
		t.Fatal("different trees")
	}
	_ = t1.Walk(func(p string, n *Node) error {
		if m, _ := t2.Lookup(p); m.Ino() != n.Ino() {
			t.Errorf("%s: ino %d vs %d", p, n.Ino(), m.Ino())
		}
		return nil
	})
	// sorted depth-first numbering from the root
	want := map[string]uint64{"/": 1, "/etc": 2, "/etc/passwd": 3, "/usr": 4, "/usr/bin": 5, "/usr/bin/b": 6, "/usr/bin/c": 7}
	for p, ino := range want {
		if n, _ := t1.Lookup(p); n.Ino() != ino {
			t.Errorf("%s: ino %d, want %d", p, n.Ino(), ino)
		}
	}
}

func TestTreeLookupAndWalk(t *testing.T) {
	tree := mustMerge(t, []index.Entry{reg("a/b/c", 1), reg("a/d", 1), reg("e", 1)})
	for _, p := range []string{"a/b/c", "/a/b/c", "./a/b/c", "a//b/c", "a/b/c/"} {
		if n, ok := tree.Lookup(p); !ok || n.Name() != "c" {
			t.Errorf("Lookup(%q) failed", p)
		}
	}
	for _, p := range []string{"", "/", "."} {
		if n, ok := tree.Lookup(p); !ok || n != tree.Root() {
			t.Errorf("Lookup(%q) is not the root", p)
		}
	}
	for _, p := range []string{"x", "a/x", "e/x", "../a", "a/b/c/d"} {
		if _, ok := tree.Lookup(p); ok {
			t.Errorf("Lookup(%q) found something", p)
		}
	}
	var seen []string
	err := tree.Walk(func(p string, n *Node) error {
		seen = append(seen, p)
		if p == "/a/b" {
			return iofs.SkipDir
		}
		return nil
	})
	if err != nil || strings.Join(seen, " ") != "/ /a /a/b /a/d /e" {
		t.Errorf("walk with SkipDir: %v %q", err, seen)
	}
	seen = nil
	err = tree.Walk(func(p string, n *Node) error {
		seen = append(seen, p)
		if p == "/a/b/c" {
			return iofs.SkipAll
		}
		return nil
	})
	if err != nil || len(seen) != 4 {
		t.Errorf("walk with SkipAll: %v %q", err, seen)
	}
	boom := errors.New("boom")
	if err := tree.Walk(func(string, *Node) error { return boom }); !errors.Is(err, boom) {
		t.Errorf("walk error: %v", err)
	}
}

func TestAddSynthetic(t *testing.T) {
	tree := mustMerge(t, []index.Entry{dir("etc"), reg("etc/passwd", 1), reg("f", 1)})
	before := tree.Len()
	attr := SynthAttr{Mode: 0o644, UID: 1, GID: 2, ModTime: testTime}
	n, err := tree.AddFile("/etc/hosts", []byte("127.0.0.1 localhost\n"), attr)
	if err != nil {
		t.Fatal(err)
	}
	if !n.Synthetic() || n.Layer() != SyntheticLayer || n.Size() != 20 || n.Mode() != 0o100644 || n.UID() != 1 ||
		n.GID() != 2 || !n.ModTime().Equal(testTime) || n.Nlink() != 1 || string(n.Content()) != "127.0.0.1 localhost\n" {
		t.Errorf("synthetic file: %+v", n.Entry())
	}
	if _, err := tree.AddDir("etc/sub", SynthAttr{Mode: 0o755}); err != nil {
		t.Fatal(err)
	}
	if _, err := tree.AddSymlink("etc/l", "../f", SynthAttr{Mode: 0o777}); err != nil {
		t.Fatal(err)
	}
	etc, _ := tree.Lookup("etc")
	if etc.Nlink() != 3 {
		t.Errorf("etc nlink %d, want 3", etc.Nlink())
	}
	if l, _ := tree.Lookup("etc/l"); l.Linkname() != "../f" || l.Size() != 4 {
		t.Errorf("symlink %q size %d", l.Linkname(), l.Size())
	}
	if tree.Len() != before+3 {
		t.Errorf("Len %d, want %d", tree.Len(), before+3)
	}
	checkInvariants(t, tree)

	for _, tc := range []struct {
		path string
		want error
	}{
		{"etc/passwd", iofs.ErrExist},
		{"nope/x", iofs.ErrNotExist},
		{"f/x", iofs.ErrInvalid},
		{"/", iofs.ErrInvalid},
		{"../x", iofs.ErrInvalid},
	} {
		if _, err := tree.AddFile(tc.path, nil, attr); !errors.Is(err, tc.want) {
			t.Errorf("AddFile(%q): %v, want %v", tc.path, err, tc.want)
		}
	}
	tree.Freeze()
	if _, err := tree.AddDir("new", attr); !errors.Is(err, ErrFrozen) {
		t.Errorf("AddDir after Freeze: %v", err)
	}
}

// referenceMerge is a deliberately naive model of the merge rules: a flat
// map of paths, subtrees removed by prefix. It renders like dump, with hard
// links shown as their target's kind and layer plus "=<first path of the
// inode>".
func referenceMerge(layers [][]index.Entry) []string {
	type node struct {
		kind   string
		layer  int
		inode  *int   // identity shared by hard links
		target string // of a symlink
	}
	tree := map[string]*node{"": {kind: "d"}}
	dropBelow := func(p string) {
		for k := range tree {
			if strings.HasPrefix(k, p+"/") || (p == "" && k != "") {
				delete(tree, k)
			}
		}
	}
	kinds := map[index.EntryType]string{
		index.TypeDir: "d", index.TypeReg: "f", index.TypeSymlink: "l",
		index.TypeChar: "c", index.TypeBlock: "b", index.TypeFifo: "p",
	}
	type hiddenAt struct {
		n  *node
		at int
	}
	// resolve follows the symlinks among the components of dir, confined
	// to the root, at most 40 of them (then dir as it is).
	resolve := func(dir string) string {
		var out []string
		rest := strings.Split(dir, "/")
		for hops := 0; len(rest) > 0; {
			c := rest[0]
			rest = rest[1:]
			if c == "" || c == "." {
				continue
			}
			if c == ".." {
				if len(out) > 0 {
					out = out[:len(out)-1]
				}
				continue
			}
			n := tree[path.Join(append(append([]string{}, out...), c)...)]
			if n == nil || n.kind != "l" {
				out = append(out, c)
				continue
			}
			if hops++; hops > 40 {
				return dir
			}
			if strings.HasPrefix(n.target, "/") {
				out = nil
			}
			rest = append(strings.Split(n.target, "/"), rest...)
		}
		return strings.Join(out, "/")
	}
	underLinks := func(p string) string {
		if i := strings.LastIndexByte(p, '/'); i >= 0 {
			if d := resolve(p[:i]); d != "" {
				return d + "/" + p[i+1:]
			}
			return p[i+1:]
		}
		return p
	}
	for li, entries := range layers {
		// What this layer's markers take, with the marker's index: a hard
		// link earlier in the layer still finds it.
		hidden := map[string]hiddenAt{}
		hide := func(p string, at int, self bool) {
			for k, n := range tree {
				below := strings.HasPrefix(k, p+"/") || (p == "" && k != "")
				if (below || self && k == p) && hidden[k].n == nil {
					hidden[k] = hiddenAt{n, at}
				}
			}
		}
		for i, e := range entries {
			p, ok := index.CleanPath(e.Name)
			if !ok {
				continue
			}
			if tree[p] == nil {
				p = underLinks(p)
			}
			switch e.Type {
			case index.TypeWhiteout:
				if p != "" && tree[p] != nil {
					hide(p, i, true)
					delete(tree, p)
					dropBelow(p)
				}
			case index.TypeOpaque:
				if n := tree[p]; n != nil && n.kind == "d" {
					hide(p, i, false)
					dropBelow(p)
				}
			}
		}
		for i, e := range entries {
			p, ok := index.CleanPath(e.Name)
			if !ok || e.Type == index.TypeWhiteout || e.Type == index.TypeOpaque {
				continue
			}
			if e.Type != index.TypeHardlink && kinds[e.Type] == "" {
				continue
			}
			if p == "" {
				if e.Type == index.TypeDir {
					tree[""].layer = li
				}
				continue
			}
			p = underLinks(p)
			parts := strings.Split(p, "/")
			for i := 1; i < len(parts); i++ {
				a := strings.Join(parts[:i], "/")
				if n := tree[a]; n == nil || n.kind != "d" {
					tree[a] = &node{kind: "d", layer: li}
				}
			}
			var n *node
			switch {
			case e.Type == index.TypeHardlink:
				target, ok := index.CleanPath(e.Linkname)
				t := tree[target]
				if h := hidden[target]; t == nil && h.n != nil && h.at > i {
					t = h.n
				}
				if !ok || target == p || t == nil || t.kind == "d" {
					continue
				}
				if t.inode == nil {
					t.inode = new(int)
				}
				n = &node{kind: t.kind, layer: t.layer, inode: t.inode, target: t.target}
			case e.Type == index.TypeDir && tree[p] != nil && tree[p].kind == "d":
				tree[p].layer = li
				continue
			default:
				n = &node{kind: kinds[e.Type], layer: li, target: e.Linkname}
			}
			dropBelow(p)
			tree[p] = n
		}
	}
	paths := make([]string, 0, len(tree))
	for p := range tree {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	first := map[*int]string{}
	var out []string
	for _, p := range paths {
		n := tree[p]
		line := fmt.Sprintf("/%s %s%d", p, n.kind, n.layer)
		if p == "" {
			line = fmt.Sprintf("/ d%d", n.layer)
		}
		if n.inode != nil {
			if f, ok := first[n.inode]; ok {
				line += "=" + f
			} else {
				first[n.inode] = "/" + p
			}
		}
		out = append(out, line)
	}
	return out
}

// dumpWithLinks is dump plus "=<first path>" for paths sharing an inode
// with an earlier one.
func dumpWithLinks(tree *Tree) []string {
	first := map[uint64]string{}
	var out []string
	lines := dump(tree)
	i := 0
	_ = tree.Walk(func(p string, n *Node) error {
		line := lines[i]
		i++
		if !n.IsDir() {
			if f, ok := first[n.Ino()]; ok {
				line += "=" + f
			} else {
				first[n.Ino()] = p
			}
		}
		out = append(out, line)
		return nil
	})
	return out
}

// isCleanPathReference is the obvious definition isCleanPath must match.
// FuzzMerge builds layers from bytes: each pair (op, path index) is one
// entry. Any input must merge without panic into a tree that keeps the
// invariants.
func FuzzMerge(f *testing.F) {
	f.Add([]byte{0, 1, 1, 2, 255, 3, 4, 4, 255, 5, 2, 6, 0})
	f.Add([]byte{1, 0, 0, 3, 6, 5, 255, 7, 0, 0, 9})
	f.Fuzz(mergeMatchesReference)
}

// TestMergeRandomLayers runs the fuzz property on deterministic random
// inputs, so plain `go test` covers it too.
func TestMergeRandomLayers(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	n := 20_000 // enough to find the stale-parent-cache bug of TestMergeStaleParentCache
	if testing.Short() {
		n = 2_000
	}
	for range n {
		data := make([]byte, rng.IntN(120))
		for i := range data {
			data[i] = byte(rng.IntN(256))
		}
		mergeMatchesReference(t, data)
		if t.Failed() {
			t.Fatalf("input %v", data)
		}
	}
}

// mergeMatchesReference decodes layers from bytes (255 ends a layer; other
// bytes go in pairs: entry kind, path/target choice), merges them and
// checks the invariants and agreement with referenceMerge.
func mergeMatchesReference(t *testing.T, data []byte) {
	paths := []string{"", "a", "a/b", "a/b/c", "d", "d/e", "./a", "/d/", "../x", "a/../d"}
	var layers [][]index.Entry
	var cur []index.Entry
	for i := 0; i+1 < len(data); i += 2 {
		if data[i] == 255 {
			layers = append(layers, cur)
			cur = nil
			i--
			continue
		}
		p := paths[int(data[i+1])%len(paths)]
		target := paths[int(data[i+1]/16)%len(paths)]
		var e index.Entry
		switch data[i] % 7 {
		case 0:
			e = reg(p, int64(data[i+1]))
		case 1:
			e = dir(p)
		case 2:
			e = sym(p, target)
		case 3:
			e = hardlink(p, target)
		case 4:
			e = whiteout(p)
		case 5:
			e = opaque(p)
		case 6:
			e = index.Entry{Name: p, Type: index.TypeFifo}
		}
		e.ModTime = time.Unix(int64(i), 0)
		cur = append(cur, e)
	}
	layers = append(layers, cur)
	tree := Merge(layers, MergeOptions{Logger: quietLogger()})
	checkInvariants(t, tree)
	if got, ref := dumpWithLinks(tree), referenceMerge(layers); !slices.Equal(got, ref) {
		t.Fatalf("differs from the reference model:\n got %q\n ref %q\nlayers %+v", got, ref, layers)
	}
}
