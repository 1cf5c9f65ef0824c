package main

import (
	"fmt"
	"os"

	"github.com/imgfs/imgfs/integration"
)

// busyboxPath is Debian's static busybox: with it the images can run a
// command (P1/P2 exec `chroot MNT /bin/busybox true`).
const busyboxPath = "/bin/busybox"

// pythonLikeLayers lays out an image shaped like python:3.12-slim with a
// few scientific packages: a Debian base, the Python runtime, site-packages
// and a small application layer that overrides and deletes a file. At scale
// 1 it holds about 30k files and 380 MiB.
func pythonLikeLayers(scale float64) ([][]integration.Entry, error) {
	g := newContentGen(3012)
	busybox, err := os.ReadFile(busyboxPath)
	if err != nil {
		return nil, fmt.Errorf("python-like image needs %s (busybox-static): %w", busyboxPath, err)
	}

	base := newLayerTree()
	base.file("bin/busybox", 0o755, busybox)
	for _, applet := range []string{"sh", "ls", "cat", "true", "env"} {
		base.add(integration.Symlink("bin/"+applet, "busybox"))
	}
	base.file("etc/os-release", 0o644, []byte("PRETTY_NAME=\"imgfs bench (python-like)\"\nID=imgfs\n"))
	base.file("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"))
	base.file("etc/motd", 0o644, []byte("replaced by the app layer\n"))
	for _, grp := range []group{
		{dir: "etc/conf.d", count: 250, subdirs: 20, lo: 100, hi: 4 << 10, kind: kindText, ext: ".conf"},
		{dir: "usr/bin", count: 200, lo: 8 << 10, hi: 300 << 10, kind: kindBinary, mode: 0o755},
		{dir: "usr/lib/x86_64-linux-gnu", count: 150, lo: 8 << 10, hi: 1 << 20, kind: kindBinary, ext: ".so.1"},
		{dir: "usr/share/man", count: 3000, subdirs: 8, lo: 500, hi: 8 << 10, kind: kindText, ext: ".1"},
		{dir: "usr/include", count: 1500, subdirs: 50, lo: 1 << 10, hi: 20 << 10, kind: kindText, ext: ".h"},
		{dir: "usr/share/doc", count: 400, subdirs: 400, lo: 500, hi: 20 << 10, kind: kindText, ext: ".copyright"},
		{dir: "usr/share/doc", count: 400, subdirs: 400, lo: 500, hi: 30 << 10, kind: kindRandom, ext: ".changelog.gz"},
		{dir: "usr/share/locale", count: 1600, subdirs: 40, lo: 2 << 10, hi: 40 << 10, kind: kindText, ext: ".mo"},
		{dir: "usr/share/zoneinfo", count: 600, subdirs: 12, lo: 100, hi: 4 << 10, kind: kindBinary},
		{dir: "var/lib/dpkg/info", count: 1200, lo: 100, hi: 10 << 10, kind: kindText, ext: ".list"},
	} {
		base.addGroup(g, grp, scale)
	}

	runtime := newLayerTree()
	runtime.file("usr/local/lib/libpython3.12.so.1.0", 0o755, g.content(kindBinary, int(16<<20*scale)))
	runtime.file("usr/local/bin/python3.12", 0o755, g.content(kindBinary, 16<<10))
	runtime.add(integration.Symlink("usr/local/bin/python3", "python3.12"))
	const stdlib = "usr/local/lib/python3.12"
	for _, grp := range []group{
		{dir: stdlib, count: 1800, subdirs: 60, lo: 1 << 10, hi: 40 << 10, kind: kindText, ext: ".py", pycache: true},
		{dir: stdlib + "/test", count: 2000, subdirs: 40, lo: 1 << 10, hi: 30 << 10, kind: kindText, ext: ".py", pycache: true},
		{dir: stdlib + "/lib-dynload", count: 60, lo: 20 << 10, hi: 1 << 20, kind: kindBinary, ext: ".cpython-312-x86_64-linux-gnu.so"},
		{dir: stdlib + "/ensurepip/_bundled", count: 2, lo: 1500 << 10, hi: 2 << 20, kind: kindRandom, ext: ".whl"},
	} {
		runtime.addGroup(g, grp, scale)
	}

	site := newLayerTree()
	const sp = stdlib + "/site-packages"
	site.file(sp+"/numpy.libs/libopenblas64_p-r0.so", 0o755, g.content(kindBinary, int(24<<20*scale)))
	for _, grp := range []group{
		{dir: sp + "/numpy/core", count: 30, lo: 50 << 10, hi: 6 << 20, kind: kindBinary, ext: ".so"},
		{dir: sp + "/numpy", count: 600, subdirs: 20, lo: 1 << 10, hi: 40 << 10, kind: kindText, ext: ".py", pycache: true},
		{dir: sp + "/pandas/_libs", count: 80, lo: 50 << 10, hi: 2 << 20, kind: kindBinary, ext: ".so"},
		{dir: sp + "/pandas/core", count: 1400, subdirs: 30, lo: 1 << 10, hi: 40 << 10, kind: kindText, ext: ".py", pycache: true},
		{dir: sp + "/pandas/tests", count: 3000, subdirs: 60, lo: 500, hi: 16 << 10, kind: kindText, ext: ".py"},
		{dir: sp + "/pkgs", count: 3000, subdirs: 30, lo: 1 << 10, hi: 30 << 10, kind: kindText, ext: ".py", pycache: true},
		{dir: sp + "/pandas/data", count: 5, lo: 1 << 20, hi: 2 << 20, kind: kindText, ext: ".csv"},
		{dir: sp + "/pkgs/data", count: 10, lo: 200 << 10, hi: 800 << 10, kind: kindRandom, ext: ".npz"},
	} {
		site.addGroup(g, grp, scale)
	}

	app := newLayerTree()
	app.file("etc/motd", 0o644, []byte("imgfs benchmark image\n"))
	app.add(integration.Whiteout(stdlib + "/ensurepip"))
	app.addGroup(g, group{dir: "app", count: 60, subdirs: 4, lo: 500, hi: 20 << 10, kind: kindText, ext: ".py"}, 1)

	return [][]integration.Entry{base.sorted(), runtime.sorted(), site.sorted(), app.sorted()}, nil
}

