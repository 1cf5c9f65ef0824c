package fs

import (
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/imgfs/imgfs/index"
)

// MergeOptions configure Merge.
type MergeOptions struct {
	Logger *slog.Logger // warnings about dropped entries; nil: slog.Default()
}

// Merge applies layers (manifest order, base first) the way an OCI
// extractor would (image-spec layer.md) and returns the resulting tree,
// still open to AddDir/AddFile/AddSymlink until Freeze. Nodes point into the
// layers' slices, which must stay alive and unmodified.
//
// Rules:
//   - A later entry replaces an earlier one at the same path. A directory
//     over a directory merges: the children stay, the metadata is the later
//     one's. Anything else over a directory removes its subtree.
//   - Within a layer, whiteouts (TypeWhiteout: NAME and its subtree) and
//     opaque markers (TypeOpaque: every child of the directory, which itself
//     stays) are applied first, against the layers below only; then the
//     layer's other entries are added in order. So a layer can whiteout a
//     lower path and add a new one at it, and its own entries are never
//     hidden by its own markers. Markers never appear in the tree.
//   - TypeHardlink resolves Linkname against the tree as merged so far,
//     this layer's earlier entries included. The link shares the target's
//     inode (same Ino, Entry, Layer; Nlink counts the paths). A link that
//     comes before a whiteout (or opaque marker) of its target in the same
//     layer keeps the target, as an extractor applying entries in order
//     does (umoci). A link whose target is missing (whited out by an
//     earlier layer or entry), is a directory, or is itself is dropped with
//     a warning.
//   - Paths are cleaned ("./", "/" prefixes, "//", "." removed); an entry
//     whose path or link target climbs above the root is dropped with a
//     warning. The entry named "" is the root directory's metadata.
//   - Missing parent directories are implied: mode 0755, uid and gid 0,
//     mtime the epoch (there is no honest time to give them). A non-directory that stands where a later
//     entry needs a parent directory is replaced by an implied directory.
//   - Inode numbers are assigned in sorted depth-first order from 1 (the
//     root), so the same layers always give the same numbers.
func Merge(layers [][]index.Entry, opts MergeOptions) *Tree {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	total := 0
	for _, l := range layers {
		total += len(l)
	}
	m := &merger{
		log:        log,
		impliedDir: &index.Entry{Type: index.TypeDir, Mode: 0o755, ModTime: time.Unix(0, 0).UTC()},
		slab:       make([]Node, 0, min(total+1, slabSize)),
		paths:      make(map[string]*Node, total+1),
		hidden:     map[string]hiddenNode{},
	}
	root := m.newNode()
	root.entry = m.impliedDir
	m.root = root
	m.paths[""] = root
	for li, entries := range layers {
		m.layer = li
		clear(m.hidden)
		m.applyMarkers(entries)
		m.addEntries(entries)
	}
	t := &Tree{root: root, nextIno: RootIno}
	t.finish(root)
	return t
}

const slabSize = 4096

type hiddenNode struct {
	node *Node
	at   int // index of the marker entry in its layer
}

type merger struct {
	log        *slog.Logger
	root       *Node
	layer      int
	impliedDir *index.Entry     // shared metadata of implied directories
	slab       []Node           // nodes are carved from slabs: one allocation per slabSize nodes
	paths      map[string]*Node // every node of the tree being built, by clean path

	// hidden holds what this layer's markers took from the lower layers,
	// by path, with the index of the marker's entry: a hard link earlier in
	// the layer than the marker still finds its target there, as it does
	// when an extractor applies the entries in order.
	hidden map[string]hiddenNode

	// dirFor's cache: entries of one directory usually come together.
	lastDirPath string
	lastDir     *Node
}

func (m *merger) newNode() *Node {
	if len(m.slab) == cap(m.slab) {
		m.slab = make([]Node, 0, slabSize)
	}
	m.slab = m.slab[:len(m.slab)+1]
	return &m.slab[len(m.slab)-1]
}

