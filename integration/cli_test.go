package integration

// End-to-end tests of the ls, cat, index, mount --stats and unmount
// commands, and of a mount whose registry goes away.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	iofs "io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/imgfs/imgfs/fetch"
	"github.com/imgfs/imgfs/fs"
	"github.com/imgfs/imgfs/image"
	"github.com/imgfs/imgfs/index"
)

// cliPadding is the incompressible data around the needle in the big gzip
// layer: the needle's span is one of about 10.
const cliPadding = 20 << 20

// cliFixture is a five-layer image, one layer per format, the first a big
// gzip layer with a small file (big/needle) in the middle of 40 MiB.
type cliFixture struct {
	img     *BuiltImage
	padding []byte
}

func buildCLIFixture(t *testing.T) *cliFixture {
	t.Helper()
	f := &cliFixture{padding: conformanceRandom(cliPadding)}
	big := MustLayer(t, LayerSpec{Compression: Gzip, Entries: []Entry{
		{Path: "bin", Type: TypeDir, Mode: 0o755},
		{Path: "bin/busybox", Type: TypeFile, Mode: 0o755, Content: []byte("not really busybox")},
		Symlink("bin/sh", "busybox"),
		{Path: "bin/su", Type: TypeFile, Mode: 0o4755, Content: []byte("su")},
		{Path: "tmp", Type: TypeDir, Mode: 0o1777},
		{Path: "tmp/sticky-no-x", Type: TypeDir, Mode: 0o1770},
		Dir("etc"),
		File("etc/os-release", "NAME=imgfs-test\n"),
		Symlink("etc/abs-link", "/etc/os-release"),
		Symlink("etc/rel-link", "../etc/os-release"),
		Symlink("etc/dir-link", "/usr/share"),
		Symlink("etc/dangling", "/nowhere"),
		Dir("usr"), Dir("usr/share"), Dir("usr/share/doc"),
		File("usr/share/doc/readme", "read me\n"),
		Dir("big"),
		{Path: "big/padding1", Type: TypeFile, Mode: 0o644, Content: f.padding},
		File("big/needle", "needle in a haystack\n"),
		{Path: "big/padding2", Type: TypeFile, Mode: 0o644, Content: f.padding[:cliPadding/2]},
		{Path: "dev", Type: TypeDir, Mode: 0o755},
		{Path: "dev/null", Type: TypeCharDev, Mode: 0o666, Devmajor: 1, Devminor: 3},
	}})
	layers := []*BuiltLayer{big}
	for _, c := range []struct {
		comp Compression
		enc  LayerEncoder
	}{{Uncompressed, nil}, {Estargz, nil}, {Zstd, nil}, {ZstdChunked, ZstdChunkedEncoder(0)}} {
		name := strings.ReplaceAll(string(c.comp), ":", "-")
		layers = append(layers, MustLayer(t, LayerSpec{Compression: c.comp, Encoder: c.enc, Entries: []Entry{
			Dir("formats"), File("formats/"+name, "from a "+string(c.comp)+" layer\n"),
		}}))
	}
	f.img = MustImage(t, ImageSpec{Kind: OCI, Layers: layers})
	return f
}

// cliEnvFor is the environment of a CLI run with its own cache directory.
func cliEnvFor(cacheDir string) []string { return []string{"IMGFS_CACHE_DIR=" + cacheDir} }

func mustCLI(t *testing.T, env []string, args ...string) cliResult {
	t.Helper()
	res := runCLI(t, mountCommandTimeout, env, args...)
	if res.err != nil {
		t.Fatalf("imgfs %s: %v\nstderr: %s", strings.Join(args, " "), res.err, res.stderr)
	}
	return res
}

