package integration

// Conformance of the mount with umoci, the oracle: the same image, unpacked
// by umoci and mounted by imgfs, must give the same tree, attribute by
// attribute, for every layer format.

import (
	"encoding/binary"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// conformanceBaseTime is the first of the distinct nanosecond mtimes the
// fixture gives its entries.
var conformanceBaseTime = time.Date(2021, 3, 4, 5, 6, 7, 123456789, time.UTC)

// conformanceFixture builds the entries of the three layers of the
// conformance image: every feature of the layer format and of the merge.
type conformanceFixture struct {
	tick int
}

// mtime returns a new distinct time with nanoseconds.
func (f *conformanceFixture) mtime() time.Time {
	f.tick++
	return conformanceBaseTime.Add(time.Duration(f.tick) * (time.Second + 1001*time.Nanosecond))
}

func (f *conformanceFixture) dir(p string, mode int64) Entry {
	return Entry{Path: p, Type: TypeDir, Mode: mode, ModTime: f.mtime()}
}

func (f *conformanceFixture) file(p, content string, mode int64) Entry {
	return Entry{Path: p, Type: TypeFile, Mode: mode, Content: []byte(content), ModTime: f.mtime()}
}

func (f *conformanceFixture) symlink(p, target string) Entry {
	return Entry{Path: p, Type: TypeSymlink, Link: target, ModTime: f.mtime()}
}

// capabilityV2 is a valid VFS_CAP_REVISION_2 security.capability value
// (cap_net_bind_service, effective): binary, with NUL bytes, and accepted by
// the kernel, which rejects malformed capability xattrs.
func capabilityV2() string {
	b := make([]byte, 20)
	binary.LittleEndian.PutUint32(b[0:], 0x02000000|1) // revision 2, effective
	binary.LittleEndian.PutUint32(b[4:], 1<<10)        // permitted: CAP_NET_BIND_SERVICE
	return string(b)
}

// Sizes of the big files: together more than 10 MiB, so several 4 MiB gzip
// spans, one incompressible and one compressible.
const (
	conformanceRandomSize = 7 << 20
	conformanceTextSize   = 5 << 20
	conformanceManyFiles  = 10000
)

func conformanceRandom(n int) []byte {
	r := rand.New(rand.NewChaCha8([32]byte{'i', 'm', 'g', 'f', 's'}))
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	return b
}

func conformanceText(n int) []byte {
	var b strings.Builder
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "%08d level=info msg=\"request served\" path=/api/v1/items/%d status=%d\n", i, i*7919%100003, 200+i%3)
	}
	return []byte(b.String()[:n])
}

// Long names: a 255-byte component (the kernel's maximum) and a path of more
// than 255 bytes (tar needs PAX or GNU long names for both).
var (
	longComponent = strings.Repeat("n", 255)
	longPath      = "long/" + strings.Repeat("d", 200) + "/" + strings.Repeat("e", 150) + "/" + strings.Repeat("f", 100)
)

