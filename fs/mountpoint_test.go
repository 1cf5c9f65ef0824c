package fs

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestUnescapeMountinfo(t *testing.T) {
	if got := unescapeMountinfo(`/tmp/with\040space\011tab`); got != "/tmp/with space\ttab" {
		t.Fatalf("got %q", got)
	}
}

func TestParseMountinfo(t *testing.T) {
	data := `22 1 0:21 / /proc rw,nosuid shared:12 - proc proc rw
91 30 0:45 / /tmp/my\040mnt rw,nosuid,nodev shared:40 master:1 - fuse.imgfs reg/app:v1\040x ro,user_id=0
92 91 0:46 / /tmp/my\040mnt rw - overlay overlay rw
short line
`
	got := parseMountinfo(data)
	want := []MountEntry{{"/proc", "proc", "proc"}, {"/tmp/my mnt", "fuse.imgfs", "reg/app:v1 x"}, {"/tmp/my mnt", "overlay", "overlay"}}
	if !slices.Equal(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
}

func TestCheckMountPoint(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	full := filepath.Join(dir, "full")
	file := filepath.Join(dir, "file")
	os.Mkdir(empty, 0o755)
	os.Mkdir(full, 0o755)
	os.WriteFile(filepath.Join(full, "x"), nil, 0o644)
	os.WriteFile(file, nil, 0o644)
	for _, tc := range []struct {
		dir      string
		nonEmpty bool
		want     string
	}{
		{empty, false, ""},
		{full, false, "is not empty"},
		{full, true, ""},
		{file, false, "not a directory"},
		{filepath.Join(dir, "missing"), false, "does not exist"},
		{"/proc", true, "already a mount point (proc)"},
	} {
		err := CheckMountPoint(tc.dir, tc.nonEmpty)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s (nonEmpty %v): %v, want %q", tc.dir, tc.nonEmpty, err, tc.want)
		}
	}
}
