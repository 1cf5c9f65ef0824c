package integration

// Extended attributes through a mount and through an overlayfs stacked on
// it as Apptainer stacks one on every directory image: an image with xattrs
// keeps every one (file capabilities included, as umoci unpacks them); an
// image without tells the kernel once, and the overlay's per-path probes
// stop reaching the server.

import (
	"fmt"
	iofs "io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// xattrFixture is a small runnable-looking tree: bin/ping (with
// security.capability when withXattrs), etc/notes (with user.* xattrs of
// binary and empty values) and 8 directories of 16 files to walk.
func xattrFixture(withXattrs bool) []Entry {
	ping := Entry{Path: "bin/ping", Type: TypeFile, Mode: 0o755, Content: []byte("#!/bin/sh\necho ping\n")}
	notes := Entry{Path: "etc/notes", Type: TypeFile, Mode: 0o644, Content: []byte("notes\n")}
	if withXattrs {
		ping.Xattrs = map[string]string{"security.capability": capabilityV2()}
		notes.Xattrs = map[string]string{"user.color": "blue", "user.binary": "\x00\x01\xfe\xff"}
	}
	e := []Entry{Dir("bin"), ping, Dir("etc"), notes, Dir("tree")}
	for d := range 8 {
		e = append(e, Dir(fmt.Sprintf("tree/d%d", d)))
		for f := range 16 {
			p := fmt.Sprintf("tree/d%d/f%02d", d, f)
			e = append(e, Entry{Path: p, Type: TypeFile, Mode: 0o644, Content: []byte(p + "\n")})
		}
	}
	return e
}

// requestLine is the "fuse requests:" line of `mount --stats`.
var requestLine = regexp.MustCompile(`(?m)^fuse requests: (.*)$`)

// parseRequestCounts reads the request counts, by kind, from --stats.
func parseRequestCounts(t *testing.T, stderr string) map[string]int64 {
	t.Helper()
	m := requestLine.FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("no \"fuse requests:\" line in:\n%s", stderr)
	}
	out := map[string]int64{}
	for _, part := range strings.Split(m[1], ", ") {
		name, num, _ := strings.Cut(part, " ")
		n, err := strconv.ParseInt(num, 10, 64)
		if err != nil {
			t.Fatalf("request count %q: %v", part, err)
		}
		out[name] = n
	}
	return out
}

// getcapOf runs getcap on root/rel and returns its output with root
// replaced by "ROOT", so outputs for different roots compare.
func getcapOf(t *testing.T, getcap, root, rel string) string {
	t.Helper()
	out, err := exec.Command(getcap, filepath.Join(root, rel)).CombinedOutput()
	if err != nil {
		t.Fatalf("getcap %s: %v: %s", filepath.Join(root, rel), err, out)
	}
	return strings.ReplaceAll(string(out), root, "ROOT")
}

func TestXattrsThroughMountAndOverlay(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("umoci's oracle (security.* xattrs) and overlayfs need root")
	}
	getcap := RequireTool(t, "getcap")
	reg := StartRegistry(t, RegistryOptions{})
	for _, withXattrs := range []bool{true, false} {
		t.Run(fmt.Sprintf("xattrs=%v", withXattrs), func(t *testing.T) {
			img := MustImage(t, ImageSpec{Kind: OCI, Layers: []*BuiltLayer{MustLayer(t, LayerSpec{Entries: xattrFixture(withXattrs)})}})
			oracleRoot := OracleRootfs(t, img)
			oracle, err := ScanTree(oracleRoot, ScanOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if got := oracle.Entries["bin/ping"].Xattrs["security.capability"]; (got != "") != withXattrs {
				t.Fatalf("oracle: bin/ping security.capability %q", got)
			}
			ref := reg.PushImage(t, "xattrs/"+map[bool]string{true: "with", false: "without"}[withXattrs], "v1", img)
			env := cliEnvFor(t.TempDir())
			dir, _, exited, stderr := startForegroundMount(t, env, "--stats", ref)

			// (a) Every xattr as umoci unpacked it, and getcap agrees.
			got, err := ScanTree(dir, ScanOptions{Skip: func(rel string) bool { return oracle.Entries[rel] == nil }})
			if err != nil {
				t.Fatal(err)
			}
			for p, want := range oracle.Entries {
				if g := got.Entries[p]; g == nil || !maps.Equal(g.Xattrs, want.Xattrs) {
					t.Errorf("/%s: xattrs through the mount %q, umoci %q", p, g.Xattrs, want.Xattrs)
				}
			}
			wantCap := getcapOf(t, getcap, oracleRoot, "bin/ping")
			if (wantCap != "") != withXattrs {
				t.Fatalf("getcap of umoci's unpack: %q", wantCap)
			}
			if g := getcapOf(t, getcap, dir, "bin/ping"); g != wantCap {
				t.Errorf("getcap through the mount: %q, umoci's unpack: %q", g, wantCap)
			}

			// (b) Overlayfs as Apptainer mounts it: lowerdir=EMPTY:MNT, no upper.
			empty, root := t.TempDir(), t.TempDir()
			if err := unix.Mount("overlay", root, "overlay", unix.MS_RDONLY, "lowerdir="+empty+":"+dir+",redirect_dir=on"); err != nil {
				t.Fatalf("overlayfs over the mount: %v", err)
			}
			overlayUp := true
			unmountOverlay := func() {
				if overlayUp {
					if err := unix.Unmount(root, 0); err != nil {
						t.Errorf("unmount overlay: %v", err)
						_ = unix.Unmount(root, unix.MNT_DETACH)
					}
					overlayUp = false
				}
			}
			t.Cleanup(unmountOverlay)
			walked := 0
			err = filepath.WalkDir(filepath.Join(root, "tree"), func(p string, de iofs.DirEntry, err error) error {
				if err != nil {
					return err
				}
				walked++
				if _, err := de.Info(); err != nil {
					return err
				}
				if rel, _ := filepath.Rel(root, p); de.Type().IsRegular() {
					if data, err := os.ReadFile(p); err != nil || string(data) != rel+"\n" {
						t.Errorf("%s through the overlay: %q %v", rel, data, err)
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if g := getcapOf(t, getcap, root, "bin/ping"); g != wantCap {
				t.Errorf("getcap through the overlay: %q, umoci's unpack: %q", g, wantCap)
			}
			unmountOverlay()
			unmountForStats(t, env, dir, exited, stderr)
			counts := parseRequestCounts(t, stderr.String())
			if !strings.Contains(stderr.String(), map[bool]string{true: "xattrs: the image has some", false: "xattrs: the image has none"}[withXattrs]) {
				t.Errorf("--stats does not say whether the image has xattrs:\n%s", stderr.String())
			}
			switch gx, lx := counts["getxattr"], counts["listxattr"]; {
			case !withXattrs && (gx > 1 || lx > 1):
				t.Errorf("image without xattrs: %d GETXATTR and %d LISTXATTR requests reached the server (a scan, getcap, an overlay walk of %d paths); want at most 1 each", gx, lx, walked)
			case withXattrs && gx < int64(walked):
				t.Errorf("image with xattrs: %d GETXATTR requests for an overlay walk of %d paths; the overlay probes every path", gx, walked)
			}
		})
	}
}
