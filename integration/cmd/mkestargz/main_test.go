package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWriteTar checks that a dir is stored under its absolute path after
// its parents, with its files, dirs and symlinks, and that a path through a
// symlink is refused.
func TestWriteTar(t *testing.T) {
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	root, err := filepath.EvalSymlinks(t.TempDir()) // TMPDIR may be a symlink
	must(err)
	must(os.MkdirAll(filepath.Join(root, "a/b"), 0o755))
	must(os.WriteFile(filepath.Join(root, "a/f"), []byte("hello"), 0o644))
	must(os.WriteFile(filepath.Join(root, "a/b/g"), nil, 0o600))
	must(os.Symlink("f", filepath.Join(root, "a/l")))
	must(os.Symlink("a", filepath.Join(root, "link")))

	var buf bytes.Buffer
	files, dirs, err := writeTar(&buf, []string{filepath.Join(root, "a")})
	must(err)
	var names []string
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		must(err)
		names = append(names, h.Name)
		if strings.HasSuffix(h.Name, "a/l") && h.Linkname != "f" {
			t.Errorf("%s: link %q", h.Name, h.Linkname)
		}
	}
	rel := strings.TrimPrefix(root, "/") + "/"
	want := []string{rel + "a/", rel + "a/b/", rel + "a/b/g", rel + "a/f", rel + "a/l"}
	got := names[len(names)-len(want):]
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("entries %q, want them to end with %q", names, want)
	}
	// Every parent dir of root comes first, shortest first.
	if names[0] != strings.SplitN(rel, "/", 2)[0]+"/" {
		t.Errorf("first entry %q", names[0])
	}
	if files != 2 || dirs != len(names)-3 {
		t.Errorf("files=%d dirs=%d, entries %q", files, dirs, names)
	}

	if _, _, err := writeTar(io.Discard, []string{filepath.Join(root, "link")}); err == nil || !strings.Contains(err.Error(), "symlink") {
		t.Errorf("through a symlink: err %v", err)
	}
}
