package integration

import (
	"bytes"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
)

// TestFullSizeReadsLogNoSpliceWarning: the kernel sends 1 MiB READs (the
// mount's max_read) to a sequential reader. go-fuse used to try to splice
// such replies and log "trySplice: ... max pipe size" at WARN for each,
// as the reply with its header exceeds the 1 MiB pipe. Read once from the
// registry and once from the disk cache after a remount (the two ways bytes
// reach a reply); the server logs (with --debug, which shows each READ's
// size) must show 1 MiB READs and nothing about splice.
func TestFullSizeReadsLogNoSpliceWarning(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: only then is the kernel readahead window raised enough for 1 MiB READs")
	}
	content := semiRandom(7, 12<<20+333)
	layer := MustLayer(t, LayerSpec{Compression: Gzip, Entries: []Entry{Dir("data"),
		{Path: "data/big", Type: TypeFile, Mode: 0o644, Content: content}}})
	reg := StartRegistry(t, RegistryOptions{})
	ref := reg.PushImage(t, "splice/big", "v1", MustImage(t, ImageSpec{Kind: OCI, Layers: []*BuiltLayer{layer}}))
	cacheDir := t.TempDir()
	for _, pass := range []string{"from the registry", "from the disk cache"} {
		m := mountImage(t, ref, mountOptions{CacheDir: cacheDir, Args: []string{"--debug", "--prefetch=none"}})
		got, err := readWith1MiB(m.path("data/big"))
		if err != nil || !bytes.Equal(got, content) {
			t.Fatalf("%s: read %d bytes (%v), want the file's %d", pass, len(got), err, len(content))
		}
		m.unmount(t)
		log, err := os.ReadFile(m.LogPath)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(log), " +1048576)") {
			t.Fatalf("%s: no 1 MiB READ in the server log; the test did not exercise full-size replies:\n%s", pass, tailFile(m.LogPath, 20))
		}
		for _, line := range strings.Split(string(log), "\n") {
			// Not "splice" alone: the debug trace lists the kernel's
			// SPLICE_* capabilities.
			if strings.Contains(line, "trySplice") || strings.Contains(line, "pipe size") {
				t.Errorf("%s: server log: %s", pass, line)
			}
		}
	}
}

// readWith1MiB reads a file with 1 MiB read(2)s, as dd bs=1M does.
func readWith1MiB(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []byte
	buf := make([]byte, 1<<20)
	for {
		n, err := f.Read(buf)
		out = append(out, buf[:n]...)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
	}
}
