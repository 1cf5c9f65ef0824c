package fs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// testCatalog: imgs/<name> are images (listed once looked up), imgs/link
// a link to imgs/a, imgs/later fails until made to work, .status/count a
// file whose content changes at each use.
type testCatalog struct {
	mu     sync.Mutex
	images map[string]*ServedImage
	opened map[string]bool
	later  bool
	count  atomic.Int64
}

func newTestCatalog(t *testing.T, names ...string) *testCatalog {
	t.Helper()
	c := &testCatalog{images: map[string]*ServedImage{}, opened: map[string]bool{}}
	for _, n := range names {
		c.images[n] = c.newImage(t)
	}
	return c
}

func (c *testCatalog) newImage(t *testing.T) *ServedImage {
	img := buildTestImage(t)
	return &ServedImage{Tree: img.tree, Readers: img.readers, Activity: &Activity{}}
}

func (c *testCatalog) Lookup(ctx context.Context, dir []string, name string) (CatalogEntry, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case len(dir) == 0 && (name == "imgs" || name == ".status"):
		return CatalogEntry{Name: name, Kind: CatalogDir}, nil
	case slices.Equal(dir, []string{".status"}) && name == "count":
		return CatalogEntry{Name: name, Kind: CatalogFile, Content: c.status}, nil
	case !slices.Equal(dir, []string{"imgs"}):
	case name == "link":
		return CatalogEntry{Name: name, Kind: CatalogLink, Target: "a", TTL: -1}, nil
	case name == "later" && !c.later:
		return CatalogEntry{}, fmt.Errorf("not yet: %w", syscall.EAGAIN)
	case c.images[name] != nil:
		c.opened[name] = true
		return CatalogEntry{Name: name, Kind: CatalogImage, Image: c.images[name]}, nil
	}
	return CatalogEntry{}, errors.New("no such thing")
}