func (f *conformanceFixture) baseLayer() []Entry {
	cap2 := capabilityV2()
	e := []Entry{
		f.dir("./", 0o755),
		f.dir("etc", 0o755),
		f.file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n", 0o644),
		f.file("etc/removed", "whited out by layer 2\n", 0o644),
		f.file("etc/group", "root:x:0:\n", 0o644),
		f.dir("usr", 0o755), f.dir("usr/bin", 0o755),
		f.file("usr/bin/tool", "#!/bin/sh\necho tool\n", 0o755),

		// A directory deleted with its subtree by a whiteout, re-created later.
		f.dir("gone", 0o755), f.file("gone/a", "a\n", 0o644),
		f.dir("gone/sub", 0o700), f.file("gone/sub/b", "b\n", 0o600),

		// An opaque directory: everything below is hidden, some names re-added.
		f.dir("opaque", 0o755), f.file("opaque/old", "old\n", 0o644),
		f.dir("opaque/sub", 0o755), f.file("opaque/sub/deep", "deep\n", 0o644),
		f.file("opaque/keep", "old keep\n", 0o644),

		// A directory replaced by a file, and a file replaced by a directory.
		f.dir("dir2file", 0o755), f.file("dir2file/child", "child\n", 0o644),
		f.dir("dir2file/sub", 0o755), f.file("dir2file/sub/x", "x\n", 0o644),
		f.file("file2dir", "was a file\n", 0o644),

		// Hard links: same directory, across directories, and one whose
		// original a later layer deletes.
		f.dir("hard", 0o755), f.dir("other", 0o755),
		{Path: "hard/orig", Type: TypeFile, Mode: 0o640, UID: 7, GID: 8, Content: []byte("shared content\n"),
			ModTime: f.mtime(), Xattrs: map[string]string{"user.linked": "yes"}},
		Hardlink("hard/link1", "hard/orig"),
		Hardlink("other/link2", "hard/orig"),
		f.file("hard/doomed", "the original goes, the link stays\n", 0o644),
		Hardlink("hard/survivor", "hard/doomed"),

		// Symbolic links: absolute, relative, dangling, to a directory, a loop.
		f.dir("links", 0o755),
		f.symlink("links/abs", "/etc/passwd"),
		f.symlink("links/rel", "../etc/passwd"),
		f.symlink("links/dangling", "/no/such/target"),
		f.symlink("links/dirlink", "../usr/bin"),
		f.symlink("links/loop", "loop"),
		f.symlink("links/long-target", "/"+longPath),

		// Extended attributes, binary and empty values included.
		f.dir("xattr", 0o755),
		{Path: "xattr/file", Type: TypeFile, Mode: 0o755, Content: []byte("#!/bin/sh\n"), ModTime: f.mtime(),
			Xattrs: map[string]string{
				"user.color": "blue", "user.binary": "\x00\x01\xfe\xff\x00", "user.empty": "",
				"security.capability": cap2, "trusted.imgfs": "t",
			}},
		{Path: "xattr/dir", Type: TypeDir, Mode: 0o755, ModTime: f.mtime(), Xattrs: map[string]string{"user.dir": "d"}},

		// Special permission bits.
		f.dir("perms", 0o755),
		f.file("perms/setuid", "u", 0o4755),
		f.file("perms/setgid", "g", 0o2755),
		f.file("perms/both", "ug", 0o6711),
		f.file("perms/sticky-file", "t", 0o1644),
		f.file("perms/none", "nobody may", 0),
		f.file("perms/all", "everything", 0o7777),
		f.dir("perms/sticky-dir", 0o1777),
		{Path: "perms/setgid-dir", Type: TypeDir, Mode: 0o2775, GID: 50, ModTime: f.mtime()},
		f.dir("perms/setgid-dir/child-dir", 0o755),
		f.file("perms/setgid-dir/child-file", "c", 0o644),

		// Owners, large ids included.
		f.dir("owned", 0o755),
		{Path: "owned/file", Type: TypeFile, Mode: 0o644, UID: 1000, GID: 1001, Uname: "user", Gname: "users",
			Content: []byte("mine\n"), ModTime: f.mtime()},
		{Path: "owned/dir", Type: TypeDir, Mode: 0o750, UID: 65534, GID: 65534, ModTime: f.mtime()},
		{Path: "owned/big-ids", Type: TypeFile, Mode: 0o644, UID: 4000000, GID: 4000001, Content: []byte("big"), ModTime: f.mtime()},

		// Devices and FIFOs.
		f.dir("dev", 0o755),
		{Path: "dev/null", Type: TypeCharDev, Mode: 0o666, Devmajor: 1, Devminor: 3, ModTime: f.mtime()},
		{Path: "dev/zero", Type: TypeCharDev, Mode: 0o666, Devmajor: 1, Devminor: 5, ModTime: f.mtime()},
		{Path: "dev/loop0", Type: TypeBlockDev, Mode: 0o660, GID: 6, Devmajor: 7, Devminor: 0, ModTime: f.mtime()},
		f.dir("run", 0o755),
		{Path: "run/pipe", Type: TypeFIFO, Mode: 0o644, ModTime: f.mtime()},

		// Long and UTF-8 names.
		f.dir("long", 0o755),
		f.file("long/"+longComponent, "255-byte name\n", 0o644),
		f.dir("long/"+strings.Repeat("d", 200), 0o755),
		f.dir(path.Dir(longPath), 0o755), // the 150-byte component
		f.file(longPath, "a path longer than 255 bytes\n", 0o644),
		f.dir("utf8", 0o755), f.dir("utf8/données", 0o755),
		f.file("utf8/données/日本語.txt", "こんにちは\n", 0o644),
		f.file("utf8/emoji-😀", "🙂\n", 0o644),
		f.file("utf8/spaces and\ttab", "white space\n", 0o644),

		// Empty things.
		f.dir("empty", 0o755),
		f.file("empty/file", "", 0o644),
		f.dir("empty/dir", 0o755),

		// Parents that no entry declares (implied, as extractors do).
		f.dir("implied-host", 0o755),
		f.file("implied-host/implied/parent/child", "my parents are implied\n", 0o644),
	}

	// A directory of 10k files, a few of them empty.
	e = append(e, f.dir("many", 0o755))
	manyTime := f.mtime()
	for i := 0; i < conformanceManyFiles; i++ {
		content := fmt.Sprintf("file number %d\n", i)
		if i%1000 == 999 {
			content = ""
		}
		e = append(e, Entry{Path: fmt.Sprintf("many/f%05d", i), Type: TypeFile, Mode: 0o644, Content: []byte(content),
			ModTime: manyTime.Add(time.Duration(i) * time.Nanosecond)})
	}

	// Files spanning several gzip spans.
	e = append(e, f.dir("big", 0o755),
		Entry{Path: "big/random.bin", Type: TypeFile, Mode: 0o644, Content: conformanceRandom(conformanceRandomSize), ModTime: f.mtime()},
		Entry{Path: "big/text.log", Type: TypeFile, Mode: 0o644, Content: conformanceText(conformanceTextSize), ModTime: f.mtime()},
	)
	return e
}

