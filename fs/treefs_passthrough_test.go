package fs

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/imgfs/imgfs/index"
	"github.com/imgfs/imgfs/index/cache"
)

// keyedReader is a memReader that offers its files for copying.
type keyedReader struct{ memReader }

func (keyedReader) ContentKey(e *index.Entry) string {
	return fmt.Sprintf("test/%d+%d", e.Offset, e.Size)
}

// passthroughTree is one large file (copied when read whole), one small
// file (never copied) and a second large one.
func passthroughTree(t *testing.T) (*Tree, []ContentReader, []byte) {
	t.Helper()
	big := make([]byte, 3*MinFileCopySize+12345)
	for i := range big {
		big[i] = byte(i*7 + i>>13)
	}
	var l layerBuilder
	l.add(reg("big", 0), big)
	l.add(reg("small", 0), []byte("small file"))
	l.add(reg("other", 0), big[:2*MinFileCopySize])
	return mustMerge(t, l.entries), []ContentReader{keyedReader{memReader{l.data}}}, big
}

// passthroughWorks reports whether this machine can test passthrough: root
// and a kernel that offered it to the mount.
func passthroughWorks(m *Mounted) bool {
	return os.Geteuid() == 0 && m.server.KernelSettings().Flags64()&fuse.CAP_PASSTHROUGH != 0
}

