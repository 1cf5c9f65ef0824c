package fs

import (
	"encoding/binary"
	"fmt"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/imgfs/imgfs/index"
)

// Distinct timeouts, so that a test can tell which one a reply carries.
var testTreeFSOptions = treeFSOptions{
	entryTimeout:    2 * time.Hour,
	attrTimeout:     3 * time.Hour,
	negativeTimeout: 4 * time.Hour,
	log:             quietLogger(),
}

func newTestTreeFS(t *testing.T) (*treeFS, testImage) {
	t.Helper()
	img := buildTestImage(t)
	img.tree.Freeze()
	return newTreeFS(img.tree, img.readers, testTreeFSOptions), img
}

// lookupPath looks p up one component at a time, as the kernel does.
func lookupPath(t *testing.T, tfs *treeFS, p string) fuse.EntryOut {
	t.Helper()
	out := fuse.EntryOut{NodeId: RootIno}
	for _, name := range strings.Split(p, "/") {
		parent := out.NodeId
		out = fuse.EntryOut{}
		if st := tfs.Lookup(nil, &fuse.InHeader{NodeId: parent}, name, &out); st != fuse.OK || out.NodeId == 0 {
			t.Fatalf("lookup %q in %d (of %s): %v, node %d", name, parent, p, st, out.NodeId)
		}
	}
	return out
}

// TestTreeFSLookup: a LOOKUP answers the inode number as the node ID, the
// same every time (also after a FORGET) and shared by hard links, with the
// tree's attributes and the configured timeouts; a missing name is a
// negative entry the kernel may cache.
func TestTreeFSLookup(t *testing.T) {
	tfs, img := newTestTreeFS(t)
	for _, p := range []string{"bin", "bin/tool", "bin/tool2", "data/big", "lib", "dev/null", "owned", ".singularity.d/runscript"} {
		n, ok := img.tree.Lookup(p)
		if !ok {
			t.Fatalf("tree has no %s", p)
		}
		first := lookupPath(t, tfs, p)
		tfs.Forget(first.NodeId, 1)
		again := lookupPath(t, tfs, p)
		var want fuse.Attr
		fillAttr(n, &want)
		switch {
		case first.NodeId != n.Ino() || again.NodeId != first.NodeId:
			t.Errorf("%s: node %d, then %d; inode %d", p, first.NodeId, again.NodeId, n.Ino())
		case first.Attr != want || first.Ino != n.Ino():
			t.Errorf("%s: attr %+v, want %+v", p, first.Attr, want)
		case first.EntryTimeout() != 2*time.Hour || first.AttrTimeout() != 3*time.Hour:
			t.Errorf("%s: entry timeout %v, attr timeout %v", p, first.EntryTimeout(), first.AttrTimeout())
		}
	}
	if a, b := lookupPath(t, tfs, "bin/tool"), lookupPath(t, tfs, "bin/tool2"); a.NodeId != b.NodeId || a.Nlink != 2 {
		t.Errorf("hard links: nodes %d and %d, nlink %d", a.NodeId, b.NodeId, a.Nlink)
	}
	if dot := lookupPath(t, tfs, "bin/.."); dot.NodeId != RootIno {
		t.Errorf("bin/..: node %d", dot.NodeId)
	}

	var neg fuse.EntryOut
	bin := lookupPath(t, tfs, "bin")
	if st := tfs.Lookup(nil, &fuse.InHeader{NodeId: bin.NodeId}, "missing", &neg); st != fuse.OK || neg.NodeId != 0 || neg.EntryTimeout() != 4*time.Hour {
		t.Errorf("missing name: %v, node %d, timeout %v; want OK, 0, 4h", st, neg.NodeId, neg.EntryTimeout())
	}
	var ga fuse.AttrOut
	if st := tfs.GetAttr(nil, &fuse.GetAttrIn{InHeader: fuse.InHeader{NodeId: bin.NodeId}}, &ga); st != fuse.OK || ga.Attr != bin.Attr || ga.Timeout() != 3*time.Hour {
		t.Errorf("getattr bin: %v %+v timeout %v", st, ga.Attr, ga.Timeout())
	}
	if st := tfs.GetAttr(nil, &fuse.GetAttrIn{InHeader: fuse.InHeader{NodeId: uint64(len(tfs.inodes))}}, &ga); st != errStale {
		t.Errorf("getattr of an unknown node: %v, want ESTALE", st)
	}
}

// TestTreeFSInodeTable: every inode number of the tree, synthetic nodes
// included, names its node; the root is FUSE's root node ID.
func TestTreeFSInodeTable(t *testing.T) {
	tfs, img := newTestTreeFS(t)
	if RootIno != fuse.FUSE_ROOT_ID || tfs.node(fuse.FUSE_ROOT_ID) != img.tree.Root() {
		t.Fatalf("root node ID %d is not the tree's root", fuse.FUSE_ROOT_ID)
	}
	seen := 0
	_ = img.tree.Walk(func(p string, n *Node) error {
		if got := tfs.node(n.Ino()); got == nil || got.Ino() != n.Ino() || got.Entry() != n.Entry() {
			t.Errorf("%s: inode %d names %v", p, n.Ino(), got)
		}
		seen++
		return nil
	})
	if seen != img.tree.Len() || tfs.node(0) != nil || tfs.node(1<<40) != nil {
		t.Errorf("walked %d of %d; node 0 %v", seen, img.tree.Len(), tfs.node(0))
	}
}

