package main

import (
	"strings"
	"testing"

	"github.com/imgfs/imgfs/fs"
	"github.com/imgfs/imgfs/image"
	"github.com/imgfs/imgfs/index"
	"github.com/imgfs/imgfs/manifest"
)

func TestModeStringShowsSpecialBits(t *testing.T) {
	tree := fs.Merge([][]index.Entry{{
		{Name: "etc", Type: index.TypeDir, Mode: 0o755},
		{Name: "etc/os-release", Type: index.TypeReg, Mode: 0o644, Size: 3},
		{Name: "lib", Type: index.TypeSymlink, Mode: 0o777, Linkname: "usr/lib"},
		{Name: "bin", Type: index.TypeDir, Mode: 0o4755 | 0o1000},
	}}, fs.MergeOptions{})
	for path, want := range map[string]string{
		"/bin":            "drwsr-xr-t",
		"/lib":            "lrwxrwxrwx",
		"/etc/os-release": "-rw-r--r--",
	} {
		n, err := image.Lookup(tree, path, false)
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
