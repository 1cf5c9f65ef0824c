package fs

import (
	"errors"
	"fmt"
	iofs "io/fs"
	"sort"
	"time"

	"github.com/imgfs/imgfs/index"
)

// ErrFrozen is returned by the Add* methods once the tree is frozen.
var ErrFrozen = errors.New("tree is frozen")

// SynthAttr is the metadata of a synthetic node.
type SynthAttr struct {
	Mode     uint32 // permission bits (07777)
	UID, GID uint32
	ModTime  time.Time
}

// AddDir adds an empty directory. The parent must exist and the path must
// not.
func (t *Tree) AddDir(p string, a SynthAttr) (*Node, error) {
	return t.add(p, index.TypeDir, "", nil, a)
}

// AddFile adds a regular file whose content is served from memory. The tree
// keeps content: do not modify it afterwards.
func (t *Tree) AddFile(p string, content []byte, a SynthAttr) (*Node, error) {
	return t.add(p, index.TypeReg, "", content, a)
}

// AddSymlink adds a symbolic link to target (kept verbatim).
func (t *Tree) AddSymlink(p, target string, a SynthAttr) (*Node, error) {
	return t.add(p, index.TypeSymlink, target, nil, a)
}

func (t *Tree) add(p string, typ index.EntryType, linkname string, content []byte, a SynthAttr) (*Node, error) {
	if t.frozen {
		return nil, fmt.Errorf("add %s: %w", p, ErrFrozen)
	}
	clean, ok := index.CleanPath(p)
	if !ok || clean == "" {
		return nil, fmt.Errorf("add %q: %w", p, iofs.ErrInvalid)
	}
	dir, base := splitPath(clean)
	parent, ok := t.Lookup(dir)
	if !ok {
		return nil, fmt.Errorf("add %s: parent: %w", clean, iofs.ErrNotExist)
	}
	if !parent.IsDir() {
		return nil, fmt.Errorf("add %s: parent is not a directory: %w", clean, iofs.ErrInvalid)
	}
	cs := parent.children
	i := sort.Search(len(cs), func(i int) bool { return cs[i].name >= base })
	if i < len(cs) && cs[i].name == base {
		return nil, fmt.Errorf("add %s: %w", clean, iofs.ErrExist)
	}
	e := &index.Entry{
		Name:     clean,
		Type:     typ,
		Mode:     a.Mode & 07777,
		UID:      a.UID,
		GID:      a.GID,
		Size:     int64(len(content)),
		ModTime:  a.ModTime,
		Linkname: linkname,
	}
	n := &Node{path: clean, name: base, parent: parent, entry: e, layer: SyntheticLayer, ino: t.nextIno, nlink: 1, content: content}
	t.nextIno++
	if typ == index.TypeDir {
		n.nlink = 2
		parent.nlink++
	}
	parent.children = append(parent.children, nil)
	copy(parent.children[i+1:], parent.children[i:])
	parent.children[i] = n
	t.count++
	if typ == index.TypeReg {
		t.fileBytes += e.Size
	}
	return n, nil
}

// setImpliedRootTime gives the root directory the time t when no layer
// declared it (its time is then the epoch, which means nothing): tools
// showing the root's mtime then show when the image was made.
func (t *Tree) setImpliedRootTime(mt time.Time) error {
	if t.frozen {
		return fmt.Errorf("set the root's time: %w", ErrFrozen)
	}
	r := t.root
	if r.link != nil || r.entry.ModTime.Unix() > 0 {
		return nil
	}
	e := *r.entry // implied directories share one Entry: copy it
	e.ModTime = mt
	r.entry = &e
	return nil
}
