package integration

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
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
		// No file copies: the second pass is about READs served from the
		// disk cache, which a copy would make the kernel skip.
		m := mountImage(t, ref, mountOptions{CacheDir: cacheDir, Args: []string{"--debug", "--prefetch=none", "--file-copies=0"}})
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

// TestCLIFileCopies: as root on a kernel with FUSE passthrough, a large
// file read to its end is copied into the cache dir, and the next mount
// hands the copy to the kernel: the same bytes, with no READ reaching the
// server. A file read in part is not copied, and a mount that ends right
// after the read finishes the copy first.
func TestCLIFileCopies(t *testing.T) {
	requirePassthrough(t)
	content := semiRandom(9, 3<<20+77)
	partial := semiRandom(10, 24<<20) // larger than the kernel's readahead (8 MiB)
	layer := MustLayer(t, LayerSpec{Compression: Gzip, Entries: []Entry{Dir("data"),
		{Path: "data/whole", Type: TypeFile, Mode: 0o644, Content: content},
		{Path: "data/part", Type: TypeFile, Mode: 0o644, Content: partial}}})
	reg := StartRegistry(t, RegistryOptions{})
	ref := reg.PushImage(t, "copies/app", "v1", MustImage(t, ImageSpec{Kind: OCI, Layers: []*BuiltLayer{layer}}))
	cacheDir := t.TempDir()

	m := mountImage(t, ref, mountOptions{CacheDir: cacheDir, Args: []string{"--prefetch=none"}})
	if got, err := os.ReadFile(m.path("data/whole")); err != nil || !bytes.Equal(got, content) {
		t.Fatalf("first read: %d bytes, %v", len(got), err)
	}
	f, err := os.Open(m.path("data/part"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.ReadAt(make([]byte, 4096), 12<<20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	// Unmounted at once, as a CI job would: the mount finishes the copy
	// of what was just read before it exits.
	m.unmount(t)
	if n := len(fileCopies(cacheDir)); n != 1 {
		t.Fatalf("%d file copies after the mount ended, want 1 (the file read whole; not the one read in part); server log:\n%s", n, tailFile(m.LogPath, 20))
	}

	m = mountImage(t, ref, mountOptions{CacheDir: cacheDir, Args: []string{"--prefetch=none", "--debug"}})
	if got, err := os.ReadFile(m.path("data/whole")); err != nil || !bytes.Equal(got, content) {
		t.Fatalf("read from the copy: %d bytes, %v", len(got), err)
	}
	m.unmount(t)
	log, err := os.ReadFile(m.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(log), ": READ ") {
		t.Errorf("a READ reached the server for a file with a copy:\n%s", tailFile(m.LogPath, 20))
	}
	if !strings.Contains(string(log), "backing=") {
		t.Errorf("no passthrough open in the server log:\n%s", tailFile(m.LogPath, 20))
	}
}

// passthroughAvailable reports whether FUSE passthrough can work here:
// root and Linux 6.9 or later.
func passthroughAvailable() bool {
	var u unix.Utsname
	if os.Geteuid() != 0 || unix.Uname(&u) != nil {
		return false
	}
	var major, minor int
	if _, err := fmt.Sscanf(unix.ByteSliceToString(u.Release[:]), "%d.%d", &major, &minor); err != nil {
		return false
	}
	return major > 6 || major == 6 && minor >= 9
}

// requirePassthrough skips a test where FUSE passthrough cannot work.
func requirePassthrough(t *testing.T) {
	t.Helper()
	if !passthroughAvailable() {
		t.Skip("FUSE passthrough needs root and Linux 6.9 or later")
	}
}

// fileCopies lists the complete file copies in a cache dir.
func fileCopies(cacheDir string) []string {
	var out []string
	_ = filepath.WalkDir(filepath.Join(cacheDir, "files"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !strings.HasSuffix(p, ".tmp") {
			out = append(out, p)
		}
		return nil
	})
	return out
}
