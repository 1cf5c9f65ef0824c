package fs

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/imgfs/imgfs/index"
)

// Entry constructors for tests.

func reg(name string, size int64) index.Entry {
	return index.Entry{Name: name, Type: index.TypeReg, Mode: 0o644, Size: size}
}

func dir(name string) index.Entry {
	return index.Entry{Name: name, Type: index.TypeDir, Mode: 0o755}
}

func sym(name, target string) index.Entry {
	return index.Entry{Name: name, Type: index.TypeSymlink, Mode: 0o777, Linkname: target}
}

func hardlink(name, target string) index.Entry {
	return index.Entry{Name: name, Type: index.TypeHardlink, Mode: 0o644, Linkname: target}
}

func whiteout(name string) index.Entry { return index.Entry{Name: name, Type: index.TypeWhiteout} }

func opaque(name string) index.Entry { return index.Entry{Name: name, Type: index.TypeOpaque} }

// quietLogger drops merge warnings; countingLogger counts them.
func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

type warnCounter struct {
	buf bytes.Buffer
}

func (w *warnCounter) logger() *slog.Logger { return slog.New(slog.NewTextHandler(&w.buf, nil)) }

func (w *warnCounter) count() int { return bytes.Count(w.buf.Bytes(), []byte("level=WARN")) }

func mustMerge(t testing.TB, layers ...[]index.Entry) *Tree {
	t.Helper()
	tree := Merge(layers, MergeOptions{Logger: quietLogger()})
	checkInvariants(t, tree)
	return tree
}

// dump renders the tree as "path kind+layer" lines: kind d, f, l (symlink),
// c, b, p.
func dump(tree *Tree) []string {
	var out []string
	_ = tree.Walk(func(p string, n *Node) error {
		kind := map[index.EntryType]string{
			index.TypeDir: "d", index.TypeReg: "f", index.TypeSymlink: "l",
			index.TypeChar: "c", index.TypeBlock: "b", index.TypeFifo: "p",
		}[n.Type()]
		out = append(out, fmt.Sprintf("%s %s%d", p, kind, n.Layer()))
		return nil
	})
	return out
}

// checkInvariants verifies what every tree must satisfy.
func checkInvariants(t testing.TB, tree *Tree) {
	t.Helper()
	inos := map[uint64]*Node{}
	links := map[*Node]uint32{}
	count := 0
	_ = tree.Walk(func(p string, n *Node) error {
		count++
		if got := n.Path(); got != p {
			t.Errorf("Path() = %q, walk path %q", got, p)
		}
		if got, ok := tree.Lookup(p); !ok || got != n {
			t.Errorf("Lookup(%q) = %v, %v; want the walked node", p, got, ok)
		}
		if n.Ino() == 0 {
			t.Errorf("%s: inode 0", p)
		}
		if prev, ok := inos[n.Ino()]; ok && prev.meta() != n.meta() {
			t.Errorf("%s: inode %d shared with %s without a hard link", p, n.Ino(), prev.Path())
		}
		inos[n.Ino()] = n
		switch n.Type() {
		case index.TypeHardlink, index.TypeWhiteout, index.TypeOpaque:
			t.Errorf("%s: type %d in the tree", p, n.Type())
		}
		if n.IsDir() {
			names := make([]string, 0, len(n.Children()))
			subdirs := 0
			for _, c := range n.Children() {
				names = append(names, c.Name())
				if c.Parent() != n {
					t.Errorf("%s/%s: wrong parent", p, c.Name())
				}
				if c.IsDir() {
					subdirs++
				}
			}
			if !slices.IsSorted(names) || len(slices.Compact(slices.Clone(names))) != len(names) {
				t.Errorf("%s: children not sorted and unique: %q", p, names)
			}
			if want := uint32(2 + subdirs); n.Nlink() != want {
				t.Errorf("%s: nlink %d, want %d", p, n.Nlink(), want)
			}
		} else {
			links[n.meta()]++
			if len(n.Children()) != 0 {
				t.Errorf("%s: non-directory with children", p)
			}
		}
		return nil
	})
	for inode, paths := range links {
		if inode.nlink != paths {
			t.Errorf("inode %d: nlink %d, %d paths", inode.ino, inode.nlink, paths)
		}
	}
	if count != tree.Len() {
		t.Errorf("Len() = %d, walked %d", tree.Len(), count)
	}
}

var testTime = time.Date(2021, 3, 4, 5, 6, 7, 123456789, time.UTC)
