package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/imgfs/imgfs/fs"
)

// The request line is for people and scripts (the bench parses it): one
// line, every kind as "NAME COUNT", then the total.
func TestPrintRequests(t *testing.T) {
	var b bytes.Buffer
	printRequests(&b, fs.RequestStats{{Kind: "lookup", N: 3}, {Kind: "getxattr", N: 1}, {Kind: "other", N: 0}})
	want := "fuse requests: lookup 3, getxattr 1, other 0, total 4\n"
	if got := b.String(); got != want {
		t.Errorf("got %q\nwant %q", got, want)
	}
	if strings.Count(b.String(), "\n") != 1 {
		t.Errorf("not one line: %q", b.String())
	}
}
