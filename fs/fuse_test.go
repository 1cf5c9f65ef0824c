package fs

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/imgfs/imgfs/index"
)

// memReader serves a layer from memory: Entry.Offset locates the content in
// data.
type memReader struct{ data []byte }

func (r memReader) ReadAt(_ context.Context, e *index.Entry, p []byte, off int64) (int, error) {
	n := copy(p, r.data[e.Offset+off:e.Offset+e.Size])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// failingReader fails every read, like a layer whose registry is down.
type failingReader struct{}

func (failingReader) ReadAt(context.Context, *index.Entry, []byte, int64) (int, error) {
	return 0, errors.New("injected failure")
}

// layerBuilder lays file contents out in one blob, as a tar would.
type layerBuilder struct {
	entries []index.Entry
	data    []byte
}

func (b *layerBuilder) add(e index.Entry, content []byte) {
	if e.Type == index.TypeReg {
		e.Offset, e.Size = int64(len(b.data)), int64(len(content))
		b.data = append(b.data, content...)
	}
	b.entries = append(b.entries, e)
}

// syncBuffer is a log sink safe for FUSE goroutines and the test to share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// requireFUSE skips when FUSE cannot be used here, unless CI is set.
func requireFUSE(t testing.TB) {
	t.Helper()
	err := func() error {
		f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
		if err != nil {
			return err
		}
		f.Close()
		if os.Geteuid() != 0 {
			if _, err := exec.LookPath("fusermount3"); err != nil {
				_, err = exec.LookPath("fusermount")
				return err
			}
		}
		return nil
	}()
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("FUSE unusable in CI: %v", err)
		}
		t.Skipf("FUSE unusable (%v); set CI=1 to make this a failure", err)
	}
}

// mountForTest mounts tree on a fresh directory and always unmounts it when
// the test ends, failed or not.
func mountForTest(t *testing.T, ctx context.Context, tree *Tree, readers []ContentReader, opts MountOptions) (string, *Mounted) {
	t.Helper()
	requireFUSE(t)
	dir := t.TempDir()
	m, err := Mount(ctx, dir, tree, readers, opts)
	if err != nil {
		t.Fatalf("Mount: %v", err)
	}
	t.Cleanup(func() {
		if err := m.Unmount(); err != nil {
			t.Errorf("Unmount: %v", err)
			_ = exec.Command("fusermount3", "-u", "-z", dir).Run()
		}
		if line := mountLine(dir); line != "" {
			t.Errorf("still mounted after Unmount: %s", line)
		}
	})
	return dir, m
}

// mountLine is dir's line in /proc/mounts, or "".
func mountLine(dir string) string {
	data, _ := os.ReadFile("/proc/mounts")
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 2 && f[1] == dir {
			return line
		}
	}
	return ""
}

type testImage struct {
	tree    *Tree
	readers []ContentReader
	big     []byte
}

func buildTestImage(t *testing.T) testImage {
	t.Helper()
	big := make([]byte, 3<<20+123)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range big {
		big[i] = byte(rng.Uint32())
	}
	var l0 layerBuilder
	root := dir("")
	root.ModTime = testTime
	l0.add(root, nil)
	l0.add(dir("bin"), nil)
	tool := reg("bin/tool", 0)
	tool.Mode = 0o4755
	l0.add(tool, []byte("tool-bytes"))
	l0.add(hardlink("bin/tool2", "bin/tool"), nil)
	l0.add(dir("data"), nil)
	l0.add(reg("data/big", 0), big)
	l0.add(reg("data/empty", 0), nil)
	l0.add(sym("lib", "usr/lib"), nil)
	l0.add(index.Entry{Name: "dev/null", Type: index.TypeChar, Mode: 0o666, Devmajor: 1, Devminor: 3}, nil)
	l0.add(index.Entry{Name: "dev/sda", Type: index.TypeBlock, Mode: 0o660, GID: 6, Devmajor: 8, Devminor: 0}, nil)
	l0.add(index.Entry{Name: "fifo", Type: index.TypeFifo, Mode: 0o600}, nil)
	owned := reg("owned", 0)
	owned.Mode, owned.UID, owned.GID, owned.ModTime = 0o640, 1000, 2000, testTime
	owned.Xattrs = map[string]string{"user.b": "two", "user.a": "1", "user.long": strings.Repeat("x", 300)}
	l0.add(owned, []byte("mine"))
	empty := dir("emptydir")
	empty.Mode = 0o700
	l0.add(empty, nil)
	var l1 layerBuilder
	l1.add(reg("broken", 0), []byte("0123456789"))
	tree := mustMerge(t, l0.entries, l1.entries)
	if err := Synthesize(tree, synthConfig(), SynthOptions{Logger: quietLogger()}); err != nil {
		t.Fatal(err)
	}
	return testImage{tree: tree, readers: []ContentReader{memReader{l0.data}, failingReader{}}, big: big}
}