// mountWithCopies mounts tree with file copies in dir; it skips the test
// where passthrough cannot work.
func mountWithCopies(t *testing.T, tree *Tree, readers []ContentReader, dir string) (string, *Mounted, *cache.Copies) {
	t.Helper()
	copies, err := cache.NewCopies(dir, 1<<30, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	mnt, m := mountForTest(t, context.Background(), tree, readers, MountOptions{Logger: quietLogger(), FileCopies: copies})
	if !passthroughWorks(m) {
		t.Skip("FUSE passthrough needs root and Linux 6.9 or later")
	}
	return mnt, m, copies
}

// waitForCopy waits until copies holds key.
func waitForCopy(t *testing.T, copies *cache.Copies, key string, size int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !copies.Has(key, size) {
		if time.Now().After(deadline) {
			t.Fatalf("no copy of %s after 10 s", key)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestFUSEFileCopiesPassthrough: a large file read to its end is copied,
// and later opens (in this mount and the next) are read by the kernel
// from the copy: the same bytes, and no READ reaches the server. A file
// read in part, or a small one, is not copied.
func TestFUSEFileCopiesPassthrough(t *testing.T) {
	tree, readers, big := passthroughTree(t)
	copiesDir := t.TempDir()
	mnt, m, copies := mountWithCopies(t, tree, readers, copiesDir)
	bigNode, _ := tree.Lookup("big")
	bigKey := readers[0].(ContentKeyer).ContentKey(bigNode.Entry())

	// A part of "other", all of "small": nothing to copy.
	f, err := os.Open(filepath.Join(mnt, "other"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.ReadAt(make([]byte, 4096), MinFileCopySize); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if got, err := os.ReadFile(filepath.Join(mnt, "small")); err != nil || string(got) != "small file" {
		t.Fatalf("small: %q %v", got, err)
	}

	got, err := os.ReadFile(filepath.Join(mnt, "big"))
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("first read of big: %d bytes, %v", len(got), err)
	}
	waitForCopy(t, copies, bigKey, int64(len(big)))

	reread := func(dir string, mt *Mounted) {
		t.Helper()
		d := requestDelta(t, mt, func() {
			got, err := os.ReadFile(filepath.Join(dir, "big"))
			if err != nil || !bytes.Equal(got, big) {
				t.Fatalf("read of big from its copy: %d bytes, %v", len(got), err)
			}
			// Unaligned reads too, through one descriptor.
			f, err := os.Open(filepath.Join(dir, "big"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			p := make([]byte, 100000)
			for _, off := range []int64{1, 4095, MinFileCopySize - 7, int64(len(big)) - 50000} {
				n, _ := f.ReadAt(p, off)
				if want := big[off:min(off+int64(len(p)), int64(len(big)))]; !bytes.Equal(p[:n], want) {
					t.Fatalf("ReadAt %d: %d bytes differ", off, n)
				}
			}
		})
		if d["read"] != 0 || d["open"] != 2 {
			t.Errorf("rereads from the copy sent %v, want 2 opens and no read", d)
		}
	}
	reread(mnt, m)

	// The next mount finds the copy.
	if err := m.Unmount(); err != nil {
		t.Fatal(err)
	}
	mnt2, m2 := mountForTest(t, context.Background(), tree, readers, MountOptions{Logger: quietLogger(), FileCopies: copies})
	reread(mnt2, m2)

	files := 0
	_ = filepath.WalkDir(copiesDir, func(_ string, d os.DirEntry, _ error) error {
		if d != nil && !d.IsDir() {
			files++
		}
		return nil
	})
	if files != 1 {
		t.Errorf("%d files in the copies dir, want 1 (big only)", files)
	}
}

// TestFUSEFileCopiesOpenModes: the kernel refuses an open in passthrough
// while the file is open through READs (and the other way round), so a
// file stays read through READs until every such open is closed, even
// once its copy exists; the next open then uses the copy.
func TestFUSEFileCopiesOpenModes(t *testing.T) {
	tree, readers, big := passthroughTree(t)
	mnt, m, copies := mountWithCopies(t, tree, readers, t.TempDir())
	path := filepath.Join(mnt, "big")
	held, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(big))
	if _, err := held.ReadAt(got, 0); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("read: %v", err)
	}
	bigNode, _ := tree.Lookup("big")
	waitForCopy(t, copies, readers[0].(ContentKeyer).ContentKey(bigNode.Entry()), int64(len(big)))

	// Opened again while held: through READs still, and it must work.
	again, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(again, big) {
		t.Fatalf("second open while the first is held: %d bytes, %v", len(again), err)
	}
	held.Close()
	// RELEASE reaches the server after close returns: wait for it.
	deadline := time.Now().Add(5 * time.Second)
	for {
		d := requestDelta(t, m, func() {
			if b, err := os.ReadFile(path); err != nil || !bytes.Equal(b, big) {
				t.Fatalf("open after close: %d bytes, %v", len(b), err)
			}
		})
		if d["read"] == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still read through READs after every open was closed: %v", d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestReadSpans(t *testing.T) {
	for _, c := range []struct {
		adds  [][2]int64
		want  [][2]int64
		cover int64
	}{
		{[][2]int64{{0, 10}}, [][2]int64{{0, 10}}, 10},
		{[][2]int64{{10, 20}, {0, 5}}, [][2]int64{{0, 5}, {10, 20}}, -1},
		{[][2]int64{{10, 20}, {0, 5}, {5, 10}}, [][2]int64{{0, 20}}, 20},
		{[][2]int64{{30, 40}, {10, 20}, {0, 50}}, [][2]int64{{0, 50}}, 50},
		{[][2]int64{{0, 10}, {20, 30}, {40, 50}, {15, 45}}, [][2]int64{{0, 10}, {15, 50}}, -1},
		{[][2]int64{{5, 5}, {3, 1}}, nil, -1},
	} {
		var r readSpans
		for _, a := range c.adds {
			r.add(a[0], a[1])
		}
		if !slices.Equal(r.spans, c.want) {
			t.Errorf("%v: %v, want %v", c.adds, r.spans, c.want)
		}
		if c.cover >= 0 && !r.covers(c.cover) || r.covers(c.cover+1) && c.cover >= 0 {
			t.Errorf("%v: covers(%d) wrong", c.adds, c.cover)
		}
	}
}

// TestFUSEFileCopiesExec: a program whose file is read from its copy
// runs (exec maps the file: mmap goes to the backing file), as it does
// through READs.
func TestFUSEFileCopiesExec(t *testing.T) {
	prog, err := os.ReadFile("/bin/busybox")
	if err != nil || len(prog) < MinFileCopySize {
		t.Skip("needs a static /bin/busybox of 1 MiB or more (busybox-static)")
	}
	var l layerBuilder
	e := reg("busybox", 0)
	e.Mode = 0o755
	l.add(e, prog)
	tree, readers := mustMerge(t, l.entries), []ContentReader{keyedReader{memReader{l.data}}}
	mnt, m, copies := mountWithCopies(t, tree, readers, t.TempDir())
	run := func() string {
		t.Helper()
		out, err := exec.Command(filepath.Join(mnt, "busybox"), "echo", "ran").CombinedOutput()
		if err != nil {
			t.Fatalf("exec from the mount: %v: %s", err, out)
		}
		return string(out)
	}
	if got, err := os.ReadFile(filepath.Join(mnt, "busybox")); err != nil || !bytes.Equal(got, prog) {
		t.Fatalf("read: %v", err)
	}
	n, _ := tree.Lookup("busybox")
	waitForCopy(t, copies, readers[0].(ContentKeyer).ContentKey(n.Entry()), int64(len(prog)))
	var out string
	d := requestDelta(t, m, func() { out = run() })
	if out != "ran\n" {
		t.Errorf("output %q", out)
	}
	if d["read"] != 0 {
		t.Errorf("exec of a copied file sent %v, want no read", d)
	}
}

// TestCopyWaitsForPause: a copy starts only once READs have paused for
// copyIdle (a copy competing with cold reads slowed them by 15 %), and
// gives up waiting when the mount ends.
func TestCopyWaitsForPause(t *testing.T) {
	p := newPassthrough(nil, quietLogger())
	p.lastRead.Store(time.Now().UnixNano())
	start := time.Now()
	stop := make(chan struct{})
	go func() { // reads go on for 3 × copyIdle
		for time.Since(start) < 3*copyIdle {
			p.lastRead.Store(time.Now().UnixNano())
			time.Sleep(copyIdle / 10)
		}
		close(stop)
	}()
	if err := p.waitForIdle(context.Background()); err != nil {
		t.Fatal(err)
	}
	<-stop
	if waited := time.Since(start); waited < 4*copyIdle-copyIdle/5 {
		t.Errorf("copy started %v after reads began, while they went on for %v", waited, 3*copyIdle)
	}
	p.lastRead.Store(time.Now().Add(time.Hour).UnixNano()) // busy for good
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(copyIdle, cancel)
	if err := p.waitForIdle(ctx); err == nil {
		t.Error("waitForIdle returned nil on a mount that ended while busy")
	}
}

// TestCatalogFileCopies: in a catalog mount (imgfs serve), an image with
// FileCopies gets them as a single mount does: a file read whole is copied
// and then read by the kernel from its copy, with no READ; releasing the
// image finishes its copies in flight.
func TestCatalogFileCopies(t *testing.T) {
	tree, readers, big := passthroughTree(t)
	copies, err := cache.NewCopies(t.TempDir(), 1<<30, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	cat := newTestCatalog(t)
	cat.images["p"] = &ServedImage{Tree: tree, Readers: readers, Activity: &Activity{}, FileCopies: copies}
	dir, cm := mountCatalogForTest(t, cat)
	if !passthroughWorks(cm.Mounted) {
		t.Skip("FUSE passthrough needs root and Linux 6.9 or later")
	}
	path := filepath.Join(dir, "imgs", "p", "big")
	if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("first read: %d bytes, %v", len(got), err)
	}
	n, _ := tree.Lookup("big")
	waitForCopy(t, copies, readers[0].(ContentKeyer).ContentKey(n.Entry()), int64(len(big)))
	d := requestDelta(t, cm.Mounted, func() {
		if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, big) {
			t.Fatalf("read from the copy: %d bytes, %v", len(got), err)
		}
	})
	if d["read"] != 0 {
		t.Errorf("a read of a copied file in a catalog mount sent %v", d)
	}
	// A second image read whole, then released at once: the copy is
	// there when Release returns.
	tree2, readers2, _ := passthroughTree(t)
	other := &ServedImage{Tree: tree2, Readers: readers2, Activity: &Activity{}, FileCopies: copies}
	cat.mu.Lock()
	cat.images["q"] = other
	cat.mu.Unlock()
	f, err := os.Open(filepath.Join(dir, "imgs", "q", "other"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	time.Sleep(copyIdle / 2)
	cm.Release([]string{"imgs"}, "q", other)
	n2, _ := tree2.Lookup("other")
	if key := readers2[0].(ContentKeyer).ContentKey(n2.Entry()); !copies.Has(key, n2.Size()) {
		t.Error("Release returned before the image's copy in flight was finished")
	}
}

// TestReadSpansMatchesBitmap: ranges added in any order cover what a
// bitmap of the same reads covers.
func TestReadSpansMatchesBitmap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 2000 {
		const size = 200
		var r readSpans
		var bits [size]bool
		for range rng.IntN(12) + 1 {
			start := rng.Int64N(size)
			end := min(size, start+rng.Int64N(40))
			r.add(start, end)
			for i := start; i < end; i++ {
				bits[i] = true
			}
		}
		var got [size]bool
		for k, s := range r.spans {
			if s[0] >= s[1] || k > 0 && r.spans[k-1][1] >= s[0] {
				t.Fatalf("round %d: ranges not sorted, disjoint and apart: %v", round, r.spans)
			}
			for i := s[0]; i < s[1]; i++ {
				got[i] = true
			}
		}
		if got != bits {
			t.Fatalf("round %d: ranges %v differ from the reads", round, r.spans)
		}
		all := !slices.Contains(bits[:], false)
		if r.covers(size) != all {
			t.Fatalf("round %d: covers %v, want %v", round, r.covers(size), all)
		}
	}
}
