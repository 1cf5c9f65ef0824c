package fs

import (
	"fmt"
	"testing"

	"github.com/imgfs/imgfs/index"
)

// benchLayers is a 100k-entry image: a 90k-entry base in lexical order as
// image builders write it (dirs of 50 files, three levels deep) and two
// upper layers in no particular order that replace, whiteout, make
// directories opaque and add hard links.
func benchLayers() [][]index.Entry {
	var base []index.Entry
	for a := 0; len(base) < 90_000; a++ {
		da := fmt.Sprintf("usr/lib%03d", a)
		base = append(base, dir(da))
		for b := 0; b < 30 && len(base) < 90_000; b++ {
			db := fmt.Sprintf("%s/pkg%02d", da, b)
			base = append(base, dir(db))
			for c := 0; c < 50; c++ {
				base = append(base, reg(fmt.Sprintf("%s/file%02d.py", db, c), int64(c)))
			}
		}
	}
	var up1, up2 []index.Entry
	for i := 0; len(up1) < 8_000; i++ {
		up1 = append(up1, reg(fmt.Sprintf("usr/lib%03d/pkg%02d/file%02d.py", i%50, i%30, i%50), 1))
		up1 = append(up1, whiteout(fmt.Sprintf("usr/lib%03d/pkg%02d/file%02d.py", (i+7)%50, i%30, (i+3)%50)))
	}
	for i := 0; len(up2) < 2_000; i++ {
		d := fmt.Sprintf("opt/app%d", i)
		up2 = append(up2, dir(d), reg(d+"/bin", 10), hardlink(d+"/bin2", d+"/bin"))
		up2 = append(up2, opaque(fmt.Sprintf("usr/lib%03d/pkg%02d", i%50, i%30)))
	}
	return [][]index.Entry{base, up1, up2}
}

func BenchmarkMerge100k(b *testing.B) {
	layers := benchLayers()
	total := 0
	for _, l := range layers {
		total += len(l)
	}
	opts := MergeOptions{Logger: quietLogger()}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		Merge(layers, opts)
	}
	b.ReportMetric(float64(total), "entries")
}

// TestMerge100kIsFast guards the mount-time budget loosely (the benchmark
// gives the real number): 100k entries must merge well under a second even
// on a loaded machine.
// The benchmark's layers merge into the tree they describe; how fast is
// BenchmarkMerge100k's business (make bench), not a timed test's.
func TestMergeBenchLayers(t *testing.T) {
	tree := mustMerge(t, benchLayers()...)
	if tree.Len() < 80_000 {
		t.Errorf("tree has %d nodes", tree.Len())
	}
}
