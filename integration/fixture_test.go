package integration

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/klauspost/compress/zstd"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

var nanoTime = time.Date(2023, 5, 6, 7, 8, 9, 123456789, time.UTC)

// everyEntryType is a layer using each entry kind and attribute once.
func everyEntryType() []Entry {
	return []Entry{
		{Path: "bin", Type: TypeDir, Mode: 0o755},
		{Path: "bin/su", Type: TypeFile, Mode: 0o4755, UID: 0, GID: 0, Content: []byte("setuid"), ModTime: nanoTime},
		{Path: "tmp", Type: TypeDir, Mode: 0o1777},
		{Path: "home/user/notes", Type: TypeFile, Mode: 0o640, UID: 1000, GID: 1001, Uname: "user", Gname: "users",
			Content: []byte("notes\n"), Xattrs: map[string]string{"user.color": "blue", "security.capability": "\x01\x00"}},
		{Path: "bin/sh", Type: TypeSymlink, Link: "/bin/busybox"},
		{Path: "bin/su2", Type: TypeHardlink, Link: "bin/su"},
		{Path: "dev/null", Type: TypeCharDev, Mode: 0o666, Devmajor: 1, Devminor: 3},
		{Path: "dev/sda", Type: TypeBlockDev, Devmajor: 8, Devminor: 0},
		{Path: "run/pipe", Type: TypeFIFO, Mode: 0o644},
		Whiteout("etc/removed"),
		OpaqueDir("var/cache"),
	}
}

func readTar(t *testing.T, data []byte) []*tar.Header {
	t.Helper()
	var hdrs []*tar.Header
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return hdrs
		}
		if err != nil {
			t.Fatalf("read tar: %v", err)
		}
		hdrs = append(hdrs, h)
	}
}

func TestFixtureTarEntries(t *testing.T) {
	data, err := BuildTar(everyEntryType())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*tar.Header{}
	var order []string
	for _, h := range readTar(t, data) {
		got[h.Name] = h
		order = append(order, h.Name)
	}
	want := []string{"bin/", "bin/su", "tmp/", "home/user/notes", "bin/sh", "bin/su2", "dev/null", "dev/sda",
		"run/pipe", "etc/.wh.removed", "var/cache/.wh..wh..opq"}
	if !slices.Equal(order, want) {
		t.Fatalf("entries %q, want %q", order, want)
	}
	check := func(name string, ok bool, what string) {
		t.Helper()
		if !ok {
			t.Errorf("%s: %s wrong: %+v", name, what, got[name])
		}
	}
	su := got["bin/su"]
	check("bin/su", su.Mode == 0o4755 && su.Typeflag == tar.TypeReg && su.Size == 6, "setuid mode/size")
	check("bin/su", su.ModTime.Equal(nanoTime), "nanosecond mtime")
	check("tmp/", got["tmp/"].Mode == 0o1777 && got["tmp/"].Typeflag == tar.TypeDir, "sticky dir")
	n := got["home/user/notes"]
	check("home/user/notes", n.Uid == 1000 && n.Gid == 1001 && n.Uname == "user" && n.Gname == "users", "owner")
	check("home/user/notes", n.PAXRecords["SCHILY.xattr.user.color"] == "blue" &&
		n.PAXRecords["SCHILY.xattr.security.capability"] == "\x01\x00", "xattrs")
	check("bin/sh", got["bin/sh"].Typeflag == tar.TypeSymlink && got["bin/sh"].Linkname == "/bin/busybox", "symlink")
	check("bin/su2", got["bin/su2"].Typeflag == tar.TypeLink && got["bin/su2"].Linkname == "bin/su", "hardlink")
	check("dev/null", got["dev/null"].Typeflag == tar.TypeChar && got["dev/null"].Devmajor == 1 && got["dev/null"].Devminor == 3, "char dev")
	check("dev/sda", got["dev/sda"].Typeflag == tar.TypeBlock && got["dev/sda"].Devmajor == 8, "block dev")
	check("run/pipe", got["run/pipe"].Typeflag == tar.TypeFifo && got["run/pipe"].Mode == 0o644, "fifo")
	check("bin/sh", got["bin/sh"].ModTime.Equal(DefaultModTime), "default mtime")
}