// flatTreeLayers is n small files in directories of 100, split into the
// given number of layers (distinct directories): the find/stat tree (P6) and
// the large image whose mount time P8 bounds.
func flatTreeLayers(seed uint64, n, layers int) [][]integration.Entry {
	g := newContentGen(seed)
	out := make([][]integration.Entry, layers)
	per := (n + layers - 1) / layers
	for l := range layers {
		t := newLayerTree()
		count := min(per, n-l*per)
		for i := range count {
			dir := fmt.Sprintf("usr/share/tree%d/d%04d", l, i/100)
			t.file(fmt.Sprintf("%s/%s_%02d.txt", dir, g.word(), i%100), 0o644, g.text(g.rng.IntN(1024)))
		}
		out[l] = t.sorted()
	}
	return out
}

// bigFileLayers holds one large file in an uncompressed tar layer and
// another in a gzip layer (P4, P5). Their contents are returned too, to
// write the local copies the mount is compared with.
func bigFileLayers(size int) (raw, gz []byte, layers [][]integration.Entry) {
	g := newContentGen(200)
	raw = g.content(kindBinary, size)
	gz = g.content(kindBinary, size)
	rawLayer := newLayerTree()
	rawLayer.file("data/big-raw.bin", 0o644, raw)
	gzLayer := newLayerTree()
	gzLayer.file("data/big-gz.bin", 0o644, gz)
	return raw, gz, [][]integration.Entry{rawLayer.sorted(), gzLayer.sorted()}
}

// Shape of the overlay measurement's tree (P6o): as many files and
// directories as the /small tree the Apptainer issue was measured on.
const (
	metaTopDirs  = 56  // small/aNN
	metaLeafDirs = 100 // small/aNN/bNN in each
	metaFiles    = 50_000
)

// metaTreeLayers is a runnable image (static busybox with find, sh, ls)
// whose second layer holds /small: 50,000 small files in 5,600 leaf
// directories. With withXattr the base layer also carries a file with a
// security.capability xattr (bin/ping, cap_net_raw+ep, as Debian ships it),
// so the image cannot say it has no xattrs; the /small layer is the same
// blob either way.
func metaTreeLayers(withXattr bool) ([][]integration.Entry, error) {
	busybox, err := os.ReadFile(busyboxPath)
	if err != nil {
		return nil, fmt.Errorf("overlay image needs %s (busybox-static): %w", busyboxPath, err)
	}
	base := newLayerTree()
	base.file("bin/busybox", 0o755, busybox)
	for _, applet := range []string{"sh", "find", "ls", "cat", "stat", "true", "env"} {
		base.add(integration.Symlink("bin/"+applet, "busybox"))
	}
	base.file("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\n"))
	base.file("etc/group", 0o644, []byte("root:x:0:\n"))
	if withXattr {
		base.add(integration.Entry{Path: "bin/ping", Type: integration.TypeFile, Mode: 0o755, Content: busybox,
			Xattrs: map[string]string{"security.capability": capNetRaw}})
	}
	g := newContentGen(12)
	small := newLayerTree()
	for i := range metaFiles {
		leaf := i % (metaTopDirs * metaLeafDirs)
		dir := fmt.Sprintf("small/a%02d/b%02d", leaf/metaLeafDirs, leaf%metaLeafDirs)
		small.file(fmt.Sprintf("%s/%s_%d.txt", dir, g.word(), i), 0o644, g.text(g.rng.IntN(1024)))
	}
	return [][]integration.Entry{base.sorted(), small.sorted()}, nil
}

// capNetRaw is the security.capability value of `setcap cap_net_raw+ep`
// (VFS_CAP_REVISION_2, effective; permitted CAP_NET_RAW, bit 13).
var capNetRaw = string([]byte{1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
