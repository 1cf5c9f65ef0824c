package fs

import "strings"

// cleanPath puts an archive path in the tree's form: relative to the root,
// no empty, "." or ".." components, no leading or trailing slash; "" is the
// root. ok is false when the path climbs above the root, which callers
// drop rather than clamp: such an entry is hostile or broken.
func cleanPath(p string) (clean string, ok bool) {
	if isCleanPath(p) {
		return p, true
	}
	parts := strings.Split(p, "/")
	out := parts[:0]
	for _, c := range parts {
		switch c {
		case "", ".":
		case "..":
			if len(out) == 0 {
				return "", false
			}
			out = out[:len(out)-1]
		default:
			out = append(out, c)
		}
	}
	return strings.Join(out, "/"), true
}

// isCleanPath is the allocation-free fast path: index entries are normally
// clean already. A "." or ".." component can only start at a '.' that
// starts the path or follows a '/', so only those dots are looked at.
func isCleanPath(p string) bool {
	if p == "" {
		return true
	}
	if p[0] == '/' || p[len(p)-1] == '/' || strings.Contains(p, "//") {
		return false
	}
	for i := 0; ; {
		j := strings.IndexByte(p[i:], '.')
		if j < 0 {
			return true
		}
		j += i
		if j == 0 || p[j-1] == '/' {
			k := j + 1
			if k < len(p) && p[k] == '.' {
				k++
			}
			if k == len(p) || p[k] == '/' {
				return false
			}
		}
		i = j + 1
	}
}

// splitPath splits a clean, non-root path into its directory ("" for the
// root) and last component.
func splitPath(p string) (dir, base string) {
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return "", p
	}
	return p[:i], p[i+1:]
}