func (f *conformanceFixture) middleLayer() []Entry {
	return []Entry{
		// Whiteouts in a directory this layer does not re-declare.
		Whiteout("etc/removed"),
		Whiteout("etc/never-existed"),
		f.file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n", 0o644),

		// A whole directory.
		Whiteout("gone"),

		// Opaque: one name re-added before the marker, one after.
		f.dir("opaque", 0o750),
		f.file("opaque/keep", "new keep\n", 0o644),
		OpaqueDir("opaque"),
		f.file("opaque/new", "new\n", 0o644),
		f.file("opaque/later-removed", "removed by layer 3\n", 0o644),

		// Type changes.
		f.file("dir2file", "now a file\n", 0o600),
		f.dir("file2dir", 0o711),
		f.file("file2dir/child", "child of a former file\n", 0o644),

		// The original of hard/survivor goes.
		Whiteout("hard/doomed"),
		// A hard link to a file of a lower layer.
		Hardlink("other/link3", "hard/orig"),

		// A directory over a directory: metadata from this layer.
		{Path: "usr", Type: TypeDir, Mode: 0o750, UID: 0, GID: 10, ModTime: f.mtime()},
		f.file("usr/bin/added", "added in layer 2\n", 0o755),
	}
}

func (f *conformanceFixture) topLayer() []Entry {
	return []Entry{
		// Re-created after its whiteout.
		f.dir("gone", 0o755),
		f.file("gone/again", "back\n", 0o644),
		Whiteout("opaque/later-removed"),
		f.file("perms/late-setuid", "late", 0o4711),
		f.file("big/small-late", "a small file in the top layer\n", 0o644),
	}
}

// conformanceFormat is one layer format the mount must serve identically.
type conformanceFormat struct {
	name        string
	compression Compression
	spec        func(LayerSpec) LayerSpec // adjusts the layer spec of that format
	// perFileFetch: a cold read of a small file is one registry request
	// (tar, eStargz and zstd:chunked fetch a file's own bytes or chunk; gzip
	// and zstd decode shared spans). Reading all 10k files of many/ would
	// then be 10k round trips, so only every manySample-th is read there;
	// the metadata of all is compared, and the content of every other file.
	perFileFetch bool
	// mtimePrecision: what the format's index can carry. eStargz TOCs store
	// RFC 3339 times rounded to the second (estargz formatModtime), so the
	// oracle's mtimes are rounded the same way before comparing.
	mtimePrecision time.Duration
}

// manySample is the stride of the many/ files read in per-file formats.
const manySample = 50

// skipManyContent leaves out all but every manySample-th file of many/.
func skipManyContent(rel string) bool {
	var i int
	if _, err := fmt.Sscanf(rel, "many/f%05d", &i); err != nil {
		return false
	}
	return i%manySample != 0
}