func TestFixtureEncodings(t *testing.T) {
	entries := append(everyEntryType(), File("big", string(bytes.Repeat([]byte("0123456789abcdef"), 64<<10))))
	plain, err := BuildTar(entries)
	if err != nil {
		t.Fatal(err)
	}
	decoders := map[Compression]func([]byte) ([]byte, error){
		Uncompressed: func(b []byte) ([]byte, error) { return b, nil },
		Gzip: func(b []byte) ([]byte, error) {
			zr, err := gzip.NewReader(bytes.NewReader(b))
			if err != nil {
				return nil, err
			}
			return io.ReadAll(zr)
		},
		Zstd: func(b []byte) ([]byte, error) {
			zr, err := zstd.NewReader(nil)
			if err != nil {
				return nil, err
			}
			defer zr.Close()
			return zr.DecodeAll(b, nil)
		},
	}
	decoders[Estargz] = decoders[Gzip]
	for comp, decode := range decoders {
		t.Run(string(comp), func(t *testing.T) {
			l, err := BuildLayer(LayerSpec{Entries: entries, Compression: comp, EstargzChunkSize: 64 << 10})
			if err != nil {
				t.Fatal(err)
			}
			if l.Digest != digest.FromBytes(l.Blob) || l.DiffID != digest.FromBytes(l.Tar) {
				t.Fatal("digests do not match the bytes")
			}
			decoded, err := decode(l.Blob)
			if err != nil || !bytes.Equal(decoded, l.Tar) {
				t.Fatalf("blob does not decode to Tar (err %v)", err)
			}
			if comp != Estargz && !bytes.Equal(l.Tar, plain) {
				t.Fatal("Tar differs from the built tar")
			}
		})
	}
}

func TestFixtureGzipMultiMember(t *testing.T) {
	data := bytes.Repeat([]byte("multi-member "), 10000)
	blob, err := GzipMembers(data, 3, 0)
	if err != nil {
		t.Fatal(err)
	}
	// A bytes.Reader is an io.ByteReader, so gzip reads no further than
	// each member's end and Reset can start the next one.
	br := bytes.NewReader(blob)
	zr, err := gzip.NewReader(br)
	if err != nil {
		t.Fatal(err)
	}
	zr.Multistream(false)
	var all []byte
	members := 0
	for {
		part, err := io.ReadAll(zr)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, part...)
		members++
		if err := zr.Reset(br); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		zr.Multistream(false)
	}
	if members != 3 || !bytes.Equal(all, data) {
		t.Fatalf("%d members, content equal %v; want 3 members", members, bytes.Equal(all, data))
	}
}

func TestFixtureEstargz(t *testing.T) {
	l := MustLayer(t, LayerSpec{Entries: everyEntryType(), Compression: Estargz})
	tocDigest, err := digest.Parse(l.Annotations[EstargzTOCDigestAnnotation])
	if err != nil {
		t.Fatalf("TOC digest annotation: %v", err)
	}
	if size, err := strconv.Atoi(l.Annotations[EstargzUncompressedSizeAnnotation]); err != nil || size != len(l.Tar) {
		t.Fatalf("uncompressed-size annotation %q, tar is %d bytes", l.Annotations[EstargzUncompressedSizeAnnotation], len(l.Tar))
	}
	r, err := estargz.Open(io.NewSectionReader(bytes.NewReader(l.Blob), 0, int64(len(l.Blob))))
	if err != nil {
		t.Fatalf("estargz.Open: %v", err)
	}
	if _, err := r.VerifyTOC(tocDigest); err != nil {
		t.Fatalf("TOC does not match the annotation: %v", err)
	}
	names := map[string]bool{}
	for _, h := range readTar(t, l.Tar) {
		names[h.Name] = true
	}
	for _, want := range []string{"stargz.index.json", "bin/su", "etc/.wh.removed"} {
		if !names[want] && !names["./"+want] {
			t.Errorf("eStargz tar lacks %s: %v", want, names)
		}
	}
	desc := l.Descriptor(DockerSchema2)
	if desc.MediaType != DockerGzipLayerMediaType || desc.Annotations[EstargzTOCDigestAnnotation] != tocDigest.String() {
		t.Errorf("docker descriptor %+v", desc)
	}
}

