package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/imgfs/imgfs/fs"
)

// The request line is for people and scripts (the bench parses it): one
// line, every kind as "NAME COUNT", then the total; then a line on xattrs.
func TestPrintRequests(t *testing.T) {
	for _, xattrs := range []bool{false, true} {
		var b bytes.Buffer
		printRequests(&b, fs.RequestStats{{Kind: "lookup", N: 3}, {Kind: "getxattr", N: 1}, {Kind: "other", N: 0}}, xattrs)
		lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
		if len(lines) != 2 || lines[0] != "fuse requests: lookup 3, getxattr 1, other 0, total 4" {
			t.Fatalf("xattrs=%v: %q", xattrs, b.String())
		}
		if want := map[bool]string{false: "has none", true: "has some"}[xattrs]; !strings.HasPrefix(lines[1], "xattrs: the image "+want) {
			t.Errorf("xattrs=%v: %q", xattrs, lines[1])
		}
	}
}
