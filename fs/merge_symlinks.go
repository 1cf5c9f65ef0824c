package fs

import (
	"strings"

	"github.com/imgfs/imgfs/index"
)

// maxLinkHops bounds the symlinks followed to resolve one path, as the
// kernel's ELOOP limit does.
const maxLinkHops = 40

// resolveDir returns where directory path dir leads once the symlinks
// among its components are followed, confined to the root: what umoci and
// containerd do when a layer puts an entry under a path that goes through a
// symlink (a layer made from a path with a link in it). ".." at the root
// stays at the root, and an absolute target starts again from the root.
// The result has no symlink components; with too many hops, dir is
// returned unchanged (the link is then replaced by a directory, as before).
func (m *merger) resolveDir(dir string) string {
	var out []string
	rest := strings.Split(dir, "/")
	for hops := 0; len(rest) > 0; {
		c := rest[0]
		rest = rest[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
			continue
		}
		n := m.paths[strings.Join(append(out, c), "/")]
		if n == nil || n.meta().entry.Type != index.TypeSymlink { // a hard link to a symlink is one too
			out = append(out, c)
			continue
		}
		if hops++; hops > maxLinkHops {
			return dir
		}
		target := n.meta().entry.Linkname
		if strings.HasPrefix(target, "/") {
			out = out[:0]
		}
		rest = append(strings.Split(target, "/"), rest...)
	}
	return strings.Join(out, "/")
}