func (m *merger) warn(msg string, e *index.Entry, args ...any) {
	m.log.Warn(msg, append([]any{"layer", m.layer, "path", e.Name}, args...)...)
}

// isDirNode reports whether a node is a directory (links never are).
func isDirNode(n *Node) bool { return n.link == nil && n.entry.Type == index.TypeDir }

// put makes n (whose path and name are set) a child of parent, replacing
// whatever is at its path.
func (m *merger) put(parent, n *Node) {
	n.parent = parent
	if old := m.paths[n.path]; old != nil {
		n.slot = old.slot
		parent.children[n.slot] = n
		m.dropDescendants(old)
	} else {
		n.slot = int32(len(parent.children))
		parent.children = append(parent.children, n)
	}
	m.paths[n.path] = n
}

// remove takes n and its subtree out of the tree.
func (m *merger) remove(n *Node) {
	n.parent.children[n.slot] = nil
	delete(m.paths, n.path)
	m.dropDescendants(n)
}

// dropDescendants forgets the subtree below n (n itself stays).
func (m *merger) dropDescendants(n *Node) {
	if !isDirNode(n) {
		return
	}
	// The cached directory may be n (even an empty n, when it is being
	// replaced or removed) or in its subtree.
	m.lastDir = nil
	for _, c := range n.children {
		if c != nil {
			delete(m.paths, c.path)
			m.dropDescendants(c)
		}
	}
	n.children = nil
}

// dirFor returns the directory at a clean path, following symlinks on the
// way (see resolveDir), implying missing directories.
func (m *merger) dirFor(dir string, e *index.Entry) *Node {
	if m.lastDir != nil && dir == m.lastDirPath {
		return m.lastDir
	}
	if n := m.paths[dir]; n != nil && isDirNode(n) {
		return n // no symlink on the way: a link's subtree goes when it comes
	}
	return m.dirAt(m.resolveDir(dir), e)
}

// dirAt returns the directory at a clean path, implying missing
// directories and replacing non-directories on the way.
func (m *merger) dirAt(dir string, e *index.Entry) *Node {
	if m.lastDir != nil && dir == m.lastDirPath {
		return m.lastDir
	}
	n := m.paths[dir]
	if n == nil || !isDirNode(n) {
		if n != nil {
			m.warn("non-directory replaced by an implied parent directory", e, "replaced", dir)
		}
		parentPath, name := splitPath(dir)
		parent := m.dirAt(parentPath, e)
		n = m.newNode()
		n.path, n.name, n.entry, n.layer = dir, name, m.impliedDir, m.layer
		m.put(parent, n)
	}
	m.lastDirPath, m.lastDir = dir, n
	return n
}

// applyMarkers applies a layer's whiteouts and opaque markers to the lower
// layers' tree.
func (m *merger) applyMarkers(entries []index.Entry) {
	for i := range entries {
		e := &entries[i]
		if e.Type != index.TypeWhiteout && e.Type != index.TypeOpaque {
			continue
		}
		p, ok := index.CleanPath(e.Name)
		if !ok {
			m.warn("whiteout escapes the root; dropped", e)
			continue
		}
		n := m.paths[p]
		if n == nil && p != "" {
			dir, base := splitPath(p)
			n = m.paths[joinPath(m.resolveDir(dir), base)] // under a symlink, as entries are added
		}
		switch {
		case n == nil:
		case e.Type == index.TypeOpaque:
			m.hide(n.children, i)
			m.dropDescendants(n)
		case p == "":
			m.warn("whiteout of the root; ignored", e)
		default:
			m.hide([]*Node{n}, i)
			m.remove(n)
		}
	}
}

