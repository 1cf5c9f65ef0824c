package main

import (
	"math"
	"runtime/debug"
	"testing"
)

func TestApplyMountMemoryLimit(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1)) // restore

	debug.SetMemoryLimit(math.MaxInt64)
	noEnv := func(string) string { return "" }
	if got := applyMountMemoryLimit(noEnv, 64<<20); got != 64<<20+mountHeapOverhead {
		t.Errorf("limit %d, want %d", got, 64<<20+mountHeapOverhead)
	}
	if got := debug.SetMemoryLimit(-1); got != 64<<20+mountHeapOverhead {
		t.Errorf("runtime limit %d, want %d", got, 64<<20+mountHeapOverhead)
	}

	// A GOMEMLIMIT of the user's wins: the runtime already applied it.
	debug.SetMemoryLimit(math.MaxInt64)
	withEnv := func(k string) string {
		if k == "GOMEMLIMIT" {
			return "1GiB"
		}
		return ""
	}
	if got := applyMountMemoryLimit(withEnv, 64<<20); got != 0 {
		t.Errorf("limit %d with GOMEMLIMIT set, want 0 (untouched)", got)
	}
	if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
		t.Errorf("runtime limit changed to %d despite GOMEMLIMIT", got)
	}
}
