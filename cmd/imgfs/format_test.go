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

func TestEscapeName(t *testing.T) {
	for in, want := range map[string]string{
		"plain":       "plain",
		"with space":  "with space",
		"ünïcödé 文件":  "ünïcödé 文件",
		"a\nb":        `a\nb`,
		"\x1b[31mred": `\033[31mred`,
		"tab\there":   `tab\there`,
		"back\\slash": `back\\slash`,
		"bad\xffutf8": `bad\377utf8`,
		"del\x7f":     `del\177`,
	} {
		if got := escapeName(in); got != want {
			t.Errorf("escapeName(%q) = %q, want %q", in, got, want)
		}
	}
}