// hide records nodes (and their subtrees) as taken by the marker at index
// at of the current layer.
func (m *merger) hide(nodes []*Node, at int) {
	for _, n := range nodes {
		if n == nil {
			continue
		}
		if _, ok := m.hidden[n.path]; !ok {
			m.hidden[n.path] = hiddenNode{node: n, at: at}
		}
		if isDirNode(n) {
			m.hide(n.children, at)
		}
	}
}

// addEntries adds a layer's non-marker entries in order.
func (m *merger) addEntries(entries []index.Entry) {
	for i := range entries {
		e := &entries[i]
		switch e.Type {
		case index.TypeWhiteout, index.TypeOpaque:
			continue
		case index.TypeReg, index.TypeDir, index.TypeSymlink, index.TypeHardlink,
			index.TypeChar, index.TypeBlock, index.TypeFifo:
		default:
			m.warn("unknown entry type; dropped", e, "type", e.Type)
			continue
		}
		p, ok := index.CleanPath(e.Name)
		if !ok {
			m.warn("path escapes the root; dropped", e)
			continue
		}
		if p == "" {
			if e.Type != index.TypeDir {
				m.warn("root entry is not a directory; ignored", e)
				continue
			}
			m.root.entry, m.root.layer = e, m.layer
			continue
		}
		dir, base := splitPath(p)
		parent := m.dirFor(dir, e)
		p = joinPath(parent.path, base) // where a symlink among the parents led
		if e.Type == index.TypeHardlink {
			m.addHardlink(e, i, p, base, parent)
			continue
		}
		if e.Type == index.TypeDir {
			if existing := m.paths[p]; existing != nil && isDirNode(existing) {
				existing.entry, existing.layer = e, m.layer
				continue
			}
		}
		n := m.newNode()
		n.path, n.name, n.entry, n.layer = p, base, e, m.layer
		m.put(parent, n)
	}
}

// addHardlink adds the link at index i of the current layer.
func (m *merger) addHardlink(e *index.Entry, i int, p, base string, parent *Node) {
	target, ok := index.CleanPath(e.Linkname)
	switch {
	case !ok:
		m.warn("hardlink target escapes the root; dropped", e, "target", e.Linkname)
		return
	case target == p:
		m.warn("hardlink to itself; dropped", e)
		return
	}
	tn := m.paths[target]
	if h, ok := m.hidden[target]; tn == nil && ok && h.at > i {
		tn = h.node // linked before a later marker of this layer took it
	}
	if tn == nil {
		m.warn("hardlink target missing; dropped", e, "target", e.Linkname)
		return
	}
	if isDirNode(tn) {
		m.warn("hardlink to a directory; dropped", e, "target", e.Linkname)
		return
	}
	inode := tn.meta()
	if existing := m.paths[p]; existing != nil && existing.meta() == inode {
		return // already this inode
	}
	n := m.newNode()
	n.path, n.name, n.link, n.layer = p, base, inode, m.layer
	m.put(parent, n)
}

// finish compacts and sorts the children lists (tar order is usually
// sorted already) and numbers inodes, links and sizes in one sorted
// depth-first pass.
func (t *Tree) finish(n *Node) {
	t.count++
	inode := n.meta()
	if inode.ino == 0 {
		inode.ino = t.nextIno
		t.nextIno++
		if inode.entry.Type == index.TypeReg {
			t.fileBytes += inode.entry.Size
		}
	}
	if !isDirNode(n) {
		inode.nlink++
		return
	}
	n.nlink = 2
	live := n.children[:0]
	for _, c := range n.children {
		if c != nil {
			live = append(live, c)
		}
	}
	clear(n.children[len(live):])
	if len(live) == 0 {
		n.children = nil
		return
	}
	n.children = live
	byName := func(a, b *Node) int { return strings.Compare(a.name, b.name) }
	if !slices.IsSortedFunc(n.children, byName) {
		slices.SortFunc(n.children, byName)
	}
	for _, c := range n.children {
		if isDirNode(c) {
			n.nlink++
		}
		t.finish(c)
	}
}