func TestFUSE(t *testing.T) {
	for _, method := range []MountMethod{MountDirect, MountFusermount} {
		name := "fusermount"
		if method == MountDirect {
			if os.Geteuid() != 0 {
				continue
			}
			name = "direct"
		}
		t.Run(name, func(t *testing.T) { testFUSE(t, method) })
	}
}

func testFUSE(t *testing.T, method MountMethod) {
	img := buildTestImage(t)
	var logs syncBuffer
	opts := MountOptions{
		Source:     "registry.test/img:tag",
		AllowOther: true,
		Logger:     slog.New(slog.NewTextHandler(&logs, nil)),
		Method:     method,
	}
	mnt, _ := mountForTest(t, context.Background(), img.tree, img.readers, opts)
	p := func(rel string) string { return filepath.Join(mnt, rel) }
	lstat := func(rel string) *syscall.Stat_t {
		t.Helper()
		var st syscall.Stat_t
		if err := syscall.Lstat(p(rel), &st); err != nil {
			t.Fatalf("lstat %s: %v", rel, err)
		}
		return &st
	}

	t.Run("mount entry", func(t *testing.T) {
		f := strings.Fields(mountLine(mnt))
		if len(f) < 4 || f[0] != "registry.test/img:tag" || f[2] != "fuse.imgfs" {
			t.Fatalf("/proc/mounts: %q", f)
		}
		mopts := strings.Split(f[3], ",")
		if !slices.Contains(mopts, "ro") || !slices.Contains(mopts, "allow_other") {
			t.Errorf("mount options %q lack ro or allow_other", f[3])
		}
	})

	t.Run("readdir", func(t *testing.T) {
		ents, err := os.ReadDir(mnt)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		want := []string{".exec", ".run", ".shell", ".singularity.d", ".test", "bin", "broken", "data", "dev", "emptydir", "environment", "etc", "fifo", "home", "lib", "owned", "proc", "root", "singularity", "sys", "tmp", "var"}
		if !slices.Equal(names, want) {
			t.Errorf("root: %q\nwant %q", names, want)
		}
		if ents, err := os.ReadDir(p("emptydir")); err != nil || len(ents) != 0 {
			t.Errorf("emptydir: %v %v", ents, err)
		}
		// "." and ".." are listed too (ReadDir hides them).
		f, err := os.Open(p("bin"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		all, err := f.Readdirnames(-1)
		if err != nil || !slices.Equal(all, []string{"tool", "tool2"}) {
			t.Errorf("bin: %q %v", all, err)
		}
	})

	t.Run("attributes", func(t *testing.T) {
		st := lstat(".")
		root := img.tree.Root()
		if st.Ino != RootIno || st.Mode != syscall.S_IFDIR|0o755 || st.Nlink != uint64(root.Nlink()) || st.Mtim.Nano() != testTime.UnixNano() {
			t.Errorf("root: ino %d mode %o nlink %d mtime %d", st.Ino, st.Mode, st.Nlink, st.Mtim.Nano())
		}
		st = lstat("owned")
		if st.Mode != syscall.S_IFREG|0o640 || st.Uid != 1000 || st.Gid != 2000 || st.Size != 4 || st.Nlink != 1 ||
			st.Mtim.Nano() != testTime.UnixNano() || st.Ctim.Nano() != testTime.UnixNano() || st.Blocks != 8 {
			t.Errorf("owned: %+v", st)
		}
		if n, _ := img.tree.Lookup("owned"); st.Ino != n.Ino() {
			t.Errorf("owned: ino %d, tree says %d", st.Ino, n.Ino())
		}
		if st := lstat("bin/tool"); st.Mode != syscall.S_IFREG|syscall.S_ISUID|0o755 {
			t.Errorf("setuid file mode %o", st.Mode)
		}
		if st := lstat("emptydir"); st.Mode != syscall.S_IFDIR|0o700 || st.Nlink != 2 {
			t.Errorf("emptydir mode %o nlink %d", st.Mode, st.Nlink)
		}
		if st := lstat("lib"); st.Mode&syscall.S_IFMT != syscall.S_IFLNK || st.Size != int64(len("usr/lib")) {
			t.Errorf("symlink mode %o size %d", st.Mode, st.Size)
		}
		if st := lstat("dev/null"); st.Mode != syscall.S_IFCHR|0o666 || unix.Major(st.Rdev) != 1 || unix.Minor(st.Rdev) != 3 {
			t.Errorf("dev/null mode %o rdev %d:%d", st.Mode, unix.Major(st.Rdev), unix.Minor(st.Rdev))
		}
		if st := lstat("dev/sda"); st.Mode != syscall.S_IFBLK|0o660 || st.Gid != 6 || unix.Major(st.Rdev) != 8 || unix.Minor(st.Rdev) != 0 {
			t.Errorf("dev/sda mode %o rdev %d:%d", st.Mode, unix.Major(st.Rdev), unix.Minor(st.Rdev))
		}
		if st := lstat("fifo"); st.Mode != syscall.S_IFIFO|0o600 {
			t.Errorf("fifo mode %o", st.Mode)
		}
		if st := lstat("tmp"); st.Mode != syscall.S_IFDIR|syscall.S_ISVTX|0o777 {
			t.Errorf("synthesized /tmp mode %o", st.Mode)
		}
	})

	t.Run("hardlinks", func(t *testing.T) {
		a, b := lstat("bin/tool"), lstat("bin/tool2")
		if a.Ino != b.Ino || a.Nlink != 2 || b.Nlink != 2 {
			t.Errorf("hardlinks: ino %d/%d nlink %d/%d", a.Ino, b.Ino, a.Nlink, b.Nlink)
		}
		for _, rel := range []string{"bin/tool", "bin/tool2"} {
			if data, err := os.ReadFile(p(rel)); err != nil || string(data) != "tool-bytes" {
				t.Errorf("%s: %q %v", rel, data, err)
			}
		}
	})

	t.Run("read", func(t *testing.T) {
		data, err := os.ReadFile(p("data/big"))
		if err != nil || !bytes.Equal(data, img.big) {
			t.Fatalf("big file: %d bytes, err %v", len(data), err)
		}
		f, err := os.Open(p("data/big"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		rng := rand.New(rand.NewPCG(3, 4))
		for range 50 {
			off := rng.IntN(len(img.big))
			buf := make([]byte, rng.IntN(300_000)+1)
			n, err := f.ReadAt(buf, int64(off))
			want := img.big[off:min(off+len(buf), len(img.big))]
			if (err != nil && err != io.EOF) || !bytes.Equal(buf[:n], want) {
				t.Fatalf("ReadAt(%d, %d): n %d err %v", off, len(buf), n, err)
			}
		}
		if data, err := os.ReadFile(p("data/empty")); err != nil || len(data) != 0 {
			t.Errorf("empty file: %q %v", data, err)
		}
		if target, err := os.Readlink(p("lib")); err != nil || target != "usr/lib" {
			t.Errorf("readlink: %q %v", target, err)
		}
	})

	t.Run("read failure gives EIO and the mount stays up", func(t *testing.T) {
		_, err := os.ReadFile(p("broken"))
		if !errors.Is(err, syscall.EIO) {
			t.Errorf("read of a failing layer: %v, want EIO", err)
		}
		if !strings.Contains(logs.String(), "read failed") || !strings.Contains(logs.String(), "injected failure") {
			t.Errorf("no log line for the failure:\n%s", logs.String())
		}
		if data, err := os.ReadFile(p("owned")); err != nil || string(data) != "mine" {
			t.Errorf("read after failure: %q %v", data, err)
		}
	})

	t.Run("xattrs", func(t *testing.T) {
		size, err := unix.Getxattr(p("owned"), "user.long", nil)
		if err != nil || size != 300 {
			t.Errorf("size probe: %d %v", size, err)
		}
		small := make([]byte, 10)
		if _, err := unix.Getxattr(p("owned"), "user.long", small); !errors.Is(err, syscall.ERANGE) {
			t.Errorf("small buffer: %v, want ERANGE", err)
		}
		buf := make([]byte, 400)
		if n, err := unix.Getxattr(p("owned"), "user.b", buf); err != nil || string(buf[:n]) != "two" {
			t.Errorf("user.b: %q %v", buf[:n], err)
		}
		if _, err := unix.Getxattr(p("owned"), "user.none", buf); !errors.Is(err, syscall.ENODATA) {
			t.Errorf("missing xattr: %v, want ENODATA", err)
		}
		size, err = unix.Listxattr(p("owned"), nil)
		want := "user.a\x00user.b\x00user.long\x00"
		if err != nil || size != len(want) {
			t.Errorf("list probe: %d %v", size, err)
		}
		if _, err := unix.Listxattr(p("owned"), small); !errors.Is(err, syscall.ERANGE) {
			t.Errorf("list small buffer: %v, want ERANGE", err)
		}
		if n, err := unix.Listxattr(p("owned"), buf); err != nil || string(buf[:n]) != want {
			t.Errorf("list: %q %v", buf[:n], err)
		}
		if n, err := unix.Listxattr(p("bin/tool"), buf); err != nil || n != 0 {
			t.Errorf("list without xattrs: %d %v", n, err)
		}
	})

	t.Run("writes give EROFS", func(t *testing.T) {
		for name, op := range map[string]func() error{
			"create":      func() error { return os.WriteFile(p("new"), []byte("x"), 0o644) },
			"open write":  func() error { f, err := os.OpenFile(p("owned"), os.O_WRONLY, 0); f.Close(); return err },
			"open rdwr":   func() error { f, err := os.OpenFile(p("owned"), os.O_RDWR, 0); f.Close(); return err },
			"truncate":    func() error { return os.Truncate(p("owned"), 0) },
			"remove":      func() error { return os.Remove(p("owned")) },
			"rmdir":       func() error { return os.Remove(p("emptydir")) },
			"mkdir":       func() error { return os.Mkdir(p("newdir"), 0o755) },
			"chmod":       func() error { return os.Chmod(p("owned"), 0o777) },
			"chown":       func() error { return os.Chown(p("owned"), 1, 1) },
			"utimes":      func() error { return os.Chtimes(p("owned"), time.Now(), time.Now()) },
			"rename":      func() error { return os.Rename(p("owned"), p("owned2")) },
			"symlink":     func() error { return os.Symlink("x", p("newlink")) },
			"link":        func() error { return os.Link(p("owned"), p("newhard")) },
			"mknod":       func() error { return syscall.Mknod(p("newfifo"), syscall.S_IFIFO|0o600, 0) },
			"setxattr":    func() error { return unix.Setxattr(p("owned"), "user.x", []byte("1"), 0) },
			"removexattr": func() error { return unix.Removexattr(p("owned"), "user.a") },
			"access W_OK": func() error { return unix.Access(p("owned"), unix.W_OK) },
		} {
			if err := op(); !errors.Is(err, syscall.EROFS) {
				t.Errorf("%s: %v, want EROFS", name, err)
			}
		}
		if err := unix.Access(p("owned"), unix.R_OK); err != nil {
			t.Errorf("access R_OK: %v", err)
		}
		if err := unix.Access(p("owned"), unix.X_OK); !errors.Is(err, syscall.EACCES) {
			t.Errorf("access X_OK of a non-executable file: %v, want EACCES", err)
		}
		if _, err := os.Stat(p("new")); !os.IsNotExist(err) {
			t.Errorf("a write left something: %v", err)
		}
	})

	t.Run("statfs", func(t *testing.T) {
		var st unix.Statfs_t
		if err := unix.Statfs(mnt, &st); err != nil {
			t.Fatal(err)
		}
		wantBlocks := uint64((img.tree.FileBytes() + 4095) / 4096)
		if st.Blocks != wantBlocks || st.Bfree != 0 || st.Bsize != 4096 || st.Files != uint64(img.tree.Len()) || st.Flags&unix.ST_RDONLY == 0 {
			t.Errorf("statfs: blocks %d (want %d) bfree %d bsize %d files %d flags %#x", st.Blocks, wantBlocks, st.Bfree, st.Bsize, st.Files, st.Flags)
		}
	})

	t.Run("singularity files through the mount", func(t *testing.T) {
		out, err := exec.Command("/bin/sh", "-c", `. "$1"/.singularity.d/env/10-docker2singularity.sh; printf '%s|%s' "$PATH" "$GREETING"`, "sh", mnt).Output()
		if err != nil || string(out) != `/opt/bin:/usr/bin:/bin|hello "world"` {
			t.Errorf("env via mount: %q %v", out, err)
		}
		out, err = exec.Command("/bin/sh", p(".singularity.d/runscript")).Output()
		if err != nil || string(out) != "hi\n" {
			t.Errorf("runscript via mount: %q %v", out, err)
		}
		if st := lstat(".singularity.d/runscript"); st.Mode != syscall.S_IFREG|0o755 {
			t.Errorf("runscript mode %o", st.Mode)
		}
	})
}

func TestFUSEUnmountAndCancel(t *testing.T) {
	img := buildTestImage(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mnt, m := mountForTest(t, ctx, img.tree, img.readers, MountOptions{Logger: quietLogger()})
	if f := strings.Fields(mountLine(mnt)); len(f) < 3 || f[0] != "imgfs" || f[2] != "fuse.imgfs" {
		t.Errorf("/proc/mounts: %q", f)
	}
	if _, err := os.Stat(filepath.Join(mnt, "owned")); err != nil {
		t.Fatal(err)
	}
	cancel()
	done := make(chan struct{})
	go func() { m.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("cancelling the context did not unmount")
	}
	if line := mountLine(mnt); line != "" {
		t.Errorf("still mounted: %s", line)
	}
	if err := m.Unmount(); err != nil {
		t.Errorf("Unmount after cancel: %v", err)
	}
	// A cancelled context refuses to mount.
	if _, err := Mount(ctx, t.TempDir(), img.tree, img.readers, MountOptions{}); !errors.Is(err, context.Canceled) {
		t.Errorf("Mount with a cancelled context: %v", err)
	}
}

func TestFUSEExternalUnmount(t *testing.T) {
	img := buildTestImage(t)
	mnt, m := mountForTest(t, context.Background(), img.tree, img.readers, MountOptions{Logger: quietLogger(), Method: MountFusermount})
	if out, err := exec.Command("fusermount3", "-u", mnt).CombinedOutput(); err != nil {
		t.Skipf("fusermount3 -u: %v %s", err, out)
	}
	done := make(chan struct{})
	go func() { m.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Wait did not return after an external unmount")
	}
	if err := m.Unmount(); err != nil {
		t.Errorf("Unmount after external unmount: %v", err)
	}
}

// TestFUSEPermissions reads as another user (needs root for that and for
// allow_other): allow_other brings default_permissions, so the kernel
// enforces the image's modes: another user reads what the image lets them
// read, and nothing it protects.
func TestFUSEPermissions(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to act as another user")
	}
	requireFUSE(t)
	var l layerBuilder
	secret := reg("secret", 0)
	secret.Mode = 0o600
	l.add(secret, []byte("s"))
	l.add(reg("pub", 0), []byte("p"))
	tree := mustMerge(t, l.entries)
	// t.TempDir is 0700: other users could not reach the mount point.
	dir, err := os.MkdirTemp("", "imgfs-perm-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	m, err := Mount(context.Background(), dir, tree, []ContentReader{memReader{l.data}},
		MountOptions{AllowOther: true, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Unmount(); err != nil {
			t.Errorf("Unmount: %v", err)
		}
	})
	asNobody := func(args ...string) (string, error) {
		cmd := exec.Command(args[0], args[1:]...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := asNobody("cat", filepath.Join(dir, "pub")); err != nil || out != "p" {
		t.Errorf("pub: %q %v", out, err)
	}
	if out, err := asNobody("cat", filepath.Join(dir, "secret")); err == nil || !strings.Contains(out, "Permission denied") {
		t.Errorf("a root-owned 0600 file is readable by nobody: %q %v", out, err)
	}
	if _, err := asNobody("test", "-w", filepath.Join(dir, "pub")); err == nil {
		t.Error("test -w succeeded")
	}
	if out, err := exec.Command("cat", filepath.Join(dir, "secret")).CombinedOutput(); err != nil || string(out) != "s" {
		t.Errorf("root reads the secret: %q %v", out, err)
	}
}

func TestCheckAccess(t *testing.T) {
	f := reg("f", 1)
	f.Mode, f.UID, f.GID = 0o600, 10, 20
	x := reg("x", 1)
	x.Mode = 0o700
	d := dir("d")
	d.Mode = 0o700
	tree := mustMerge(t, []index.Entry{f, x, d})
	nf, _ := tree.Lookup("f")
	nx, _ := tree.Lookup("x")
	nd, _ := tree.Lookup("d")
	cases := []struct {
		n    *Node
		mask uint32
		want syscall.Errno
	}{
		{nf, unix.R_OK, 0},
		{nf, unix.F_OK, 0},
		{nf, unix.W_OK, syscall.EROFS},
		{nf, unix.X_OK, syscall.EACCES},
		{nf, unix.R_OK | unix.W_OK, syscall.EROFS},
		{nx, unix.X_OK | unix.R_OK, 0},
		{nd, unix.X_OK | unix.R_OK, 0},
		{nd, unix.W_OK, syscall.EROFS},
	}
	for _, c := range cases {
		if got := checkAccess(c.n, c.mask); got != c.want {
			t.Errorf("%s mask %d: %v, want %v", c.n.Path(), c.mask, got, c.want)
		}
	}
}

func TestFuseConfAllowsOther(t *testing.T) {
	for conf, want := range map[string]bool{
		"":                                     false,
		"#user_allow_other\n":                  false,
		"mount_max = 1000\nuser_allow_other\n": true,
		"  user_allow_other  # yes\n":          true,
		"user_allow_others\n":                  false,
	} {
		if got := fuseConfAllowsOther(conf); got != want {
			t.Errorf("%q: %v, want %v", conf, got, want)
		}
	}
	if os.Geteuid() == 0 {
		if ok, msg := CanAllowOther(); !ok {
			t.Errorf("root: CanAllowOther false: %s", msg)
		}
	}
}

// As root the mount's kernel readahead window is raised from FUSE's 128 KiB
// so cold sequential reads reach the read path in large, overlapping reads.
func TestFUSEKernelReadahead(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("setting read_ahead_kb needs root")
	}
	img := buildTestImage(t)
	for _, tc := range []struct {
		kb   int
		want string
	}{{0, "8192"}, {2048, "2048"}} {
		mnt, _ := mountForTest(t, context.Background(), img.tree, img.readers,
			MountOptions{Logger: quietLogger(), Method: MountDirect, KernelReadAheadKB: tc.kb})
		var st syscall.Stat_t
		if err := syscall.Stat(mnt, &st); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(bdiReadAheadPath(st.Dev))
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimSpace(string(got)) != tc.want {
			t.Errorf("KernelReadAheadKB %d: read_ahead_kb is %s, want %s", tc.kb, got, tc.want)
		}
	}
}
