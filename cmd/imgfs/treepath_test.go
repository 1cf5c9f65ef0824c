package main

import (
	"strings"
	"testing"

	"github.com/imgfs/imgfs/fs"
	"github.com/imgfs/imgfs/index"
	"github.com/imgfs/imgfs/manifest"
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
	tree, err := fs.Merge([][]index.Entry{entries}, fs.MergeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

func TestLookupPathFollowsSymlinksInsideTheImage(t *testing.T) {
	tree := testTree(t)
	for path, want := range map[string]string{
		"/lib/os-release":                 "/usr/lib/os-release", // symlinked directory component
		"abs":                             "/usr/lib/os-release", // absolute target from the image root
		"/escape":                         "/etc/os-release",     // .. stops at the image root
		"/usr/./lib/../../etc/os-release": "/etc/os-release",
	} {
		n, err := lookupPath(tree, path, true)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if n.Path() != want {
			t.Errorf("%s resolved to %s, want %s", path, n.Path(), want)
		}
	}
	if n, err := lookupPath(tree, "/lib", false); err != nil || n.Type() != index.TypeSymlink {
		t.Errorf("without follow the last symlink must be returned itself: %v %v", n, err)
	}
	for path, wantErr := range map[string]string{
		"/loop":              "too many levels of symbolic links",
		"/dangling":          "no such file or directory",
		"/etc/os-release/x":  "not a directory",
		"/usr/missing/thing": "/usr/missing: no such file or directory",
	} {
		if _, err := lookupPath(tree, path, true); err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("%s: err %v, want %q", path, err, wantErr)
		}
	}
}

func TestModeStringShowsSpecialBits(t *testing.T) {
	tree := testTree(t)
	for path, want := range map[string]string{
		"/bin":            "drwsr-xr-t",
		"/lib":            "lrwxrwxrwx",
		"/etc/os-release": "-rw-r--r--",
	} {
		n, err := lookupPath(tree, path, false)
		if err != nil {
			t.Fatal(err)
		}
		if got := modeString(n); got != want {
			t.Errorf("%s: %s, want %s", path, got, want)
		}
	}
}

func TestUnescapeMountinfo(t *testing.T) {
	if got := unescapeMountinfo(`/tmp/with\040space\011tab`); got != "/tmp/with space\ttab" {
		t.Fatalf("got %q", got)
	}
}

func TestReadModeNamesWhatIsNotLazyOrVerified(t *testing.T) {
	for format, want := range map[manifest.Format]string{
		manifest.FormatZstd:        "not lazy",
		manifest.FormatTar:         "uncompressed tar",
		manifest.FormatEstargz:     "TOC not pinned",
		manifest.FormatZstdChunked: "TOC not pinned",
	} {
		ix := &index.Index{Format: format} // built without verification
		if got := readMode(ix); !strings.Contains(got, want) {
			t.Errorf("%s: %q, want it to say %q", format, got, want)
		}
	}
}