func TestFixtureEncoderHook(t *testing.T) {
	if _, err := BuildLayer(LayerSpec{Entries: everyEntryType(), Compression: ZstdChunked}); err == nil {
		t.Fatal("zstd:chunked without an encoder did not fail")
	}
	l := MustLayer(t, LayerSpec{
		Entries:     []Entry{File("a", "a")},
		Compression: ZstdChunked,
		Encoder: func(tarball []byte) (EncodedLayer, error) {
			blob, err := ZstdCompress(tarball)
			return EncodedLayer{Blob: blob, Annotations: map[string]string{"io.github.containers.zstd-chunked.manifest-position": "1:2:3:1"}}, err
		},
	})
	desc := l.Descriptor(OCI)
	if desc.MediaType != ocispec.MediaTypeImageLayerZstd || desc.Annotations["io.github.containers.zstd-chunked.manifest-position"] != "1:2:3:1" {
		t.Fatalf("descriptor %+v", desc)
	}
}

func TestFixtureImageDocuments(t *testing.T) {
	for _, kind := range []ManifestKind{OCI, DockerSchema2} {
		img := smallImage(t, kind)
		var m ocispec.Manifest
		if err := json.Unmarshal(img.Manifest, &m); err != nil {
			t.Fatal(err)
		}
		var cfg ocispec.Image
		if err := json.Unmarshal(img.Config, &cfg); err != nil {
			t.Fatal(err)
		}
		wantMT, wantCfgMT, wantLayerMT := ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageConfig, ocispec.MediaTypeImageLayerGzip
		if kind == DockerSchema2 {
			wantMT, wantCfgMT, wantLayerMT = DockerManifestMediaType, DockerConfigMediaType, DockerGzipLayerMediaType
		}
		if m.MediaType != wantMT || m.Config.MediaType != wantCfgMT || m.Layers[0].MediaType != wantLayerMT || m.SchemaVersion != 2 {
			t.Errorf("%s manifest media types: %+v", kind, m)
		}
		if m.Config.Digest != img.ConfigDigest || img.ConfigDigest != digest.FromBytes(img.Config) {
			t.Errorf("%s config digest mismatch", kind)
		}
		if len(cfg.RootFS.DiffIDs) != 2 || cfg.RootFS.DiffIDs[1] != img.Layers[1].DiffID || len(cfg.History) != 2 {
			t.Errorf("%s rootfs/history: %+v", kind, cfg)
		}
		if cfg.OS != "linux" || cfg.Architecture != "amd64" || cfg.Config.Entrypoint[0] != "/bin/tool" {
			t.Errorf("%s config: %+v", kind, cfg)
		}
	}
	idx := multiPlatformIndex(t, DockerSchema2)
	var list ocispec.Index
	if err := json.Unmarshal(idx.Manifest, &list); err != nil {
		t.Fatal(err)
	}
	if list.MediaType != DockerManifestListMediaType || len(list.Manifests) != 3 ||
		list.Manifests[2].Platform.Variant != "v7" || list.Manifests[2].MediaType != DockerManifestMediaType {
		t.Errorf("manifest list: %s", idx.Manifest)
	}
}

