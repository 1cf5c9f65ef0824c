package main

import (
	"fmt"
	"path"
	"sort"
	"strings"

	"github.com/imgfs/imgfs/integration"
)

// layerTree collects the entries of one layer and writes them as an image
// builder would: every parent directory present, paths in lexical order.
type layerTree struct {
	entries map[string]integration.Entry
}

func newLayerTree() *layerTree { return &layerTree{entries: map[string]integration.Entry{}} }

func (t *layerTree) add(e integration.Entry) {
	for d := path.Dir(e.Path); d != "." && d != "/"; d = path.Dir(d) {
		if _, ok := t.entries[d]; ok {
			break
		}
		t.entries[d] = integration.Dir(d)
	}
	t.entries[e.Path] = e
}

func (t *layerTree) file(p string, mode int64, content []byte) {
	t.add(integration.Entry{Path: p, Type: integration.TypeFile, Mode: mode, Content: content})
}

func (t *layerTree) sorted() []integration.Entry {
	out := make([]integration.Entry, 0, len(t.entries))
	for _, e := range t.entries {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// group is a family of generated files: count files of one kind, sizes
// log-uniform in [lo, hi], spread over subdirs subdirectories of dir.
type group struct {
	dir     string
	count   int
	subdirs int
	lo, hi  int
	kind    contentKind
	ext     string
	mode    int64
	pycache bool // add __pycache__/NAME.cpython-312.pyc (~60% of the size) next to each file
}

// addGroup generates the group's files into t; counts scale with scale.
func (t *layerTree) addGroup(g *contentGen, grp group, scale float64) {
	n := max(1, int(float64(grp.count)*scale+0.5))
	mode := grp.mode
	if mode == 0 {
		mode = 0o644
	}
	for i := range n {
		dir := grp.dir
		if grp.subdirs > 0 {
			dir = fmt.Sprintf("%s/%s%d", dir, subdirName(g, grp.dir, i%grp.subdirs), i%grp.subdirs)
		}
		name := fmt.Sprintf("%s_%d", g.word(), i)
		size := g.logUniform(grp.lo, grp.hi)
		t.file(dir+"/"+name+grp.ext, mode, g.content(grp.kind, size))
		if grp.pycache {
			pyc := dir + "/__pycache__/" + name + ".cpython-312.pyc"
			t.file(pyc, 0o644, g.content(kindPyc, size*6/10+16))
		}
	}
}

// subdirName is a stable, word-like name for subdirectory k of dir.
func subdirName(g *contentGen, dir string, k int) string {
	var h uint32
	for _, c := range dir {
		h = h*31 + uint32(c)
	}
	w := g.words[40+int((h+uint32(k)*7919)%uint32(len(g.words)-40))]
	return strings.TrimLeft(w, "_")
}