// direntPlus is one parsed entry of a READDIRPLUS reply.
type direntPlus struct {
	entry fuse.EntryOut
	name  string
	ino   uint64
	off   uint64
	typ   uint32
}

// parseDirents decodes a READDIR (plus=false) or READDIRPLUS reply:
// struct fuse_dirent (ino, off, namelen, type, name, padded to 8 bytes),
// each preceded by a struct fuse_entry_out for READDIRPLUS.
func parseDirents(t *testing.T, b []byte, plus bool) []direntPlus {
	t.Helper()
	var out []direntPlus
	for len(b) > 0 {
		var d direntPlus
		if plus {
			size := int(unsafe.Sizeof(fuse.EntryOut{}))
			d.entry = *(*fuse.EntryOut)(unsafe.Pointer(&b[0]))
			b = b[size:]
		}
		d.ino, d.off = binary.LittleEndian.Uint64(b), binary.LittleEndian.Uint64(b[8:])
		nameLen := int(binary.LittleEndian.Uint32(b[16:]))
		d.typ = binary.LittleEndian.Uint32(b[20:])
		d.name = string(b[24 : 24+nameLen])
		b = b[(24+nameLen+7)&^7:]
		out = append(out, d)
	}
	return out
}

// readDirAll lists a directory in replies of bufSize bytes, each starting
// where the previous one ended, as the kernel does.
func readDirAll(t *testing.T, fsys fuse.RawFileSystem, node uint64, bufSize int, plus bool) ([]direntPlus, int) {
	t.Helper()
	var all []direntPlus
	var off uint64
	for requests := 1; ; requests++ {
		out := fuse.NewDirEntryList(make([]byte, bufSize), off)
		in := &fuse.ReadIn{InHeader: fuse.InHeader{NodeId: node}, Offset: off}
		read := fsys.ReadDir
		if plus {
			read = fsys.ReadDirPlus
		}
		if st := read(nil, in, out); st != fuse.OK {
			t.Fatalf("readdir of node %d at %d: %v", node, off, st)
		}
		got := parseDirents(t, out.Bytes(), plus)
		if len(got) == 0 {
			return all, requests
		}
		all = append(all, got...)
		off = got[len(got)-1].off
	}
}

// TestTreeFSReadDirPlus: READDIRPLUS lists ".", "..", then the children in
// order, each child with the entry a LOOKUP would give (so the kernel needs
// no LOOKUP or GETATTR after a listing); it resumes at any offset it handed
// out, and a position past the end lists nothing. READDIR lists the same
// names.
func TestTreeFSReadDirPlus(t *testing.T) {
	var l layerBuilder
	const n = 500
	for i := range n {
		l.add(reg(fmt.Sprintf("big/f%04d", i), 0), []byte("x"))
	}
	l.add(dir("big/sub"), nil)
	l.add(sym("big/zlink", "f0000"), nil)
	l.add(hardlink("big/zhard", "big/f0001"), nil)
	tree := mustMerge(t, l.entries)
	tree.Freeze()
	tfs := newTreeFS(tree, []ContentReader{memReader{l.data}}, testTreeFSOptions)
	big, _ := tree.Lookup("big")

	plus, requests := readDirAll(t, tfs, big.Ino(), 4096, true)
	if requests < 10 {
		t.Errorf("%d requests of 4 KiB for %d entries: the reply size is not honoured", requests, len(plus))
	}
	if len(plus) != len(big.Children())+2 || plus[0].name != "." || plus[1].name != ".." {
		t.Fatalf("%d entries, want %d with . and ..", len(plus), len(big.Children())+2)
	}
	for i, d := range plus {
		if d.off != uint64(i+1) {
			t.Errorf("%s: offset %d, want %d", d.name, d.off, i+1)
		}
		if i < 2 {
			if d.entry.NodeId != 0 {
				t.Errorf("%s has node %d: the kernel would take it for an entry", d.name, d.entry.NodeId)
			}
			continue
		}
		c := big.Children()[i-2]
		want := lookupPath(t, tfs, "big/"+c.Name())
		if d.name != c.Name() || d.ino != c.Ino() || d.typ != typeBits(c.Type())>>12 || d.entry != want {
			t.Errorf("entry %d: %q ino %d type %d %+v\nwant %q ino %d, LOOKUP's %+v", i, d.name, d.ino, d.typ, d.entry, c.Name(), c.Ino(), want)
		}
	}

	names, _ := readDirAll(t, tfs, big.Ino(), 4096, false)
	if len(names) != len(plus) {
		t.Fatalf("READDIR: %d entries, READDIRPLUS %d", len(names), len(plus))
	}
	for i := range names {
		if names[i].name != plus[i].name || names[i].ino != plus[i].ino || names[i].off != plus[i].off {
			t.Errorf("READDIR entry %d: %+v, READDIRPLUS %+v", i, names[i], plus[i])
		}
	}

	out := fuse.NewDirEntryList(make([]byte, 4096), 1000)
	if st := tfs.ReadDirPlus(nil, &fuse.ReadIn{InHeader: fuse.InHeader{NodeId: big.Ino()}, Offset: 1000}, out); st != fuse.OK || len(out.Bytes()) != 0 {
		t.Errorf("past the end: %v, %d bytes", st, len(out.Bytes()))
	}
	f, _ := tree.Lookup("big/f0000")
	if st := tfs.ReadDirPlus(nil, &fuse.ReadIn{InHeader: fuse.InHeader{NodeId: f.Ino()}}, fuse.NewDirEntryList(make([]byte, 4096), 0)); st != fuse.ENOTDIR {
		t.Errorf("listing a file: %v, want ENOTDIR", st)
	}
}

