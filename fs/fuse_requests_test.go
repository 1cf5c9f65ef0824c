package fs

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// requestDelta runs op and returns how many requests of each kind the
// mount received meanwhile.
func requestDelta(t *testing.T, m *Mounted, op func()) map[string]uint64 {
	t.Helper()
	before := m.Requests()
	op()
	after := m.Requests()
	if len(before) != len(after) || len(after) != int(numRequestKinds) {
		t.Fatalf("Requests: %d then %d kinds, want %d", len(before), len(after), numRequestKinds)
	}
	d := map[string]uint64{}
	for i, c := range after {
		if c.Kind != before[i].Kind {
			t.Fatalf("kind %d: %q then %q", i, before[i].Kind, c.Kind)
		}
		if n := c.N - before[i].N; n > 0 {
			d[c.Kind] = n
		}
	}
	return d
}

// TestFUSERequestCounts: each kind of operation is counted under its kind,
// and Total is the sum.
func TestFUSERequestCounts(t *testing.T) {
	img := buildTestImage(t)
	mnt, m := mountForTest(t, context.Background(), img.tree, img.readers, MountOptions{Logger: quietLogger()})
	p := func(rel string) string { return filepath.Join(mnt, rel) }
	for _, tc := range []struct {
		kind string
		op   func() error
	}{
		{"lookup", func() error { _, err := os.Lstat(p("owned")); return err }},
		{"readdirplus", func() error { _, err := os.ReadDir(p("data")); return err }},
		{"read", func() error { _, err := os.ReadFile(p("data/big")); return err }},
		{"readlink", func() error { _, err := os.Readlink(p("lib")); return err }},
		{"getxattr", func() error { _, err := unix.Lgetxattr(p("owned"), "user.a", make([]byte, 16)); return err }},
		{"listxattr", func() error { _, err := unix.Llistxattr(p("owned"), make([]byte, 64)); return err }},
		{"statfs", func() error { var st unix.Statfs_t; return unix.Statfs(mnt, &st) }},
	} {
		var err error
		d := requestDelta(t, m, func() { err = tc.op() })
		if err != nil {
			t.Fatalf("%s: %v", tc.kind, err)
		}
		if d[tc.kind] == 0 {
			t.Errorf("%s: not counted; counted %v", tc.kind, d)
		}
	}
	var sum uint64
	for _, c := range m.Requests() {
		sum += c.N
	}
	if r := m.Requests(); r.Total() != sum || sum == 0 || r.Count("lookup") == 0 || r.Count("no such kind") != 0 {
		t.Errorf("Total %d, sum %d, lookup %d", r.Total(), sum, r.Count("lookup"))
	}
}