var conformanceFormats = []conformanceFormat{
	{name: "gzip", compression: Gzip, spec: func(s LayerSpec) LayerSpec { s.GzipMembers = 2; return s }},
	{name: "tar", compression: Uncompressed, perFileFetch: true},
	{name: "estargz", compression: Estargz, perFileFetch: true, mtimePrecision: time.Second},
	{name: "zstd", compression: Zstd},
	{name: "zstd:chunked", compression: ZstdChunked, perFileFetch: true,
		spec: func(s LayerSpec) LayerSpec { s.Encoder = ZstdChunkedEncoder(1 << 20); return s }},
}

// conformanceLayers builds the fixture's layers in one format.
func conformanceLayers(t testing.TB, c conformanceFormat) []*BuiltLayer {
	f := &conformanceFixture{}
	var layers []*BuiltLayer
	for _, entries := range [][]Entry{f.baseLayer(), f.middleLayer(), f.topLayer()} {
		spec := LayerSpec{Entries: entries, Compression: c.compression}
		if c.spec != nil {
			spec = c.spec(spec)
		}
		layers = append(layers, MustLayer(t, spec))
	}
	return layers
}

// stubPaths are the mount points and files fs.Synthesize adds where the
// image lacks them, with their mode.
var stubPaths = []struct {
	path string
	typ  string
	perm uint32
}{
	{"dev", "dir", 0o755}, {"proc", "dir", 0o755}, {"sys", "dir", 0o755},
	{"tmp", "dir", 0o1777}, {"var", "dir", 0o755}, {"var/tmp", "dir", 0o1777},
	{"home", "dir", 0o755}, {"root", "dir", 0o755}, {"etc", "dir", 0o755},
	{"etc/hosts", "file", 0o644}, {"etc/resolv.conf", "file", 0o644},
}

// singularityFiles are the files of the synthesized /.singularity.d (see
// fs.TestSynthesizeLayoutMatchesApptainer, and programs_test.go for what
// the scripts do).
var singularityFiles = map[string]uint32{
	".singularity.d/actions/exec":                 0o755,
	".singularity.d/actions/run":                  0o755,
	".singularity.d/actions/shell":                0o755,
	".singularity.d/actions/start":                0o755,
	".singularity.d/actions/test":                 0o755,
	".singularity.d/env/01-base.sh":               0o755,
	".singularity.d/env/10-docker2singularity.sh": 0o755,
	".singularity.d/env/90-environment.sh":        0o755,
	".singularity.d/env/94-appsbase.sh":           0o755,
	".singularity.d/env/95-apps.sh":               0o755,
	".singularity.d/env/99-base.sh":               0o755,
	".singularity.d/env/99-runtimevars.sh":        0o755,
	".singularity.d/runscript":                    0o755,
	".singularity.d/startscript":                  0o755,
	".singularity.d/labels.json":                  0o644,
	".singularity.d/Singularity":                  0o644,
}

// singularityLinks are the root links to /.singularity.d Apptainer makes.
var singularityLinks = map[string]string{
	"singularity": ".singularity.d/runscript",
	".exec":       ".singularity.d/actions/exec",
	".run":        ".singularity.d/actions/run",
	".shell":      ".singularity.d/actions/shell",
	".test":       ".singularity.d/actions/test",
	"environment": ".singularity.d/env/90-environment.sh",
}

// synthesizedPaths are the paths the mount adds to an image whose oracle
// tree is given: /.singularity.d (the image has none) and the stubs whose
// path the image lacks.
func synthesizedPaths(oracle *Tree) map[string]bool {
	out := map[string]bool{".singularity.d": true}
	for p := range singularityLinks {
		if _, ok := oracle.Entries[p]; !ok {
			out[p] = true
		}
	}
	for _, s := range stubPaths {
		if _, ok := oracle.Entries[s.path]; !ok {
			out[s.path] = true
		}
	}
	return out
}

