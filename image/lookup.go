package image

import (
	"fmt"
	"path"
	"strings"
	"syscall"

	"github.com/imgfs/imgfs/fs"
	"github.com/imgfs/imgfs/index"
)

// maxSymlinkHops is the kernel's limit (MAXSYMLINKS) on links followed in
// one path walk.
const maxSymlinkHops = 40

// Lookup finds p in the merged tree as a process chrooted into the image
// would: symlinks in directory components are followed (absolute ones from
// the image root, never outside it), and the last one too when follow is
// set.
func (img *Image) Lookup(p string, follow bool) (*fs.Node, error) {
	return Lookup(img.tree, p, follow)
}

// Lookup is Image.Lookup on any tree.
func Lookup(t *fs.Tree, p string, follow bool) (*fs.Node, error) {
	hops := 0
	return walkPath(t, t.Root(), p, follow, &hops)
}

func walkPath(t *fs.Tree, dir *fs.Node, p string, follow bool, hops *int) (*fs.Node, error) {
	if strings.HasPrefix(p, "/") {
		dir = t.Root()
	}
	parts := strings.FieldsFunc(p, func(r rune) bool { return r == '/' })
	node := dir
	for i, part := range parts {
		last := i == len(parts)-1
		switch part {
		case ".":
			continue
		case "..":
			if node.Parent() != nil {
				node = node.Parent()
			}
			continue
		}
		if !node.IsDir() {
			return nil, fmt.Errorf("%s: %w", "/"+path.Join(parts[:i]...), syscall.ENOTDIR)
		}
		child := node.Child(part)
		if child == nil {
			return nil, fmt.Errorf("%s: %w", "/"+path.Join(parts[:i+1]...), syscall.ENOENT)
		}
		if child.Type() == index.TypeSymlink && (!last || follow) {
			if child.Linkname() == "" { // as Linux: an empty target names nothing
				return nil, fmt.Errorf("%s: %w", "/"+path.Join(parts[:i+1]...), syscall.ENOENT)
			}
			*hops++
			if *hops > maxSymlinkHops {
				return nil, fmt.Errorf("%s: %w", p, syscall.ELOOP)
			}
			target, err := walkPath(t, node, child.Linkname(), true, hops)
			if err != nil {
				return nil, err
			}
			child = target
		}
		node = child
	}
	return node, nil
}
