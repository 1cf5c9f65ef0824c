package index

import (
	"strings"
	"testing"
)

func TestCleanPath(t *testing.T) {
	for in, want := range map[string]string{
		"a/b": "a/b", "./a/b": "a/b", "/a/b/": "a/b", "//a//b": "a/b", "a/./b/../c": "a/c",
		"./": "", ".": "", "/": "", "a/..": "",
		"../a": "!", "..": "!", "/../a": "!", "a/../../b": "!", "./..": "!", "a\x00b": "!",
		strings.Repeat("x", maxPathLen+1): "!",
		"":                                "", "a": "a", "./a/./b/": "a/b", "a/b/..": "a", "...": "...", "a/.b": "a/.b", "..a": "..a",
		"a/../..": "!", "a/../../b/c": "!",
	} {
		got, ok := CleanPath(in)
		if !ok {
			got = "!"
		}
		if got != want {
			t.Errorf("CleanPath(%q) = %q, want %q", in, got, want)
		}
	}
}

// isCleanReference is the obvious definition isClean must agree with.
func isCleanReference(p string) bool {
	if p == "" {
		return true
	}
	for _, c := range strings.Split(p, "/") {
		if c == "" || c == "." || c == ".." {
			return false
		}
	}
	return true
}

func FuzzCleanPath(f *testing.F) {
	for _, s := range []string{"", "a/b", "./a//b/", "../x", "a/../../b", "/.wh.x", "a/./b/../c", ".a/b.", "a/..b/...", "a/."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if isClean(s) != isCleanReference(s) {
			t.Fatalf("isClean(%q) = %v, reference says otherwise", s, isClean(s))
		}
		got, ok := CleanPath(s)
		if !ok {
			return
		}
		if !isClean(got) {
			t.Fatalf("CleanPath(%q) = %q is not clean", s, got)
		}
		if again, ok := CleanPath(got); !ok || again != got {
			t.Fatalf("not idempotent: %q -> %q -> %q", s, got, again)
		}
	})
}
