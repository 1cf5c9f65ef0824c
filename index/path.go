package index

import "strings"

// CleanPath puts an archive path in the form entries and the merged tree
// use: relative to the root, no empty, "." or ".." components, no leading
// or trailing slash; "" is the root. ok is false for a path that climbs
// above the root, contains NUL or is longer than PATH_MAX: callers drop
// such an entry rather than clamp it, as it is hostile or broken. Every
// package that cleans a path (tar walker, TOC conversion, index decoding,
// merge, lookups) uses this one rule.
func CleanPath(p string) (clean string, ok bool) {
	if len(p) > maxPathLen || strings.IndexByte(p, 0) >= 0 {
		return "", false
	}
	if isClean(p) {
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

// isClean is CleanPath's allocation-free fast path: paths are normally
// clean already. A "." or ".." component can only start at a '.' that
// starts the path or follows a '/', so only those dots are looked at.
func isClean(p string) bool {
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

// isCleanName reports whether name is exactly as CleanPath would leave it,
// so that a damaged index file cannot bring ".." into the merged tree.
func isCleanName(name string) bool {
	c, ok := CleanPath(name)
	return ok && c == name
}
