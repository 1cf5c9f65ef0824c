package manifest

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Environment variables that choose the platform, in the order they are
// consulted after an explicit one.
const (
	EnvApptainerOS     = "APPTAINER_DOCKER_OS"
	EnvApptainerArch   = "APPTAINER_DOCKER_ARCHITECTURE"
	EnvSingularityOS   = "SINGULARITY_DOCKER_OS"
	EnvSingularityArch = "SINGULARITY_DOCKER_ARCHITECTURE"
)

// WantedPlatform decides which platform to pick from an index: explicit
// (the --platform flag or its IMGFS_PLATFORM variable, named by
// explicitFrom) > APPTAINER_DOCKER_OS / APPTAINER_DOCKER_ARCHITECTURE, then
// the SINGULARITY_ spellings (each may be set alone; the other part comes
// from the host) > the host. getenv is how the caller reads its
// environment (nil: none). It returns the platform and where it came from,
// for logs and errors.
func WantedPlatform(explicit, explicitFrom string, getenv func(string) string, host func() ocispec.Platform) (ocispec.Platform, string, error) {
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	if host == nil {
		host = HostPlatform
	}
	if explicit != "" {
		p, err := ParsePlatform(explicit)
		if err != nil {
			return p, explicitFrom, fmt.Errorf("%s: %w", explicitFrom, err)
		}
		return p, explicitFrom, nil
	}

	osName, osVar := firstSet(getenv, EnvApptainerOS, EnvSingularityOS)
	arch, archVar := firstSet(getenv, EnvApptainerArch, EnvSingularityArch)
	if osName == "" && arch == "" {
		return NormalizePlatform(host()), "host", nil
	}
	p := NormalizePlatform(host())
	var from []string
	if osName != "" {
		if strings.Contains(osName, "/") {
			return p, osVar, fmt.Errorf("%s=%q: want an OS name such as linux", osVar, osName)
		}
		p.OS = strings.ToLower(osName)
		from = append(from, osVar)
	}
	if arch != "" {
		// Accept "arm/v7" as well as "arm" in the architecture variable.
		a, variant, _ := strings.Cut(arch, "/")
		if a == "" || strings.Contains(variant, "/") {
			return p, archVar, fmt.Errorf("%s=%q: want an architecture such as amd64 or arm/v7", archVar, arch)
		}
		want := NormalizePlatform(ocispec.Platform{OS: p.OS, Architecture: a, Variant: variant})
		// Keep the host's variant when the variable only repeats its architecture.
		if want.Architecture != p.Architecture || variant != "" {
			p.Architecture, p.Variant = want.Architecture, want.Variant
		}
		from = append(from, archVar)
	}
	return p, strings.Join(from, "+"), nil
}

func firstSet(getenv func(string) string, names ...string) (value, name string) {
	for _, n := range names {
		if v := strings.TrimSpace(getenv(n)); v != "" {
			return v, n
		}
	}
	return "", ""
}

// HostPlatform is the platform this process runs on, with the ARM variant
// read from /proc/cpuinfo as containerd does.
func HostPlatform() ocispec.Platform {
	p := ocispec.Platform{OS: runtime.GOOS, Architecture: runtime.GOARCH}
	if runtime.GOOS == "linux" && (runtime.GOARCH == "arm" || runtime.GOARCH == "arm64") {
		if f, err := os.Open("/proc/cpuinfo"); err == nil {
			p.Variant = armVariantFromCPUInfo(f, runtime.GOARCH)
			f.Close()
		}
	}
	return NormalizePlatform(p)
}

// armVariantFromCPUInfo maps the "CPU architecture" line of /proc/cpuinfo to
// a variant. A 32-bit process on an ARMv8 CPU runs v7 code, hence the clamp.
func armVariantFromCPUInfo(r io.Reader, goarch string) string {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), ":")
		if !ok || !strings.EqualFold(strings.TrimSpace(key), "CPU architecture") {
			continue
		}
		value = strings.TrimSpace(value)
		var variant string
		switch {
		case value == "AArch64" || strings.HasPrefix(value, "8"):
			variant = "v8"
		case strings.HasPrefix(value, "7"):
			variant = "v7"
		case strings.HasPrefix(value, "6"):
			variant = "v6"
		case strings.HasPrefix(value, "5"):
			variant = "v5"
		default:
			return ""
		}
		if goarch == "arm" && variant == "v8" {
			variant = "v7"
		}
		return variant
	}
	return ""
}
