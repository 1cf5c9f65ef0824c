package fs

import (
	"context"
	"fmt"
	iofs "io/fs"
	"path/filepath"
	"testing"

	"github.com/imgfs/imgfs/index"
)

// BenchmarkFUSEWalk50k walks and lstats a 50k-file tree through a fresh
// mount per iteration (cold kernel caches), like `find -exec stat` (P6).
func BenchmarkFUSEWalk50k(b *testing.B) {
	var entries []index.Entry
	for d := 0; len(entries) < 50_000; d++ {
		dn := fmt.Sprintf("usr/share/d%03d", d)
		entries = append(entries, dir(dn))
		for f := 0; f < 99; f++ {
			entries = append(entries, reg(fmt.Sprintf("%s/f%02d", dn, f), 100))
		}
	}
	tree := Merge([][]index.Entry{entries}, MergeOptions{Logger: quietLogger()})
	tree.Freeze()
	requireFUSE(b)
	b.ResetTimer()
	for b.Loop() {
		dir := b.TempDir()
		m, err := Mount(context.Background(), dir, tree, nil, MountOptions{Logger: quietLogger()})
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		err = filepath.WalkDir(dir, func(p string, d iofs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			_, err = d.Info()
			n++
			return err
		})
		if uerr := m.Unmount(); uerr != nil {
			b.Fatal(uerr)
		}
		if err != nil || n != tree.Len() {
			b.Fatalf("walk: %v, %d of %d", err, n, tree.Len())
		}
	}
	b.ReportMetric(float64(tree.Len()), "files")
}
