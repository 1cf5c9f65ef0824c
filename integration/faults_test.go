package integration

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// faultFiles is the content of the fault tests' image: 40 files from 1 KiB
// to 2 MiB, text and random, about 12 MiB: several gzip spans, many
// eStargz chunks.
func faultFiles() map[string][]byte {
	files := map[string][]byte{}
	random := conformanceRandom(2 << 20)
	for i := 0; i < 40; i++ {
		size := 1<<10 + (i*i*1297)%(2<<20)
		content := conformanceText(size)
		if i%3 == 0 {
			content = random[:size]
		}
		// Distinct content per file, so that a span served for the wrong
		// file shows.
		content = append([]byte(fmt.Sprintf("file %02d\n", i)), content...)
		files[fmt.Sprintf("data/f%02d", i)] = content
	}
	return files
}

// TestFaultyNetwork: a never-seen image in each lazily built format,
// mounted through a proxy that faults 10% and then 30% of blob requests
// (503, 429, resets mid-body, flipped bytes, pauses). The index builds
// survive (resumed streams, builds started again after a bad byte), every
// file reads back exactly (a read may fail with EIO and succeed when
// tried again; no read ever returns wrong bytes), and the mount stays up.
func TestFaultyNetwork(t *testing.T) {
	files := faultFiles()
	var entries []Entry
	entries = append(entries, Dir("data"))
	for p, c := range files {
		entries = append(entries, Entry{Path: p, Type: TypeFile, Mode: 0o644, Content: c})
	}
	reg := StartRegistry(t, RegistryOptions{})
	for _, c := range []Compression{Gzip, Zstd, Estargz} {
		img := MustImage(t, ImageSpec{Kind: OCI, Layers: []*BuiltLayer{MustLayer(t, LayerSpec{Compression: c, Entries: entries})}})
		name := "faults/" + string(c)
		reg.PushImage(t, name, "v1", img)
		for i, rate := range []float64{0.1, 0.3} {
			t.Run(fmt.Sprintf("%s/%.0f%%", c, rate*100), func(t *testing.T) {
				proxy := StartFaultProxy(t, reg.Host, rate, uint64(17+i))
				m := mountImage(t, proxy.Host+"/"+name+":v1", mountOptions{Args: []string{"--prefetch=none"}})
				failed := readAllExpecting(t, m, files)
				for pass := 0; len(failed) > 0 && pass < 3; pass++ {
					t.Logf("pass %d: %d reads failed with an error; reading them again", pass+1, len(failed))
					failed = readSome(t, m, files, failed)
				}
				if len(failed) > 0 {
					t.Errorf("files still unreadable after 4 passes: %v", failed)
				}
				if _, err := os.Stat(m.path("data")); err != nil {
					t.Errorf("mount not alive: %v", err)
				}
				t.Logf("proxy: %v", proxy.Counts())
			})
		}
	}
}

// TestIndexBuildSurvivesEachFault: the one-pass index build of a
// never-seen gzip or zstd layer meets each fault on its blob stream: it
// resumes after a reset or pause, starts again after a flipped byte (the
// digest check fails), retries 503 and 429; the mount then reads right.
func TestIndexBuildSurvivesEachFault(t *testing.T) {
	files := faultFiles()
	entries := []Entry{Dir("data")}
	for p, c := range files {
		entries = append(entries, Entry{Path: p, Type: TypeFile, Mode: 0o644, Content: c})
	}
	reg := StartRegistry(t, RegistryOptions{})
	for _, c := range []Compression{Gzip, Zstd} {
		img := MustImage(t, ImageSpec{Kind: OCI, Layers: []*BuiltLayer{MustLayer(t, LayerSpec{Compression: c, Entries: entries})}})
		name := "buildfaults/" + string(c)
		reg.PushImage(t, name, "v1", img)
		for _, faults := range [][]Fault{{FaultReset}, {FaultFlip}, {FaultPause}, {Fault503, Fault429}, {FaultReset, FaultFlip, FaultReset}} {
			t.Run(fmt.Sprintf("%s/%v", c, faults), func(t *testing.T) {
				proxy := StartFaultProxy(t, reg.Host, 0, 1)
				proxy.FaultNext(faults...)
				m := mountImage(t, proxy.Host+"/"+name+":v1", mountOptions{Args: []string{"--prefetch=none"}})
				if failed := readAllExpecting(t, m, files); len(failed) > 0 {
					t.Errorf("reads failed with no fault left: %v", failed)
				}
				t.Logf("proxy: %v", proxy.Counts())
			})
		}
	}
}

// readAllExpecting reads every file once and compares; it returns the
// files whose read failed with an error (wrong bytes fail the test).
func readAllExpecting(t *testing.T, m *mountedImage, files map[string][]byte) []string {
	t.Helper()
	var all []string
	for p := range files {
		all = append(all, p)
	}
	return readSome(t, m, files, all)
}

func readSome(t *testing.T, m *mountedImage, files map[string][]byte, paths []string) []string {
	t.Helper()
	var failed []string
	for _, p := range paths {
		start := time.Now()
		got, err := os.ReadFile(filepath.Join(m.Dir, p))
		if err != nil {
			if !strings.Contains(err.Error(), "input/output error") {
				t.Errorf("%s: %v (want EIO or the bytes)", p, err)
			}
			failed = append(failed, p)
			continue
		}
		if !bytes.Equal(got, files[p]) {
			t.Fatalf("%s: WRONG BYTES (%d bytes read, want %d) after %s", p, len(got), len(files[p]), time.Since(start))
		}
	}
	return failed
}
