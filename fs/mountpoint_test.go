package fs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestUnescapeMountinfo(t *testing.T) {
	if got := unescapeMountinfo(`/tmp/with\040space\011tab`); got != "/tmp/with space\ttab" {
		t.Fatalf("got %q", got)
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
