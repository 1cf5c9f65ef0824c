package integration

import (
	"os"
	"testing"
)

// TestMergeFidelityAgainstUmoci mounts small images whose layers use the
// merge rules extractors are most often wrong about, and compares each
// mount with umoci's unpack of the same image.
func TestMergeFidelityAgainstUmoci(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the umoci oracle needs root to unpack owners")
	}
	cases := []struct {
		name   string
		layers [][]Entry
		gone   []string // paths the oracle must not have: the case means something
		kept   []string // paths it must have
	}{
		{
			// A hard link written before a whiteout of its target, in one
			// layer: an in-order extractor links first, then deletes.
			name: "hardlink-then-whiteout",
			layers: [][]Entry{
				{Dir("d"), File("a", "alpha\n"), File("d/x", "ex\n")},
				{Hardlink("b", "a"), Whiteout("a"), Hardlink("y", "d/x"), OpaqueDir("d"), File("d/new", "n\n")},
			},
			gone: []string{"a", "d/x"},
			kept: []string{"b", "y", "d/new"},
		},
		{
			// An opaque marker at the root hides every lower entry.
			name: "root-opaque",
			layers: [][]Entry{
				{Dir("etc"), File("etc/old", "o\n"), File("gone", "g\n")},
				{OpaqueDir("."), Dir("etc"), File("etc/new", "n\n")},
			},
			gone: []string{"gone", "etc/old"},
			kept: []string{"etc/new"},
		},
		{
			// An entry whose parent path is a symlink in the same layer
			// (a layer built from a path through a link).
			name: "entry-under-symlink",
			layers: [][]Entry{
				{Dir("usr"), Dir("usr/t"), Symlink("usr/l", "t"), File("usr/l/f", "through the link\n")},
			},
			kept: []string{"usr/t/f", "usr/l"},
		},
	}
	reg := StartRegistry(t, RegistryOptions{})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var layers []*BuiltLayer
			for _, entries := range c.layers {
				layers = append(layers, MustLayer(t, LayerSpec{Compression: Gzip, Entries: entries}))
			}
			img := MustImage(t, ImageSpec{Kind: OCI, Layers: layers})
			oracle, err := ScanTree(OracleRootfs(t, img), ScanOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range c.gone {
				if oracle.Entries[p] != nil {
					t.Fatalf("oracle has /%s: the case does not test what it says", p)
				}
			}
			for _, p := range c.kept {
				if oracle.Entries[p] == nil {
					t.Fatalf("oracle lacks /%s", p)
				}
			}
			m := mountImage(t, reg.PushImage(t, "fidelity/"+c.name, "v1", img), mountOptions{})
			synth := synthesizedPaths(oracle)
			got, err := ScanTree(m.Dir, ScanOptions{Skip: skipSynthesized(synth)})
			if err != nil {
				t.Fatal(err)
			}
			cmp := conformanceCompare(oracle, declaredPaths(c.layers...), emptyXattrs(c.layers...))
			if diffs := CompareTrees(withSynthesizedRootLinks(oracle, synth), got, cmp); len(diffs) > 0 {
				t.Errorf("mount differs from umoci's rootfs:\n%s", FormatDiffs(diffs, 20))
			}
		})
	}
}
