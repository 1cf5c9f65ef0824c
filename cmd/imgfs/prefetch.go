package main

// prefetchMode is what mount fetches in the background once ready.
type prefetchMode string

const (
	prefetchNone     prefetchMode = "none"     // nothing
	prefetchLandmark prefetchMode = "landmark" // prioritized files of eStargz layers (default)
	prefetchAllFiles prefetchMode = "all"      // prioritized files, then every file
)

const prefetchFlagHelp = "landmark: fetch the prioritized files of eStargz layers (those before .prefetch.landmark) in the background; " +
	"all: that, then every file, one at a time, at low priority; none: nothing"

// parsePrefetch checks a --prefetch value.
func parsePrefetch(s string) (prefetchMode, error) {
	switch m := prefetchMode(s); m {
	case prefetchNone, prefetchLandmark, prefetchAllFiles:
		return m, nil
	}
	return "", usageErrorf("invalid --prefetch %q: want landmark, all or none", s)
}
