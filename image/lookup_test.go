package image

import (
	"strings"
	"testing"

	"github.com/imgfs/imgfs/fs"
	"github.com/imgfs/imgfs/index"
)

func testTree(t *testing.T) *fs.Tree {
	t.Helper()
	entries := []index.Entry{
		{Name: "etc", Type: index.TypeDir, Mode: 0o755},
		{Name: "etc/os-release", Type: index.TypeReg, Mode: 0o644, Size: 3},
		{Name: "usr", Type: index.TypeDir, Mode: 0o755},
		{Name: "usr/lib", Type: index.TypeDir, Mode: 0o755},
		{Name: "usr/lib/os-release", Type: index.TypeReg, Mode: 0o644, Size: 5},
		{Name: "lib", Type: index.TypeSymlink, Mode: 0o777, Linkname: "usr/lib"},
		{Name: "abs", Type: index.TypeSymlink, Linkname: "/usr/lib/os-release"},
		{Name: "escape", Type: index.TypeSymlink, Linkname: "../../../../etc/os-release"},
		{Name: "loop", Type: index.TypeSymlink, Linkname: "loop"},
		{Name: "dangling", Type: index.TypeSymlink, Linkname: "nowhere"},
		{Name: "empty", Type: index.TypeSymlink, Linkname: ""},
		{Name: "bin", Type: index.TypeDir, Mode: 0o4755 | 0o1000},
	}
	return fs.Merge([][]index.Entry{entries}, fs.MergeOptions{})
}

func TestLookupFollowsSymlinksInsideTheImage(t *testing.T) {
	tree := testTree(t)
	for path, want := range map[string]string{
		"/lib/os-release":                 "/usr/lib/os-release", // symlinked directory component
		"abs":                             "/usr/lib/os-release", // absolute target from the image root
		"/escape":                         "/etc/os-release",     // .. stops at the image root
		"/usr/./lib/../../etc/os-release": "/etc/os-release",
	} {
		n, err := Lookup(tree, path, true)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if n.Path() != want {
			t.Errorf("%s resolved to %s, want %s", path, n.Path(), want)
		}
	}
	if n, err := Lookup(tree, "/lib", false); err != nil || n.Type() != index.TypeSymlink {
		t.Errorf("without follow the last symlink must be returned itself: %v %v", n, err)
	}
	for path, wantErr := range map[string]string{
		"/loop":              "too many levels of symbolic links",
		"/dangling":          "no such file or directory",
		"/etc/os-release/x":  "not a directory",
		"/usr/missing/thing": "/usr/missing: no such file or directory",
	} {
		if _, err := Lookup(tree, path, true); err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("%s: err %v, want %q", path, err, wantErr)
		}
	}
}
