package manifest

import (
	"fmt"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ParsePlatform parses "os/arch[/variant]" (e.g. linux/arm64, linux/arm/v7)
// and normalises it as containerd does.
func ParsePlatform(s string) (ocispec.Platform, error) {
	parts := strings.Split(s, "/")
	if len(parts) < 2 || len(parts) > 3 {
		return ocispec.Platform{}, fmt.Errorf("invalid platform %q: want os/arch[/variant], e.g. linux/amd64 or linux/arm/v7", s)
	}
	for _, p := range parts {
		if p == "" || strings.TrimSpace(p) != p {
			return ocispec.Platform{}, fmt.Errorf("invalid platform %q: empty or padded component; want os/arch[/variant]", s)
		}
	}
	p := ocispec.Platform{OS: parts[0], Architecture: parts[1]}
	if len(parts) == 3 {
		p.Variant = parts[2]
	}
	return NormalizePlatform(p), nil
}

// FormatPlatform renders os/arch[/variant].
func FormatPlatform(p ocispec.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// NormalizePlatform maps aliases to canonical names, following containerd's
// platforms.Normalize: x86_64 -> amd64 (variant v1 is the default, so ""),
// aarch64 -> arm64 (v8 is the default, so ""), arm defaults to v7,
// i386 -> 386. OS and architecture are lower-cased.
func NormalizePlatform(p ocispec.Platform) ocispec.Platform {
	p.OS = strings.ToLower(p.OS)
	if p.OS == "macos" {
		p.OS = "darwin"
	}
	arch, variant := strings.ToLower(p.Architecture), strings.ToLower(p.Variant)
	switch arch {
	case "x86_64", "x86-64", "amd64":
		arch = "amd64"
		if variant == "v1" {
			variant = ""
		}
	case "i386", "i686", "386":
		arch, variant = "386", ""
	case "aarch64", "arm64":
		arch = "arm64"
		switch variant {
		case "8", "v8", "v8.0":
			variant = ""
		case "9", "9.0", "v9.0":
			variant = "v9"
		}
	case "armhf":
		arch, variant = "arm", "v7"
	case "armel":
		arch, variant = "arm", "v6"
	case "arm":
		switch variant {
		case "", "7":
			variant = "v7"
		case "5", "6", "8":
			variant = "v" + variant
		}
	}
	p.Architecture, p.Variant = arch, variant
	return p
}

// matchRank says how well have satisfies want: 0 = not at all, higher is
// better. An exact match ranks highest; a lower variant the wanted one can
// run (arm v6 on v7, amd64 v2 on v3) ranks by how close it is.
func matchRank(want, have ocispec.Platform) int {
	want, have = NormalizePlatform(want), NormalizePlatform(have)
	if want.OS != have.OS || want.Architecture != have.Architecture {
		return 0
	}
	if want.Variant == have.Variant {
		return 100
	}
	wantLevel, ok1 := variantLevel(want.Architecture, want.Variant)
	haveLevel, ok2 := variantLevel(have.Architecture, have.Variant)
	if !ok1 || !ok2 || haveLevel > wantLevel {
		return 0
	}
	return 50 - (wantLevel - haveLevel) // closer is better, always below exact
}

// variantLevel orders the variants of architectures whose newer variants run
// code built for older ones.
func variantLevel(arch, variant string) (int, bool) {
	switch arch {
	case "arm":
		switch variant {
		case "v5":
			return 5, true
		case "v6":
			return 6, true
		case "v7":
			return 7, true
		case "v8":
			return 8, true
		}
	case "amd64":
		switch variant {
		case "":
			return 1, true
		case "v2":
			return 2, true
		case "v3":
			return 3, true
		case "v4":
			return 4, true
		}
	case "arm64":
		switch variant {
		case "":
			return 8, true
		case "v9":
			return 9, true
		}
	}
	return 0, false
}

// MatchPlatform reports whether an image built for have runs on want.
func MatchPlatform(want, have ocispec.Platform) bool {
	return matchRank(want, have) > 0
}