// TestFixtureUmociUnpack checks the oracle: umoci applies the layers as the
// image spec says, and the fixture attributes survive.
func TestFixtureUmociUnpack(t *testing.T) {
	lower := MustLayer(t, LayerSpec{Entries: []Entry{
		Dir("etc"), File("etc/keep", "keep\n"), File("etc/removed", "gone\n"),
		Dir("var"), Dir("var/cache"), File("var/cache/old", "old\n"),
		Dir("bin"), {Path: "bin/su", Type: TypeFile, Mode: 0o4755, Content: []byte("su"), ModTime: nanoTime},
	}})
	upper := MustLayer(t, LayerSpec{Compression: Uncompressed, Entries: []Entry{
		Whiteout("etc/removed"),
		OpaqueDir("var/cache"), File("var/cache/new", "new\n"),
		Symlink("bin/sh", "busybox"), Hardlink("bin/su-again", "bin/su"),
		{Path: "tmp", Type: TypeDir, Mode: 0o1777},
		{Path: "home/owned", Type: TypeFile, UID: 1234, GID: 5678, Content: []byte("mine")},
	}})
	img := MustImage(t, ImageSpec{Layers: []*BuiltLayer{lower, upper}})
	layout := filepath.Join(t.TempDir(), "layout")
	if err := WriteOCILayout(layout, "latest", img); err != nil {
		t.Fatal(err)
	}
	rootfs := UmociUnpack(t, layout, "latest")

	for path, want := range map[string]string{"etc/keep": "keep\n", "var/cache/new": "new\n", "bin/su-again": "su"} {
		if got, err := os.ReadFile(filepath.Join(rootfs, path)); err != nil || string(got) != want {
			t.Errorf("%s: %q, %v; want %q", path, got, err, want)
		}
	}
	for _, gone := range []string{"etc/removed", "etc/.wh.removed", "var/cache/old", "var/cache/.wh..wh..opq"} {
		if _, err := os.Lstat(filepath.Join(rootfs, gone)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s should not exist: %v", gone, err)
		}
	}
	if target, err := os.Readlink(filepath.Join(rootfs, "bin/sh")); err != nil || target != "busybox" {
		t.Errorf("bin/sh -> %q, %v", target, err)
	}
	su, err := os.Lstat(filepath.Join(rootfs, "bin/su"))
	if err != nil {
		t.Fatal(err)
	}
	if su.Mode()&os.ModeSetuid == 0 || su.Mode().Perm() != 0o755 {
		t.Errorf("bin/su mode %v", su.Mode())
	}
	if !su.ModTime().Equal(nanoTime) {
		t.Errorf("bin/su mtime %v, want %v", su.ModTime(), nanoTime)
	}
	again, _ := os.Lstat(filepath.Join(rootfs, "bin/su-again"))
	if !os.SameFile(su, again) {
		t.Error("bin/su-again is not a hard link of bin/su")
	}
	if tmp, err := os.Lstat(filepath.Join(rootfs, "tmp")); err != nil || tmp.Mode()&os.ModeSticky == 0 {
		t.Errorf("tmp not sticky: %v %v", tmp, err)
	}
	if os.Geteuid() == 0 {
		st, _ := os.Lstat(filepath.Join(rootfs, "home/owned"))
		if sys := st.Sys().(*syscall.Stat_t); sys.Uid != 1234 || sys.Gid != 5678 {
			t.Errorf("home/owned owned by %d:%d", sys.Uid, sys.Gid)
		}
	}
}

// TestFixtureOracleRootfs: every format unpacks to the same tree, without
// the eStargz artefacts.
func TestFixtureOracleRootfs(t *testing.T) {
	for _, kind := range []ManifestKind{OCI, DockerSchema2} {
		for _, c := range []Compression{Zstd, Estargz} {
			l := MustLayer(t, LayerSpec{Compression: c, Entries: []Entry{Dir("d"), File("d/f", string(c))}})
			rootfs := OracleRootfs(t, MustImage(t, ImageSpec{Kind: kind, Layers: []*BuiltLayer{l}}))
			if got, err := os.ReadFile(filepath.Join(rootfs, "d/f")); err != nil || string(got) != string(c) {
				t.Errorf("%s %s: d/f = %q, %v", kind, c, got, err)
			}
			if _, err := os.Lstat(filepath.Join(rootfs, "stargz.index.json")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s %s: stargz.index.json in the oracle: %v", kind, c, err)
			}
		}
	}
}