// assertSynthesized checks that every synthesized path exists in the mount
// with its type and mode, owned by root.
func assertSynthesized(t *testing.T, mnt string, oracle *Tree, synth map[string]bool) {
	t.Helper()
	if _, ok := oracle.Entries[".singularity.d"]; ok {
		t.Fatal("the fixture ships /.singularity.d: the test expects it synthesized")
	}
	check := func(p, typ string, perm uint32) {
		e, err := scanEntry(mnt+"/"+p, p, false)
		switch {
		case err != nil:
			t.Errorf("synthesized /%s: %v", p, err)
		case e.Type != typ || e.Perm != perm || e.UID != 0 || e.GID != 0:
			t.Errorf("synthesized /%s: %s %04o %d:%d, want %s %04o 0:0", p, e.Type, e.Perm, e.UID, e.GID, typ, perm)
		}
	}
	for _, s := range stubPaths {
		if synth[s.path] {
			check(s.path, s.typ, s.perm)
		}
	}
	for _, d := range []string{".singularity.d", ".singularity.d/actions", ".singularity.d/env", ".singularity.d/libs"} {
		check(d, "dir", 0o755)
	}
	for p, perm := range singularityFiles {
		check(p, "file", perm)
	}
	for p, target := range singularityLinks {
		if !synth[p] {
			continue
		}
		check(p, "symlink", 0o777)
		if got, err := os.Readlink(mnt + "/" + p); err != nil || got != target {
			t.Errorf("synthesized /%s -> %q (%v), want -> %s", p, got, err, target)
		}
	}
}

// skipSynthesized leaves the synthesized paths (and what is under them) out
// of a scan of the mount.
func skipSynthesized(synth map[string]bool) func(string) bool {
	return func(rel string) bool {
		for p := rel; p != "."; p = path.Dir(p) {
			if synth[p] {
				return true
			}
		}
		return false
	}
}

// declaredPaths are the cleaned paths that some layer's entry names.
func declaredPaths(layers ...[]Entry) map[string]bool {
	out := map[string]bool{} // the root too only when a layer declares it ("./")
	for _, entries := range layers {
		for _, e := range entries {
			if e.Type != TypeWhiteout && e.Type != TypeOpaqueDir { // markers declare no metadata
				out[path.Clean(e.Path)] = true
			}
		}
	}
	return out
}

// conformanceCompare is what the comparison leaves out, each for a reason
// umoci gives, and nothing else:
//
//   - The mtime of implied directories (parents no layer declares): umoci
//     creates them at unpack time (MkdirAll), imgfs shows the epoch (the
//     image's creation time for the root); neither comes from a layer.
//   - The mtime of a declared directory in which umoci created an implied
//     one: umoci restores a parent's mtime after extracting a declared entry
//     into it, but not after its MkdirAll of implied parents.
//   - Empty-valued xattrs: umoci takes xattrs from Go's tar.Header.Xattrs,
//     which drops PAX records with an empty value; imgfs (like containerd and
//     moby, which read PAXRecords) keeps them. TestConformance asserts the
//     mount's value separately.
func conformanceCompare(oracle *Tree, declared map[string]bool, emptyXattrs map[string]string) CompareOptions {
	skipMtime := map[string]bool{}
	for p, e := range oracle.Entries {
		if e.Type == "dir" && !declared[p] {
			skipMtime[p] = true
			if parent := path.Dir(p); declared[parent] {
				skipMtime[parent] = true
			}
		}
	}
	return CompareOptions{
		IgnoreMtime: func(e *TreeEntry) bool { return skipMtime[e.Path] },
		IgnoreXattr: func(p, name string) bool { return emptyXattrs[strings.TrimPrefix(p, "/")] == name },
	}
}

// emptyXattrs maps the paths of entries with an empty-valued xattr to its name.
func emptyXattrs(layers ...[]Entry) map[string]string {
	out := map[string]string{}
	for _, entries := range layers {
		for _, e := range entries {
			for k, v := range e.Xattrs {
				if v == "" {
					out[path.Clean(e.Path)] = k
				}
			}
		}
	}
	return out
}

// withSynthesizedRootLinks returns the oracle with the root's link count
// raised by the directories the mount adds at the root (each one's ".."):
// the only attribute of an image path that synthesis changes.
func withSynthesizedRootLinks(oracle *Tree, synth map[string]bool) *Tree {
	out := &Tree{Root: oracle.Root, Entries: maps.Clone(oracle.Entries)}
	root := *out.Entries["."]
	for p := range synth {
		if !strings.Contains(p, "/") && (p == ".singularity.d" || stubType(p) == "dir") {
			root.Nlink++
		}
	}
	out.Entries["."] = &root
	return out
}