func TestCLI(t *testing.T) {
	reg := StartRegistry(t, RegistryOptions{})
	fx := buildCLIFixture(t)
	ref := reg.PushImage(t, "cli/formats", "v1", fx.img)
	// One cache for the read-only commands: the first builds the indexes.
	env := cliEnvFor(t.TempDir())

	t.Run("ls", func(t *testing.T) {
		res := mustCLI(t, env, "--plain-http", "ls", ref, "/bin")
		if got := strings.Fields(res.stdout); !slices.Equal(got, []string{"busybox", "sh", "su"}) {
			t.Errorf("ls /bin: %q", got)
		}
		res = mustCLI(t, env, "--plain-http", "ls", ref, "/etc/os-release")
		if strings.TrimSpace(res.stdout) != "/etc/os-release" { // as ls(1): the path as given
			t.Errorf("ls of a file: %q", res.stdout)
		}
		res = mustCLI(t, env, "--plain-http", "ls", ref)
		if got := strings.Fields(res.stdout); !slices.Contains(got, "formats") || !slices.Contains(got, "big") {
			t.Errorf("ls / lacks entries of some layers: %q", got)
		}
		res = runCLI(t, mountCommandTimeout, env, "--plain-http", "ls", ref, "/no/such")
		if res.err == nil || !strings.Contains(res.stderr, "no such file or directory") {
			t.Errorf("ls of a missing path: %v, %q", res.err, res.stderr)
		}
	})

	t.Run("ls-long", func(t *testing.T) {
		lines := map[string]string{}
		for _, dir := range []string{"/bin", "/", "/tmp", "/etc", "/dev"} {
			res := mustCLI(t, env, "--plain-http", "ls", "-l", ref, dir)
			for _, line := range strings.Split(strings.TrimSpace(res.stdout), "\n") {
				fields := strings.Fields(line)
				name := fields[len(fields)-1]
				if i := slices.Index(fields, "->"); i > 0 {
					name = fields[i-1]
				}
				lines[strings.TrimSuffix(dir, "/")+"/"+name] = line
			}
		}
		for path, want := range map[string]*regexp.Regexp{
			"/bin/su":          regexp.MustCompile(`^-rwsr-xr-x\s+1\s+0\s+0\s+2 `),
			"/bin/busybox":     regexp.MustCompile(`^-rwxr-xr-x\s+1\s+0\s+0\s+18 `),
			"/bin/sh":          regexp.MustCompile(`^lrwxrwxrwx .* sh -> busybox$`),
			"/tmp":             regexp.MustCompile(`^drwxrwxrwt `),
			"/tmp/sticky-no-x": regexp.MustCompile(`^drwxrwx--T `),
			"/etc/abs-link":    regexp.MustCompile(`^l.* abs-link -> /etc/os-release$`),
			"/etc/dangling":    regexp.MustCompile(`^l.* dangling -> /nowhere$`),
			"/dev/null":        regexp.MustCompile(`^crw-rw-rw-\s+1\s+0\s+0\s+1, 3 `),
			"/etc/os-release":  regexp.MustCompile(`^-rw-r--r--\s+1\s+0\s+0\s+16 2023-11-14 22:13:20 os-release$`),
			"/big":             regexp.MustCompile(`^drwxr-xr-x `),
			"/formats":         regexp.MustCompile(`^drwxr-xr-x `),
			"/usr":             regexp.MustCompile(`^d`),
			"/etc/rel-link":    regexp.MustCompile(` rel-link -> \.\./etc/os-release$`),
			"/etc/dir-link":    regexp.MustCompile(` dir-link -> /usr/share$`),
		} {
			if got, ok := lines[path]; !ok || !want.MatchString(got) {
				t.Errorf("ls -l line of %s: %q, want it to match %s", path, got, want)
			}
		}
	})

	t.Run("cat", func(t *testing.T) {
		for path, want := range map[string]string{
			"/etc/os-release":          "NAME=imgfs-test\n",
			"/etc/abs-link":            "NAME=imgfs-test\n", // absolute symlink, resolved in the image
			"/etc/rel-link":            "NAME=imgfs-test\n",
			"/etc/dir-link/doc/readme": "read me\n", // a symlinked directory in the path
			"/big/needle":              "needle in a haystack\n",
			"/formats/zstd-chunked":    "from a zstd:chunked layer\n",
			"/formats/estargz":         "from a estargz layer\n",
		} {
			res := mustCLI(t, env, "--plain-http", "cat", ref, path)
			if res.stdout != want {
				t.Errorf("cat %s: %q, want %q", path, res.stdout, want)
			}
		}
		res := mustCLI(t, env, "--plain-http", "cat", ref, "/big/padding1")
		if sha256.Sum256([]byte(res.stdout)) != sha256.Sum256(fx.padding) {
			t.Errorf("cat of a file spanning several gzip spans: %d bytes, content differs", len(res.stdout))
		}
		for path, wantErr := range map[string]string{
			"/etc":          "is a directory",
			"/etc/missing":  "no such file or directory",
			"/etc/dangling": "no such file or directory",
			"/dev/null":     "not a regular file",
		} {
			res := runCLI(t, mountCommandTimeout, env, "--plain-http", "cat", ref, path)
			if res.err == nil || !strings.Contains(res.stderr, wantErr) || res.stdout != "" {
				t.Errorf("cat %s: err %v, stdout %q, stderr %q; want an error saying %q", path, res.err, res.stdout, res.stderr, wantErr)
			}
			if strings.Count(strings.TrimSpace(res.stderr), "\n") > 0 {
				t.Errorf("cat %s: error is not one line: %q", path, res.stderr)
			}
		}
	})
}