func (c *testCatalog) List(dir []string) []CatalogEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case len(dir) == 0:
		return []CatalogEntry{{Name: ".status", Kind: CatalogDir}, {Name: "imgs", Kind: CatalogDir}}
	case slices.Equal(dir, []string{".status"}):
		return []CatalogEntry{{Name: "count", Kind: CatalogFile, Content: c.status}}
	}
	var out []CatalogEntry
	for n, img := range c.images {
		if c.opened[n] {
			out = append(out, CatalogEntry{Name: n, Kind: CatalogImage, Image: img})
		}
	}
	out = append(out, CatalogEntry{Name: "link", Kind: CatalogLink, Target: "a"})
	slices.SortFunc(out, func(a, b CatalogEntry) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func (c *testCatalog) status() []byte { return fmt.Appendf(nil, "count %d\n", c.count.Add(1)) }

// release drops image name from the catalog (as serve does when it is
// idle) and has the mount let go of it; the next lookup gets a new one.
func (c *testCatalog) release(t *testing.T, cm *CatalogMount, name string) *ServedImage {
	c.mu.Lock()
	old := c.images[name]
	c.images[name] = c.newImage(t)
	delete(c.opened, name)
	c.mu.Unlock()
	cm.Release([]string{"imgs"}, name, old)
	return old
}

// catalogLookup looks path up one component at a time from the root.
func catalogLookup(t *testing.T, c *catalogFS, path ...string) fuse.EntryOut {
	t.Helper()
	out := fuse.EntryOut{NodeId: RootIno}
	for _, name := range path {
		parent := out.NodeId
		out = fuse.EntryOut{}
		if st := c.Lookup(nil, &fuse.InHeader{NodeId: parent}, name, &out); st != fuse.OK || out.NodeId == 0 {
			t.Fatalf("lookup %q in %d (of %q): %v, node %d", name, parent, path, st, out.NodeId)
		}
	}
	return out
}

// TestCatalogFSNodeIDs: each image gets a range of node IDs, its root at
// the range's start + RootIno and every inode at the range's start + its
// inode number (hard links share theirs), reported as the inode number;
// catalog names have IDs of their own, the same at every lookup; failed
// lookups are errors, which the kernel does not cache.
func TestCatalogFSNodeIDs(t *testing.T) {
	cat := newTestCatalog(t, "a", "b")
	c := newCatalogFS(cat, testTreeFSOptions)
	imgs := catalogLookup(t, c, "imgs")
	if imgs.NodeId < catalogIDs || imgs.Ino != imgs.NodeId || imgs.Mode != syscall.S_IFDIR|0o555 || imgs.EntryTimeout() != 2*time.Hour {
		t.Errorf("imgs: %+v", imgs)
	}
	if again := catalogLookup(t, c, "imgs"); again.NodeId != imgs.NodeId {
		t.Errorf("imgs: node %d, then %d", imgs.NodeId, again.NodeId)
	}
	a, b := catalogLookup(t, c, "imgs", "a"), catalogLookup(t, c, "imgs", "b")
	if a.NodeId != 1<<slotBits+RootIno || b.NodeId != 2<<slotBits+RootIno || a.Ino != a.NodeId {
		t.Errorf("image roots: %d and %d (ino %d)", a.NodeId, b.NodeId, a.Ino)
	}
	tree := cat.images["a"].Tree
	for _, p := range [][]string{{"bin", "tool"}, {"bin", "tool2"}, {"data", "big"}, {".singularity.d", "runscript"}} {
		n, _ := tree.Lookup(p[0] + "/" + p[1])
		e := catalogLookup(t, c, append([]string{"imgs", "a"}, p...)...)
		if e.NodeId != 1<<slotBits+n.Ino() || e.Ino != e.NodeId || e.Size != uint64(n.Size()) || e.EntryTimeout() != 2*time.Hour {
			t.Errorf("%s: node %d ino %d size %d; want %d", p, e.NodeId, e.Ino, e.Size, 1<<slotBits+n.Ino())
		}
		var ga fuse.AttrOut
		if st := c.GetAttr(nil, &fuse.GetAttrIn{InHeader: fuse.InHeader{NodeId: e.NodeId}}, &ga); st != fuse.OK || ga.Attr != e.Attr {
			t.Errorf("%s: getattr %v %+v, lookup %+v", p, st, ga.Attr, e.Attr)
		}
	}

	link := catalogLookup(t, c, "imgs", "link")
	if target, st := c.Readlink(nil, &fuse.InHeader{NodeId: link.NodeId}); st != fuse.OK || string(target) != "a" || link.EntryTimeout() != 0 || link.Mode != syscall.S_IFLNK|0o777 {
		t.Errorf("link: %q %v %+v, entry timeout %v", target, st, link.Attr, link.EntryTimeout())
	}
	for _, name := range []string{"later", "missing"} {
		var out fuse.EntryOut
		want := map[string]fuse.Status{"later": fuse.Status(syscall.EAGAIN), "missing": fuse.ENOENT}[name]
		if st := c.Lookup(nil, &fuse.InHeader{NodeId: imgs.NodeId}, name, &out); st != want {
			t.Errorf("%s: %v, want %v (an error, never a cached negative entry)", name, st, want)
		}
	}
	cat.later = true
	if _, ok := cat.images["later"]; !ok {
		cat.images["later"] = cat.newImage(t)
	}
	if l := catalogLookup(t, c, "imgs", "later"); l.NodeId != 3<<slotBits+RootIno {
		t.Errorf("later: node %d", l.NodeId)
	}

	// The listing of imgs names each entry with the inode number a lookup gives.
	got, _ := readDirAll(t, c, imgs.NodeId, 4096, true)
	var names []string
	for _, d := range got {
		names = append(names, d.name)
		if d.entry.NodeId != 0 {
			t.Errorf("%s: listed with node %d: listing a catalog directory makes no entries", d.name, d.entry.NodeId)
		}
		switch d.name {
		case "a", "link":
			if e := catalogLookup(t, c, "imgs", d.name); d.ino != e.Ino {
				t.Errorf("%s: listed ino %d, lookup %d", d.name, d.ino, e.Ino)
			}
		}
	}
	if !slices.Equal(names, []string{".", "..", "a", "b", "later", "link"}) {
		t.Errorf("imgs lists %q", names)
	}
	if st := c.Lookup(nil, &fuse.InHeader{NodeId: a.NodeId + 1<<30}, "x", &fuse.EntryOut{}); st != errStale {
		t.Errorf("a node ID past an image's inodes: %v", st)
	}
}

// TestCatalogFSRelease: a released image keeps its node IDs while the
// kernel holds some (each LOOKUP and READDIRPLUS entry counts, each FORGET
// takes its count back), and loses them once all are forgotten; the next
// lookup of its name attaches the new image in a range of its own.
func TestCatalogFSRelease(t *testing.T) {
	cat := newTestCatalog(t, "a")
	c := newCatalogFS(cat, testTreeFSOptions)
	cm := &CatalogMount{fs: c}
	lookup := func(parent uint64, name string) fuse.EntryOut {
		t.Helper()
		var out fuse.EntryOut
		if st := c.Lookup(nil, &fuse.InHeader{NodeId: parent}, name, &out); st != fuse.OK || out.NodeId == 0 {
			t.Fatalf("lookup %s in %d: %v", name, parent, st)
		}
		return out
	}
	root := lookup(catalogLookup(t, c, "imgs").NodeId, "a")
	bin := lookup(root.NodeId, "bin")
	tool := lookup(bin.NodeId, "tool")
	listed, _ := readDirAll(t, c, bin.NodeId, 4096, true) // ., .., tool, tool2: two more
	if len(listed) != 4 {
		t.Fatalf("bin lists %d entries", len(listed))
	}
	s := c.served(root.NodeId)
	if s == nil || s.refs.Load() != 5 {
		t.Fatalf("references to image a: %v", s)
	}
	c.Forget(tool.NodeId, 3) // its lookup and two listed entries (hard links)
	c.Forget(root.NodeId, 1)
	old := cat.release(t, cm, "a")
	if c.served(bin.NodeId) != s {
		t.Fatal("a released image lost its node IDs while the kernel held one")
	}
	var ga fuse.AttrOut
	if st := c.GetAttr(nil, &fuse.GetAttrIn{InHeader: fuse.InHeader{NodeId: bin.NodeId}}, &ga); st != fuse.OK {
		t.Errorf("getattr in a released image still held: %v", st)
	}
	if _, _, err := c.attach(old); !errors.Is(err, syscall.ESTALE) {
		t.Errorf("attaching a released image: %v", err)
	}
	c.Forget(bin.NodeId, 1)
	if c.served(bin.NodeId) != nil {
		t.Error("a released image kept its node IDs after the kernel forgot them all")
	}
	if st := c.GetAttr(nil, &fuse.GetAttrIn{InHeader: fuse.InHeader{NodeId: bin.NodeId}}, &ga); st != errStale {
		t.Errorf("getattr of a forgotten image: %v", st)
	}
	if again := catalogLookup(t, c, "imgs", "a"); again.NodeId != 2<<slotBits+RootIno {
		t.Errorf("a after release: node %d", again.NodeId)
	}

	// Released with nothing held: gone at once.
	fresh := catalogLookup(t, c, "imgs", "a")
	c.Forget(fresh.NodeId, 2)
	cat.release(t, cm, "a")
	if c.served(fresh.NodeId) != nil {
		t.Error("a released image the kernel holds nothing of kept its node IDs")
	}

	// Catalog nodes are kept while the kernel knows them.
	imgs := catalogLookup(t, c, "imgs")
	c.Forget(imgs.NodeId, 1)
	if c.node(imgs.NodeId) == nil {
		t.Error("imgs forgotten after one of its lookups was")
	}
	c.Forget(imgs.NodeId, 100)
	if c.node(imgs.NodeId) != nil || c.node(RootIno) == nil {
		t.Error("imgs kept after every lookup was forgotten, or the root forgotten")
	}
}

// TestCatalogFSNoAllocations: requests inside a served image allocate
// nothing, as in a mount of the image alone.
func TestCatalogFSNoAllocations(t *testing.T) {
	cat := newTestCatalog(t, "a")
	c := newCatalogFS(cat, testTreeFSOptions)
	bin := catalogLookup(t, c, "imgs", "a", "bin")
	root := catalogLookup(t, c, "imgs", "a")
	var entry fuse.EntryOut
	var attr fuse.AttrOut
	buf := make([]byte, 64<<10)
	for name, op := range map[string]func(){
		"lookup":  func() { c.Lookup(nil, &fuse.InHeader{NodeId: bin.NodeId}, "tool", &entry) },
		"missing": func() { c.Lookup(nil, &fuse.InHeader{NodeId: bin.NodeId}, "none", &entry) },
		"getattr": func() { c.GetAttr(nil, &fuse.GetAttrIn{InHeader: fuse.InHeader{NodeId: bin.NodeId}}, &attr) },
		"readdirplus": func() {
			c.ReadDirPlus(nil, &fuse.ReadIn{InHeader: fuse.InHeader{NodeId: root.NodeId}}, fuse.NewDirEntryList(buf, 0))
		},
		"forget": func() { c.Forget(bin.NodeId, 1) },
	} {
		if n := testing.AllocsPerRun(100, op); n > 0 {
			t.Errorf("%s: %.1f allocations per request", name, n)
		}
	}
}

// mountCatalogForTest mounts cat on a fresh directory, unmounted when the
// test ends.
func mountCatalogForTest(t *testing.T, cat Catalog) (string, *CatalogMount) {
	t.Helper()
	requireFUSE(t)
	dir := t.TempDir()
	cm, err := MountCatalog(context.Background(), dir, cat, MountOptions{Logger: quietLogger()})
	if err != nil {
		t.Fatalf("MountCatalog: %v", err)
	}
	t.Cleanup(func() {
		if err := cm.Unmount(); err != nil {
			t.Errorf("Unmount: %v", err)
		}
		if line := mountLine(dir); line != "" {
			t.Errorf("still mounted after Unmount: %s", line)
		}
	})
	return dir, cm
}

// TestCatalogMount: through the kernel, images read as in a mount of
// their own, with inode numbers of their own; status files are made at
// each open; failed names are asked again at once; listings follow what
// is opened; a released image is forgotten by the kernel and its IDs
// freed, and the name opens the new image.
func TestCatalogMount(t *testing.T) {
	cat := newTestCatalog(t, "a", "b", "later")
	mnt, cm := mountCatalogForTest(t, cat)
	p := func(rel string) string { return filepath.Join(mnt, rel) }

	if data, err := os.ReadFile(p("imgs/a/owned")); err != nil || string(data) != "mine" {
		t.Fatalf("imgs/a/owned: %q, %v", data, err)
	}
	if data, err := os.ReadFile(p("imgs/link/bin/tool")); err != nil || string(data) != "tool-bytes" {
		t.Errorf("through the link: %q, %v", data, err)
	}
	var sa, sb, st1, st2 syscall.Stat_t
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(syscall.Lstat(p("imgs/a/owned"), &sa))
	must(syscall.Lstat(p("imgs/b/owned"), &sb))
	must(syscall.Lstat(p("imgs/a/bin/tool"), &st1))
	must(syscall.Lstat(p("imgs/a/bin/tool2"), &st2))
	n, _ := cat.images["a"].Tree.Lookup("owned")
	if sa.Ino != 1<<slotBits+n.Ino() || sb.Ino != 2<<slotBits+n.Ino() || sa.Uid != 1000 || sa.Mode != syscall.S_IFREG|0o640 {
		t.Errorf("owned in a: ino %d uid %d mode %o; in b: ino %d", sa.Ino, sa.Uid, sa.Mode, sb.Ino)
	}
	if st1.Ino != st2.Ino || st1.Nlink != 2 {
		t.Errorf("hard links: ino %d and %d, nlink %d", st1.Ino, st2.Ino, st1.Nlink)
	}
	if err := os.WriteFile(p("imgs/a/owned"), []byte("x"), 0o644); !errors.Is(err, syscall.EROFS) {
		t.Errorf("write: %v, want EROFS", err)
	}

	one, _ := os.ReadFile(p(".status/count"))
	two, _ := os.ReadFile(p(".status/count"))
	if string(one) == string(two) || len(one) == 0 {
		t.Errorf(".status/count: %q, then %q", one, two)
	}

	if _, err := os.Stat(p("imgs/later")); err == nil {
		t.Fatal("imgs/later found before it works")
	}
	cat.mu.Lock()
	cat.later = true
	cat.mu.Unlock()
	if _, err := os.Stat(p("imgs/later/bin")); err != nil {
		t.Errorf("imgs/later once it works: %v (a failed lookup was cached)", err)
	}

	listing := func() []string {
		ents, err := os.ReadDir(p("imgs"))
		must(err)
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		return names
	}
	if got := listing(); !slices.Equal(got, []string{"a", "b", "later", "link"}) {
		t.Errorf("imgs: %q", got)
	}

	// Released: the kernel is told to forget the name, forgets the image's
	// nodes, and the image's IDs are freed.
	cat.release(t, cm, "a")
	if got := listing(); !slices.Equal(got, []string{"b", "later", "link"}) {
		t.Errorf("imgs after a was released: %q", got)
	}
	deadline := time.Now().Add(10 * time.Second)
	for cm.fs.served(1<<slotBits+RootIno) != nil {
		if time.Now().After(deadline) {
			t.Fatal("image a still attached after its release: the kernel did not forget it")
		}
		time.Sleep(20 * time.Millisecond)
	}
	var again syscall.Stat_t
	must(syscall.Lstat(p("imgs/a/owned"), &again))
	if again.Ino != 4<<slotBits+n.Ino() {
		t.Errorf("owned in a after release: ino %d, want the new range's", again.Ino)
	}
	if got := listing(); !slices.Equal(got, []string{"a", "b", "later", "link"}) {
		t.Errorf("imgs after a was opened again: %q", got)
	}

	if got := cm.Requests().Count("lookup"); got == 0 {
		t.Error("no lookups counted")
	}
}

// TestCatalogMountActivity: opens and reads of a served image are told to
// its Activity.
func TestCatalogMountActivity(t *testing.T) {
	cat := newTestCatalog(t, "a")
	mnt, _ := mountCatalogForTest(t, cat)
	act := cat.images["a"].Activity
	f, err := os.Open(filepath.Join(mnt, "imgs/a/data/big"))
	if err != nil {
		t.Fatal(err)
	}
	if act.OpenFiles() != 1 || time.Since(act.LastUse()) > time.Minute {
		t.Errorf("open files %d, last use %v", act.OpenFiles(), act.LastUse())
	}
	f.Close()
	deadline := time.Now().Add(5 * time.Second)
	for act.OpenFiles() != 0 { // RELEASE is asynchronous
		if time.Now().After(deadline) {
			t.Fatalf("open files %d after close", act.OpenFiles())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