// TestTreeFSNoAllocations: answering LOOKUP, GETATTR and READDIRPLUS
// allocates nothing, so a cold walk of a big tree leaves no garbage.
func TestTreeFSNoAllocations(t *testing.T) {
	tfs, img := newTestTreeFS(t)
	bin, _ := img.tree.Lookup("bin")
	var entry fuse.EntryOut
	var attr fuse.AttrOut
	buf := make([]byte, 64<<10)
	for name, op := range map[string]func(){
		"lookup":  func() { tfs.Lookup(nil, &fuse.InHeader{NodeId: bin.Ino()}, "tool", &entry) },
		"missing": func() { tfs.Lookup(nil, &fuse.InHeader{NodeId: bin.Ino()}, "none", &entry) },
		"getattr": func() { tfs.GetAttr(nil, &fuse.GetAttrIn{InHeader: fuse.InHeader{NodeId: bin.Ino()}}, &attr) },
		"readdirplus": func() {
			out := fuse.NewDirEntryList(buf, 0)
			tfs.ReadDirPlus(nil, &fuse.ReadIn{InHeader: fuse.InHeader{NodeId: RootIno}}, out)
		},
	} {
		if n := testing.AllocsPerRun(100, op); n > 0 {
			t.Errorf("%s: %.1f allocations per request", name, n)
		}
	}
}

// BenchmarkTreeFSReadDirPlus: the server's share of a cold walk, per
// entry: a directory of 100 files listed in one READDIRPLUS.
func BenchmarkTreeFSReadDirPlus(b *testing.B) {
	var entries []index.Entry
	for f := range 100 {
		entries = append(entries, reg(fmt.Sprintf("d/file-%03d.txt", f), 100))
	}
	tree := Merge([][]index.Entry{entries}, MergeOptions{Logger: quietLogger()})
	tree.Freeze()
	tfs := newTreeFS(tree, nil, testTreeFSOptions)
	d, _ := tree.Lookup("d")
	buf := make([]byte, 128<<10)
	in := &fuse.ReadIn{InHeader: fuse.InHeader{NodeId: d.Ino()}}
	for b.Loop() {
		tfs.ReadDirPlus(nil, in, fuse.NewDirEntryList(buf, 0))
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*102), "ns/entry")
}

// TestTreeFSWritesCounted: the write requests a read-only mount's kernel
// normally refuses itself still get EROFS if they arrive, and are counted
// as "other".
func TestTreeFSWritesCounted(t *testing.T) {
	tfs, img := newTestTreeFS(t)
	counts := new(requestCounters)
	r := newRequestFS(tfs, counts, false)
	owned, _ := img.tree.Lookup("owned")
	h := fuse.InHeader{NodeId: owned.Ino()}
	statuses := map[string]fuse.Status{}
	_, statuses["write"] = r.Write(nil, &fuse.WriteIn{InHeader: h}, []byte("x"))
	_, statuses["writev"] = r.Writev(nil, &fuse.WriteIn{InHeader: h}, [][]byte{[]byte("x")})
	_, statuses["copy_file_range"] = r.CopyFileRange(nil, &fuse.CopyFileRangeIn{InHeader: h})
	statuses["fallocate"] = r.Fallocate(nil, &fuse.FallocateIn{InHeader: h})
	statuses["tmpfile"] = r.Tmpfile(nil, &fuse.CreateIn{InHeader: fuse.InHeader{NodeId: RootIno}}, &fuse.CreateOut{})
	statuses["setattr"] = r.SetAttr(nil, &fuse.SetAttrIn{SetAttrInCommon: fuse.SetAttrInCommon{InHeader: h}}, &fuse.AttrOut{})
	for name, st := range statuses {
		if st != fuse.EROFS {
			t.Errorf("%s: %v, want EROFS", name, st)
		}
	}
	if got := counts.snapshot().Count("other"); got != uint64(len(statuses)) {
		t.Errorf("%d requests counted as other, want %d", got, len(statuses))
	}
}
