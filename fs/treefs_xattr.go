package fs

import (
	"slices"
	"strings"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// GetXAttr follows getxattr(2): with a buffer too small (go-fuse passes an
// empty one for a size probe) it answers the size and ERANGE, which go-fuse
// turns into a plain size answer for probes.
func (t *treeFS) GetXAttr(cancel <-chan struct{}, header *fuse.InHeader, attr string, dest []byte) (uint32, fuse.Status) {
	n := t.node(header.NodeId)
	if n == nil {
		return 0, errStale
	}
	v, ok := n.Xattrs()[attr]
	if !ok {
		return 0, fuse.ENOATTR
	}
	if len(dest) < len(v) {
		return uint32(len(v)), fuse.ERANGE
	}
	return uint32(copy(dest, v)), fuse.OK
}

func (t *treeFS) ListXAttr(cancel <-chan struct{}, header *fuse.InHeader, dest []byte) (uint32, fuse.Status) {
	n := t.node(header.NodeId)
	if n == nil {
		return 0, errStale
	}
	xs := n.Xattrs()
	if len(xs) == 0 {
		return 0, fuse.OK
	}
	names := make([]string, 0, len(xs))
	size := 0
	for k := range xs {
		names = append(names, k)
		size += len(k) + 1
	}
	if len(dest) < size {
		return uint32(size), fuse.ERANGE
	}
	slices.Sort(names)
	var b strings.Builder
	for _, k := range names {
		b.WriteString(k)
		b.WriteByte(0)
	}
	return uint32(copy(dest, b.String())), fuse.OK
}