// indexTableFormats parses the FORMAT column of `imgfs index` output.
func indexTableFormats(t *testing.T, out string) []string {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 2 || !strings.HasPrefix(lines[0], "LAYER") || !strings.Contains(lines[0], "FORMAT") {
		t.Fatalf("index output is not a table:\n%s", out)
	}
	var formats []string
	for i, line := range lines[1:] {
		fields := strings.Fields(line)
		if len(fields) < 3 || fields[0] != strconv.Itoa(i+1) {
			t.Fatalf("index table row %q", line)
		}
		formats = append(formats, fields[2])
	}
	return formats
}

// layerBlobGETs counts the registry's GETs of the image's layer blobs.
func layerBlobGETs(t *testing.T, reg *Registry, img *BuiltImage) int {
	t.Helper()
	data, err := os.ReadFile(reg.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(string(data), "\n") {
		if !strings.Contains(line, `"GET /v2/`) {
			continue // access log lines only
		}
		for _, l := range img.Layers {
			if strings.Contains(line, "/blobs/"+l.Digest.String()) {
				n++
			}
		}
	}
	return n
}

func indexFileInodes(t *testing.T, cacheDir string, img *BuiltImage) []uint64 {
	t.Helper()
	var inodes []uint64
	for _, l := range img.Layers {
		// <hex>.<format>[.<toc>][.<scope>]: see index/identity.go.
		files, _ := filepath.Glob(filepath.Join(cacheDir, "index", "sha256", l.Digest.Encoded()+".*"))
		if len(files) != 1 {
			t.Fatalf("index files of layer %s: %v", l.Digest, files)
		}
		var st syscall.Stat_t
		if err := syscall.Stat(files[0], &st); err != nil {
			t.Fatalf("index of layer %s: %v", l.Digest, err)
		}
		inodes = append(inodes, st.Ino)
	}
	return inodes
}

func TestCLIIndex(t *testing.T) {
	reg := StartRegistry(t, RegistryOptions{})
	fx := buildCLIFixture(t)
	ref := reg.PushImage(t, "cli/index", "v1", fx.img)
	cacheDir := t.TempDir()
	env := cliEnvFor(cacheDir)
	want := []string{"gzip", "tar", "estargz", "zstd", "zstd:chunked"}

	first := mustCLI(t, env, "--plain-http", "index", ref)
	if got := indexTableFormats(t, first.stdout); !slices.Equal(got, want) {
		t.Errorf("first index: formats %q, want %q\n%s", got, want, first.stdout)
	}
	for i, l := range fx.img.Layers {
		if !strings.Contains(first.stdout, l.Digest.String()[:len("sha256:")+12]) {
			t.Errorf("index table lacks layer %d's digest", i+1)
		}
	}
	// The 40 MiB gzip layer is big enough to report progress without a terminal.
	if !strings.Contains(first.stderr, "indexing layer 1/5") || !strings.Contains(first.stderr, "indexed layer 1/5") {
		t.Errorf("first index printed no progress for the big layer:\n%s", first.stderr)
	}
	inodes := indexFileInodes(t, cacheDir, fx.img)
	gets := layerBlobGETs(t, reg, fx.img)
	if gets == 0 {
		t.Fatal("the first index fetched no layer data: the registry log is not what the test expects")
	}

	second := mustCLI(t, env, "--plain-http", "index", ref)
	if got := indexTableFormats(t, second.stdout); !slices.Equal(got, want) {
		t.Errorf("second index: formats %q, want %q", got, want)
	}
	if strings.Contains(second.stderr, "indexing") {
		t.Errorf("second index built again:\n%s", second.stderr)
	}
	if got := indexFileInodes(t, cacheDir, fx.img); !slices.Equal(got, inodes) {
		t.Errorf("second index rewrote index files (inodes %v, were %v)", got, inodes)
	}
	if again := layerBlobGETs(t, reg, fx.img); again != gets {
		t.Errorf("second index fetched layer blobs: %d GETs, %d after the first run", again, gets)
	}

	// With the indexes cached, inspect knows every layer's uncompressed size.
	var doc struct {
		Layers []struct {
			Digest           string `json:"digest"`
			UncompressedSize *int64 `json:"uncompressedSize"`
		} `json:"layers"`
	}
	out := mustCLI(t, env, "--plain-http", "inspect", "--json", ref)
	if err := json.Unmarshal([]byte(out.stdout), &doc); err != nil {
		t.Fatal(err)
	}
	// zstd:chunked indexes address chunks, not the tar stream, and its
	// manifest carries no size: unknown. eStargz's comes from its annotation.
	for i, l := range doc.Layers {
		wantSize := int64(len(fx.img.Layers[i].Tar))
		if want[i] == "zstd:chunked" {
			if l.UncompressedSize != nil {
				t.Errorf("inspect layer %d (zstd:chunked): uncompressed size %d, want unknown", i+1, *l.UncompressedSize)
			}
			continue
		}
		if l.UncompressedSize == nil || *l.UncompressedSize != wantSize {
			t.Errorf("inspect layer %d (%s): uncompressed size %v, want %d", i+1, want[i], l.UncompressedSize, wantSize)
		}
	}
	// The text form says which layers are not lazy or not verified.
	text := mustCLI(t, env, "--plain-http", "inspect", ref).stdout
	for _, note := range []string{
		"note: layer 2 is uncompressed: read lazily but unverified",
		"note: layer 4 is plain zstd: not lazy",
	} {
		if !strings.Contains(text, note) {
			t.Errorf("inspect lacks %q:\n%s", note, text)
		}
	}

	// Without cached indexes only the annotated eStargz size is known.
	fresh := mustCLI(t, cliEnvFor(t.TempDir()), "--plain-http", "inspect", "--json", ref)
	if got := strings.Count(fresh.stdout, `"uncompressedSize": null`); got != len(fx.img.Layers)-1 {
		t.Errorf("inspect without cached indexes: %d unknown sizes, want %d (it must not build indexes):\n%s", got, len(fx.img.Layers)-1, fresh.stdout)
	}
}

// statsRow is one row of the `mount --stats` table.
type statsRow struct {
	layer    int
	format   string
	requests int64
	fetched  int64 // approximate: humanSize has three significant digits
	// the read path's span lookups and their outcomes
	lookups, hits, shared, misses int64
}

var statsRowPattern = regexp.MustCompile(`^(\d+)\s+(sha256:[0-9a-f]+)\s+(\S+)\s+(\d+)\s+([0-9.]+) (B|KiB|MiB|GiB)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*$`)

func parseStats(t *testing.T, out string) []statsRow {
	t.Helper()
	i := strings.Index(out, "LAYER")
	if i < 0 || !strings.Contains(out[i:], "FETCHED") {
		t.Fatalf("no stats table in:\n%s", out)
	}
	var rows []statsRow
	for _, line := range strings.Split(out[i:], "\n")[1:] {
		m := statsRowPattern.FindStringSubmatch(line)
		if m == nil {
			if strings.HasPrefix(line, "total") {
				break
			}
			t.Fatalf("stats row %q does not parse", line)
		}
		layer, _ := strconv.Atoi(m[1])
		requests, _ := strconv.ParseInt(m[4], 10, 64)
		size, _ := strconv.ParseFloat(m[5], 64)
		unit := map[string]float64{"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}[m[6]]
		n := func(i int) int64 { v, _ := strconv.ParseInt(m[i], 10, 64); return v }
		rows = append(rows, statsRow{layer: layer, format: m[3], requests: requests, fetched: int64(size * unit),
			lookups: n(7), hits: n(8), shared: n(9), misses: n(10)})
	}
	return rows
}

// TestCLIMountStats mounts in the foreground with --stats, reads one small
// file from the middle of the big gzip layer, unmounts, and checks the
// table: that layer fetched about one span, the others nothing.
func TestCLIMountStats(t *testing.T) {
	reg := StartRegistry(t, RegistryOptions{})
	fx := buildCLIFixture(t)
	ref := reg.PushImage(t, "cli/stats", "v1", fx.img)
	env := cliEnvFor(t.TempDir())
	mustCLI(t, env, "--plain-http", "index", ref) // the mount then fetches only what is read

	dir, _, exited, stderr := startForegroundMount(t, env, "--stats", ref)

	if got, err := os.ReadFile(filepath.Join(dir, "big/needle")); err != nil || string(got) != "needle in a haystack\n" {
		t.Fatalf("big/needle: %q, %v", got, err)
	}
	rows := unmountForStats(t, env, dir, exited, stderr)
	if len(rows) != len(fx.img.Layers) {
		t.Fatalf("stats table has %d rows for %d layers:\n%s", len(rows), len(fx.img.Layers), stderr.String())
	}
	const span, overhead = 4 << 20, 512 << 10
	big := rows[0]
	if big.format != "gzip" || big.fetched == 0 || big.fetched > span+overhead || big.requests == 0 {
		t.Errorf("reading 21 bytes of the %d MiB gzip layer fetched %d bytes in %d requests; want about one 4 MiB span\n%s",
			len(fx.img.Layers[0].Blob)>>20, big.fetched, big.requests, stderr.String())
	}
	for _, r := range rows[1:] {
		if r.fetched != 0 {
			t.Errorf("layer %d (%s) fetched %d bytes though nothing of it was read", r.layer, r.format, r.fetched)
		}
	}
}

// unmountForStats unmounts a foreground `mount --stats` from elsewhere, as
// a user would, waits for the server to exit and parses its table.
func unmountForStats(t *testing.T, env []string, dir string, exited chan error, stderr *bytes.Buffer) []statsRow {
	t.Helper()
	if res := runCLI(t, unmountTimeout, env, "unmount", dir); res.err != nil {
		t.Fatalf("imgfs unmount: %v\n%s", res.err, res.stderr)
	}
	select {
	case err := <-exited:
		exited <- err // for the cleanup
		if err != nil {
			t.Fatalf("mount exited with %v\n%s", err, stderr.String())
		}
	case <-time.After(serverExitTimeout):
		t.Fatalf("mount still running %s after the unmount", serverExitTimeout)
	}
	t.Logf("mount --stats:\n%s", stderr.String())
	return parseStats(t, stderr.String())
}

// TestCLIMountStatsReadAll reads every file of an image in every format
// through a mount and checks --stats: each span a file touches was decoded
// exactly once (misses), and hits + misses = lookups (probes of the cache
// that readahead and run planning make are not counted as misses).
func TestCLIMountStatsReadAll(t *testing.T) {
	reg := StartRegistry(t, RegistryOptions{})
	fx := buildCLIFixture(t)
	ref := reg.PushImage(t, "cli/readall", "v1", fx.img)
	cacheDir := t.TempDir()
	env := cliEnvFor(cacheDir)
	mustCLI(t, env, "--plain-http", "index", ref)

	dir, _, exited, stderr := startForegroundMount(t, env, "--stats", "--prefetch=none", ref)
	if err := filepath.WalkDir(dir, func(p string, de iofs.DirEntry, err error) error {
		if err != nil || !de.Type().IsRegular() {
			return err
		}
		_, err = os.ReadFile(p)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	rows := unmountForStats(t, env, dir, exited, stderr)

	img, err := image.Open(context.Background(), ref, image.Options{
		Platform: LinuxAMD64, Registry: fetch.Options{PlainHTTP: true, Retry: testRetry}, CacheDir: cacheDir,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	want := spansTouched(img)
	if len(rows) != len(want) {
		t.Fatalf("%d stats rows for %d layers", len(rows), len(want))
	}
	for i, r := range rows {
		if r.misses != int64(want[i]) || r.hits+r.misses != r.lookups {
			t.Errorf("layer %d (%s): %d lookups, %d hits (%d shared), %d misses; want %d misses (one per span touched) and hits + misses = lookups",
				r.layer, r.format, r.lookups, r.hits, r.shared, r.misses, want[i])
		}
	}
}

// spansTouched counts, per layer, the spans that hold content of a regular
// file of the merged tree: what reading every file decodes.
func spansTouched(img *image.Image) []int {
	touched := make([]map[int64]bool, len(img.Layers()))
	for i := range touched {
		touched[i] = map[int64]bool{}
	}
	img.Tree().Walk(func(_ string, n *fs.Node) error {
		if n.Type() != index.TypeReg || n.Synthetic() || n.Size() == 0 {
			return nil
		}
		e := n.Entry()
		for _, s := range img.Layers()[n.Layer()].Index.Spans {
			if s.UOff < e.Offset+e.Size && e.Offset < s.UOff+s.ULen {
				touched[n.Layer()][s.UOff] = true
			}
		}
		return nil
	})
	out := make([]int, len(touched))
	for i, m := range touched {
		out[i] = len(m)
	}
	return out
}

// startForegroundMount runs `imgfs --plain-http mount ARGS... DIR` in the
// foreground on a new mount point and waits until it is mounted. The
// cleanup unmounts it if needed and waits for (or kills) the server. A
// receive from exited must put the value back for the cleanup.
func startForegroundMount(t *testing.T, env []string, args ...string) (dir string, cmd *exec.Cmd, exited chan error, stderr *bytes.Buffer) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	cmd = exec.CommandContext(ctx, imgfsBinary(t), append(append([]string{"--plain-http", "mount"}, args...), dir)...)
	cmd.Env = cliEnviron(t, env)
	stderr = &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = io.Discard, stderr
	liveMounts.Store(dir, t.Name())
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited = make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if IsMounted(dir) {
			_ = ForceUnmount(dir)
		}
		select {
		case <-exited:
		case <-time.After(serverExitTimeout):
			_ = cmd.Process.Kill()
			<-exited
		}
		if !IsMounted(dir) {
			liveMounts.Delete(dir)
		}
	})
	waitMounted(t, dir, exited, stderr)
	return dir, cmd, exited, stderr
}

// waitMounted polls until dir is a mount point, failing if the mount
// command exits or a minute passes.
func waitMounted(t *testing.T, dir string, exited chan error, stderr *bytes.Buffer) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !IsMounted(dir) {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("mount exited before mounting: %v\n%s", err, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not mounted after a minute\n%s", dir, stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// failedReadBound bounds a read that fails because the registry is gone.
const failedReadBound = 20 * time.Second

// TestCLIMountRegistryGone: reads that need a registry which has gone away
// fail with EIO once the retries are spent, one log line each, while the
// mount stays up and serves what it has; when the registry is back, the
// same reads work.
func TestCLIMountRegistryGone(t *testing.T) {
	reg := StartRegistry(t, RegistryOptions{})
	gz := MustLayer(t, LayerSpec{Entries: []Entry{Dir("data"), File("data/gzip", "from the gzip layer\n")}})
	raw := MustLayer(t, LayerSpec{Compression: Uncompressed, Entries: []Entry{
		{Path: "data/tar", Type: TypeFile, Mode: 0o644, Content: conformanceRandom(1 << 20)},
	}})
	img := MustImage(t, ImageSpec{Layers: []*BuiltLayer{gz, raw}, Config: ocispec.ImageConfig{Labels: map[string]string{"k": "v"}}})
	reg.PushImage(t, "cli/gone", "v1", img)

	proxy, err := StartTCPProxy(reg.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxy.Close)
	ref := proxy.Host + "/cli/gone@" + img.Digest.String()
	// Building the gzip index keeps the spans it streamed (fetched once), so
	// a cold mount would read data/gzip from them: index first, then drop
	// the spans, so that the indexes are local and no file byte is.
	cacheDir := t.TempDir()
	mustCLI(t, cliEnvFor(cacheDir), "--plain-http", "index", ref)
	if err := os.RemoveAll(filepath.Join(cacheDir, "spans")); err != nil {
		t.Fatal(err)
	}
	m := mountImage(t, ref, mountOptions{CacheDir: cacheDir})
	proxy.Close()

	readBounded := func(p string) ([]byte, error) {
		type result struct {
			data []byte
			err  error
		}
		done := make(chan result, 1)
		go func() { d, err := os.ReadFile(m.path(p)); done <- result{d, err} }()
		select {
		case r := <-done:
			return r.data, r.err
		case <-time.After(90 * time.Second):
			t.Fatalf("read of %s still blocked after 90 s with the registry gone", p)
			return nil, nil
		}
	}
	for _, p := range []string{"data/gzip", "data/tar"} {
		start := time.Now()
		_, err := readBounded(p)
		// The default policy gives up after ~3 s; the kernel asks twice.
		// Nested retries once made it 5 attempts x 5 (~30 s).
		if took := time.Since(start); took > failedReadBound {
			t.Errorf("failed read of %s took %s, more than %s: are retries multiplied?", p, took.Round(time.Millisecond), failedReadBound)
		}
		if !errors.Is(err, syscall.EIO) {
			t.Errorf("read %s with the registry gone: %v, want EIO", p, err)
		}
	}
	if names, err := os.ReadDir(m.path("data")); err != nil || len(names) != 2 {
		t.Errorf("ls of the mount after failed reads: %v, %v", names, err)
	}
	if _, err := readBounded(".singularity.d/labels.json"); err != nil {
		t.Errorf("synthesized file: %v", err)
	}
	if !IsMounted(m.Dir) || !ProcessAlive(m.PID) {
		t.Fatal("the mount went away after failed reads")
	}
	if log, _ := os.ReadFile(m.LogPath); !bytes.Contains(log, []byte("read failed")) {
		t.Errorf("the server logged no read failure:\n%s", log)
	}

	// The registry is back on the same address: the mount recovers.
	back, err := StartTCPProxyAt(proxy.Host, reg.Host)
	if err != nil {
		t.Fatalf("reopen %s: %v", proxy.Host, err)
	}
	t.Cleanup(back.Close)
	if got, err := readBounded("data/gzip"); err != nil || string(got) != "from the gzip layer\n" {
		t.Errorf("read after the registry came back: %q, %v", got, err)
	}
}

func TestCLIUnmountNotAMount(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{dir, filepath.Join(dir, "absent")} {
		res := runCLI(t, unmountTimeout, nil, "unmount", d)
		if res.err == nil {
			t.Errorf("unmount %s succeeded", d)
			continue
		}
		if !strings.Contains(res.stderr, d) || !strings.Contains(res.stderr, "not a FUSE mount") {
			t.Errorf("unmount %s: %q, want it to name the directory and say it is not a FUSE mount", d, res.stderr)
		}
	}
}

// TestCLIMountSignalWhileBusy: SIGTERM to a mount that is in use cannot
// unmount it; the mount must then keep serving (reads that need the
// registry included), and the next SIGTERM, once it is idle, unmounts it.
func TestCLIMountSignalWhileBusy(t *testing.T) {
	reg := StartRegistry(t, RegistryOptions{})
	fx := buildCLIFixture(t)
	ref := reg.PushImage(t, "cli/signal", "v1", fx.img)
	env := cliEnvFor(t.TempDir())
	mustCLI(t, env, "--plain-http", "index", ref)

	dir, cmd, exited, stderr := startForegroundMount(t, env, ref)

	busy, err := os.Open(filepath.Join(dir, "etc"))
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		exited <- err
		t.Fatalf("mount server exited on SIGTERM while busy (%v)\n%s", err, stderr.String())
	case <-time.After(2 * time.Second): // go-fuse retries a busy unmount for well under a second
	}
	if !IsMounted(dir) {
		t.Fatalf("%s no longer mounted", dir)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "big/needle")); err != nil || string(got) != "needle in a haystack\n" {
		t.Fatalf("read after a refused unmount: %q, %v\n%s", got, err, stderr.String())
	}

	busy.Close()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		exited <- err
		if err != nil {
			t.Fatalf("mount exited with %v\n%s", err, stderr.String())
		}
	case <-time.After(serverExitTimeout):
		t.Fatalf("mount still running %s after a second SIGTERM\n%s", serverExitTimeout, stderr.String())
	}
	if IsMounted(dir) {
		t.Fatalf("%s still mounted after the server exited", dir)
	}
}

// TestCLIGzipFetchedOnce: a never-seen gzip layer is streamed once to build
// its index, and what was streamed is kept: with the registry gone right
// after the mount, every file of that layer still reads.
func TestCLIGzipFetchedOnce(t *testing.T) {
	reg := StartRegistry(t, RegistryOptions{})
	content := conformanceRandom(3 << 20)
	gz := MustLayer(t, LayerSpec{Entries: []Entry{
		Dir("data"), File("data/small", "small\n"),
		{Path: "data/big", Type: TypeFile, Mode: 0o644, Content: content},
	}})
	img := MustImage(t, ImageSpec{Layers: []*BuiltLayer{gz}})
	reg.PushImage(t, "cli/once", "v1", img)
	proxy, err := StartTCPProxy(reg.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxy.Close)
	m := mountImage(t, proxy.Host+"/cli/once@"+img.Digest.String(), mountOptions{})
	proxy.Close()
	if got, err := os.ReadFile(m.path("data/big")); err != nil || !bytes.Equal(got, content) {
		t.Errorf("data/big with the registry gone after a cold mount: %d bytes, %v", len(got), err)
	}
	if got, err := os.ReadFile(m.path("data/small")); err != nil || string(got) != "small\n" {
		t.Errorf("data/small with the registry gone after a cold mount: %q, %v", got, err)
	}
}