// withMtimesRounded returns the tree with every mtime rounded to precision.
func withMtimesRounded(tree *Tree, precision time.Duration) *Tree {
	out := &Tree{Root: tree.Root, Entries: make(map[string]*TreeEntry, len(tree.Entries))}
	for p, e := range tree.Entries {
		c := *e
		c.Mtime = c.Mtime.Round(precision)
		out.Entries[p] = &c
	}
	return out
}

func stubType(p string) string {
	for _, s := range stubPaths {
		if s.path == p {
			return s.typ
		}
	}
	return ""
}

func TestConformance(t *testing.T) {
	if os.Geteuid() != 0 {
		// umoci --rootless cannot set owners, devices or security.* xattrs.
		t.Skip("the umoci oracle needs root to unpack owners, devices and xattrs")
	}
	f := &conformanceFixture{}
	fixtureLayers := [][]Entry{f.baseLayer(), f.middleLayer(), f.topLayer()}
	declared, empties := declaredPaths(fixtureLayers...), emptyXattrs(fixtureLayers...)

	oracleImage := MustImage(t, ImageSpec{Layers: conformanceLayers(t, conformanceFormats[0])})
	oracleRoot := OracleRootfs(t, oracleImage)
	oracle, err := ScanTree(oracleRoot, ScanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	assertOracleApplied(t, oracle)
	synth := synthesizedPaths(oracle)
	want := withSynthesizedRootLinks(oracle, synth)
	compare := conformanceCompare(oracle, declared, empties)
	reg := StartRegistry(t, RegistryOptions{})

	for _, c := range conformanceFormats {
		t.Run(c.name, func(t *testing.T) {
			img := MustImage(t, ImageSpec{Kind: OCI, Layers: conformanceLayers(t, c)})
			start := time.Now()
			ref := reg.PushImage(t, "conformance/"+strings.ReplaceAll(c.name, ":", "-"), "v1", img)
			m, res := startMount(t, ref, mountOptions{})
			if res.err != nil {
				t.Fatalf("mount: %v\n%s", res.err, res.stderr)
			}
			mounted := time.Now()
			assertSynthesized(t, m.Dir, oracle, synth)
			scan, cmp := ScanOptions{Skip: skipSynthesized(synth)}, compare
			if c.perFileFetch {
				scan.SkipContent, cmp.SkipContent = skipManyContent, skipManyContent
			}
			want := want
			if c.mtimePrecision > 0 {
				want = withMtimesRounded(want, c.mtimePrecision)
			}
			got, err := ScanTree(m.Dir, scan)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("mount in %s, scan in %s", mounted.Sub(start), time.Since(mounted))
			if diffs := CompareTrees(want, got, cmp); len(diffs) > 0 {
				t.Errorf("%s mount differs from umoci's rootfs in %d ways (first 20):\n%s", c.name, len(diffs), FormatDiffs(diffs, 20))
			}
			for p, name := range empties {
				if v, ok := got.Entries[p].Xattrs[name]; !ok || v != "" {
					t.Errorf("/%s: empty xattr %s: %q (present %v), want present and empty", p, name, v, ok)
				}
			}
		})
	}
}

// assertOracleApplied guards the oracle: umoci applied the fixture's
// whiteouts, opaque directory, type changes and hard links as the image
// spec says, so a difference TestConformance finds is imgfs's.
func assertOracleApplied(t *testing.T, oracle *Tree) {
	t.Helper()
	e := oracle.Entries
	for _, gone := range []string{"etc/removed", "gone/a", "gone/sub", "opaque/old", "opaque/sub", "opaque/later-removed",
		"dir2file/child", "hard/doomed", "etc/.wh.removed", "opaque/.wh..wh..opq"} {
		if _, ok := e[gone]; ok {
			t.Errorf("oracle: /%s exists; umoci did not apply a whiteout", gone)
		}
	}
	for p, typ := range map[string]string{"gone/again": "file", "opaque/keep": "file", "opaque/new": "file",
		"dir2file": "file", "file2dir": "dir", "file2dir/child": "file", "hard/survivor": "file",
		"dev/null": "char", "dev/loop0": "block", "run/pipe": "fifo", "links/dangling": "symlink",
		"many/f09999": "file", path.Clean(longPath): "file", "long/" + longComponent: "file"} {
		if got := e[p]; got == nil || got.Type != typ {
			t.Errorf("oracle: /%s is %+v, want a %s", p, got, typ)
		}
	}
	orig, link3 := e["hard/orig"], e["other/link3"]
	if orig == nil || link3 == nil || orig.Ino != link3.Ino || orig.Nlink != 4 {
		t.Errorf("oracle: hard/orig and other/link3 are not one inode with 4 links: %+v %+v", orig, link3)
	}
	if s := e["hard/survivor"]; s == nil || s.Nlink != 1 {
		t.Errorf("oracle: hard/survivor should be left with one link: %+v", s)
	}
	if x := e["xattr/file"]; x == nil || x.Xattrs["security.capability"] != capabilityV2() || x.Xattrs["user.binary"] != "\x00\x01\xfe\xff\x00" {
		t.Errorf("oracle: xattr/file lacks its binary xattrs: %+v", x)
	}
	if p := e["perms/all"]; p == nil || p.Perm != 0o7777 {
		t.Errorf("oracle: perms/all mode %+v", p)
	}
}

// onlyMtimeOf compares the mtime of one path: the others are the test's
// creation times.
func onlyMtimeOf(p string) CompareOptions {
	return CompareOptions{IgnoreMtime: func(e *TreeEntry) bool { return e.Path != p }}
}

// TestConformanceComparerFindsDifferences: the comparison TestConformance
// relies on reports each kind of difference (so zero differences means
// something), and nothing for identical trees.
func TestConformanceComparerFindsDifferences(t *testing.T) {
	build := func(root string) {
		t.Helper()
		must := func(err error) {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
		}
		must(os.MkdirAll(filepath.Join(root, "d"), 0o755))
		for _, name := range []string{"mode", "mtime", "content", "xattr", "gone", "link-a"} {
			must(os.WriteFile(filepath.Join(root, "d", name), []byte("same size"), 0o644))
		}
		must(os.Link(filepath.Join(root, "d/link-a"), filepath.Join(root, "d/link-b")))
		must(os.Symlink("target", filepath.Join(root, "d/sym")))
		must(unix.Lsetxattr(filepath.Join(root, "d/xattr"), "user.k", []byte("v1"), 0))
		must(os.Chtimes(filepath.Join(root, "d/mtime"), conformanceBaseTime, conformanceBaseTime))
	}
	a, b := t.TempDir(), t.TempDir()
	build(a)
	build(b)
	scan := func(root string) *Tree {
		tree, err := ScanTree(root, ScanOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return tree
	}
	if diffs := CompareTrees(scan(a), scan(b), onlyMtimeOf("d/mtime")); len(diffs) > 0 {
		t.Fatalf("identical trees differ:\n%s", FormatDiffs(diffs, 20))
	}

	mustDo := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	mustDo(unix.Chmod(filepath.Join(b, "d/mode"), 0o4755))
	mustDo(os.Chtimes(filepath.Join(b, "d/mtime"), conformanceBaseTime, conformanceBaseTime.Add(time.Nanosecond)))
	mustDo(os.WriteFile(filepath.Join(b, "d/content"), []byte("SAME SIZE"), 0o644))
	mustDo(unix.Lsetxattr(filepath.Join(b, "d/xattr"), "user.k", []byte("v2"), 0))
	mustDo(os.Remove(filepath.Join(b, "d/gone")))
	mustDo(os.WriteFile(filepath.Join(b, "d/extra"), nil, 0o644))
	mustDo(os.Remove(filepath.Join(b, "d/link-b")))
	mustDo(os.WriteFile(filepath.Join(b, "d/link-b"), []byte("same size"), 0o644))
	mustDo(os.Remove(filepath.Join(b, "d/sym")))
	mustDo(os.Symlink("other", filepath.Join(b, "d/sym")))

	diffs := CompareTrees(scan(a), scan(b), onlyMtimeOf("d/mtime"))
	report := strings.Join(diffs, "\n")
	for _, want := range []string{
		"/d/mode: mode 4755, want 0644",
		"/d/mtime: mtime 2021-03-04T05:06:07.12345679Z, want 2021-03-04T05:06:07.123456789Z",
		"/d/content: content sha256",
		`/d/xattr: xattr user.k="v2", want "v1"`,
		"/d/gone: missing",
		"/d/extra: unexpected file",
		"/d/link-a: nlink 1, want 2",
		"/d/link-b: shares its inode with",
		`/d/sym: link target "other", want "target"`,
	} {
		if !strings.Contains(report, want) {
			t.Errorf("differences lack %q:\n%s", want, report)
		}
	}
}
