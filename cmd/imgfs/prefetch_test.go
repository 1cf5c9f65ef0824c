package main

import (
	"errors"
	"strings"
	"testing"
)

func TestParsePrefetch(t *testing.T) {
	for in, want := range map[string]prefetchMode{"none": prefetchNone, "landmark": prefetchLandmark, "all": prefetchAllFiles} {
		if got, err := parsePrefetch(in); err != nil || got != want {
			t.Errorf("parsePrefetch(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "sometimes", "ALL", "landmarks", " none"} {
		_, err := parsePrefetch(bad)
		var ue *usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), "want landmark, all or none") {
			t.Errorf("parsePrefetch(%q): %v, want a usage error", bad, err)
		}
	}
}

// The default is the landmark prefetch, and the help names every value.
func TestPrefetchFlagDefault(t *testing.T) {
	cmd := newMountCommand(&app{})
	fl := cmd.Flags().Lookup("prefetch")
	if fl == nil || fl.DefValue != string(prefetchLandmark) {
		t.Fatalf("--prefetch default: %+v", fl)
	}
	for _, v := range []string{"landmark", "all", "none"} {
		if !strings.Contains(fl.Usage, v) {
			t.Errorf("--prefetch help %q does not name %q", fl.Usage, v)
		}
	}
}
