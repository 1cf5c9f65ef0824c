package manifest

import (
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestParsePlatform(t *testing.T) {
	tests := []struct{ in, want string }{
		{"linux/amd64", "linux/amd64"},
		{"linux/x86_64", "linux/amd64"},
		{"linux/amd64/v1", "linux/amd64"},
		{"linux/amd64/v3", "linux/amd64/v3"},
		{"Linux/AMD64", "linux/amd64"},
		{"linux/aarch64", "linux/arm64"},
		{"linux/arm64/v8", "linux/arm64"},
		{"linux/arm64/8", "linux/arm64"},
		{"linux/arm64/v9", "linux/arm64/v9"},
		{"linux/arm", "linux/arm/v7"},
		{"linux/arm/7", "linux/arm/v7"},
		{"linux/arm/v6", "linux/arm/v6"},
		{"linux/armhf", "linux/arm/v7"},
		{"linux/armel", "linux/arm/v6"},
		{"linux/i386", "linux/386"},
		{"linux/ppc64le", "linux/ppc64le"},
		{"linux/s390x", "linux/s390x"},
		{"windows/amd64", "windows/amd64"},
	}
	for _, tc := range tests {
		p, err := ParsePlatform(tc.in)
		if err != nil {
			t.Errorf("ParsePlatform(%q): %v", tc.in, err)
			continue
		}
		if got := FormatPlatform(p); got != tc.want {
			t.Errorf("ParsePlatform(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
	for _, bad := range []string{"", "linux", "amd64", "linux/", "/amd64", "linux/arm/v7/x", "linux//v7", "linux/ amd64"} {
		if p, err := ParsePlatform(bad); err == nil {
			t.Errorf("ParsePlatform(%q) = %v, want an error", bad, p)
		} else if !strings.Contains(err.Error(), "os/arch[/variant]") {
			t.Errorf("ParsePlatform(%q) error %q does not show the expected form", bad, err)
		}
	}
}

func TestMatchPlatform(t *testing.T) {
	tests := []struct {
		want, have string
		ok         bool
	}{
		{"linux/amd64", "linux/amd64", true},
		{"linux/amd64", "linux/amd64/v1", true},
		{"linux/amd64", "linux/amd64/v2", false}, // a v1 host cannot run v2 code
		{"linux/amd64/v3", "linux/amd64", true},
		{"linux/amd64/v3", "linux/amd64/v2", true},
		{"linux/arm64", "linux/arm64/v8", true},
		{"linux/arm64/v8", "linux/arm64", true},
		{"linux/arm64", "linux/arm64/v9", false},
		{"linux/arm64/v9", "linux/arm64/v8", true},
		{"linux/arm/v7", "linux/arm", true},
		{"linux/arm/v7", "linux/arm/v6", true},
		{"linux/arm/v7", "linux/arm/v5", true},
		{"linux/arm/v6", "linux/arm/v7", false},
		{"linux/arm/v8", "linux/arm/v7", true},
		{"linux/amd64", "linux/arm64", false},
		{"linux/amd64", "windows/amd64", false},
		{"linux/arm64", "linux/arm/v7", false},
	}
	for _, tc := range tests {
		w, _ := ParsePlatform(tc.want)
		h, _ := ParsePlatform(tc.have)
		if got := MatchPlatform(w, h); got != tc.ok {
			t.Errorf("MatchPlatform(%s, %s) = %v, want %v", tc.want, tc.have, got, tc.ok)
		}
	}
}

func entry(digestSeed, platform string) ocispec.Descriptor {
	d := ocispec.Descriptor{MediaType: MediaTypeOCIManifest, Digest: digest.Digest("sha256:" + strings.Repeat(digestSeed, 64)), Size: 100}
	if platform != "" {
		return withPlatform(d, platform)
	}
	return d
}

func TestChoosePlatform(t *testing.T) {
	attestation := entry("f", "")
	attestation.Platform = &ocispec.Platform{OS: "unknown", Architecture: "unknown"}
	attestation.Annotations = map[string]string{annotationDockerReferenceType: "attestation-manifest"}
	nested := entry("e", "linux/s390x")
	nested.MediaType = MediaTypeOCIIndex
	armNoVariant := entry("9", "")
	armNoVariant.Platform = &ocispec.Platform{OS: "linux", Architecture: "arm"} // means v7

	index := []ocispec.Descriptor{
		entry("1", "linux/amd64"), entry("2", "linux/arm64"), entry("3", "linux/arm/v6"),
		entry("4", "linux/arm/v7"), entry("5", "linux/amd64/v3"), attestation, nested,
	}
	tests := []struct {
		name    string
		want    string
		entries []ocispec.Descriptor
		chosen  string // digest seed
		err     string
	}{
		{"amd64", "linux/amd64", index, "1", ""},
		{"amd64 v3 exact", "linux/amd64/v3", index, "5", ""},
		{"amd64 v2 falls back to v1", "linux/amd64/v2", index, "1", ""},
		{"arm64 without variant matches v8", "linux/arm64", index, "2", ""},
		{"arm64/v8", "linux/arm64/v8", index, "2", ""},
		{"arm/v7 exact over v6", "linux/arm/v7", index, "4", ""},
		{"arm defaults to v7", "linux/arm", index, "4", ""},
		{"arm/v6 exact", "linux/arm/v6", index, "3", ""},
		{"arm/v7 falls back to v6", "linux/arm/v7", []ocispec.Descriptor{entry("1", "linux/amd64"), entry("3", "linux/arm/v6")}, "3", ""},
		{"arm without variant in index is v7", "linux/arm/v7", []ocispec.Descriptor{armNoVariant}, "9", ""},
		{"single entry without platform", "linux/amd64", []ocispec.Descriptor{entry("7", "")}, "7", ""},
		{"attestation ignored", "linux/amd64", []ocispec.Descriptor{attestation, entry("1", "linux/amd64")}, "1", ""},
		{"no match lists platforms", "linux/s390x", index, "",
			"no manifest for platform linux/s390x; the index offers linux/amd64, linux/arm64, linux/arm/v6, linux/arm/v7, linux/amd64/v3"},
		{"arm/v5 cannot run v6", "linux/arm/v5", []ocispec.Descriptor{entry("3", "linux/arm/v6")}, "",
			"no manifest for platform linux/arm/v5; the index offers linux/arm/v6"},
		{"only attestations", "linux/amd64", []ocispec.Descriptor{attestation}, "", "the index lists no image manifests"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want, err := ParsePlatform(tc.want)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ChoosePlatform(want, tc.entries)
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("error = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Digest.Encoded()[:1] != tc.chosen {
				t.Errorf("chose %s (%s), want seed %s", got.Digest, platformOf(got), tc.chosen)
			}
		})
	}
}

func TestWantedPlatformPrecedence(t *testing.T) {
	arm64Host := func() ocispec.Platform { return ocispec.Platform{OS: "linux", Architecture: "arm64"} }
	armV6Host := func() ocispec.Platform { return ocispec.Platform{OS: "linux", Architecture: "arm", Variant: "v6"} }
	tests := []struct {
		name     string
		explicit string
		env      map[string]string
		host     func() ocispec.Platform
		want     string
		from     string
		err      string
	}{
		{"host", "", nil, hostAmd64, "linux/amd64", "host", ""},
		{"host arm64", "", nil, arm64Host, "linux/arm64", "host", ""},
		{"flag beats everything", "linux/arm/v7", map[string]string{
			EnvApptainerArch: "arm64", EnvSingularityArch: "ppc64le", EnvSingularityOS: "windows"}, hostAmd64, "linux/arm/v7", "--platform", ""},
		{"SINGULARITY arch alone", "", map[string]string{EnvSingularityArch: "arm64"}, hostAmd64, "linux/arm64", EnvSingularityArch, ""},
		{"SINGULARITY arch alias", "", map[string]string{EnvSingularityArch: "aarch64"}, hostAmd64, "linux/arm64", EnvSingularityArch, ""},
		{"SINGULARITY arch with variant", "", map[string]string{EnvSingularityArch: "arm/v6"}, hostAmd64, "linux/arm/v6", EnvSingularityArch, ""},
		{"SINGULARITY arch arm defaults v7", "", map[string]string{EnvSingularityArch: "arm"}, hostAmd64, "linux/arm/v7", EnvSingularityArch, ""},
		{"SINGULARITY arch same as host keeps host variant", "", map[string]string{EnvSingularityArch: "arm"}, armV6Host, "linux/arm/v6", EnvSingularityArch, ""},
		{"SINGULARITY os alone", "", map[string]string{EnvSingularityOS: "windows"}, arm64Host, "windows/arm64", EnvSingularityOS, ""},
		{"SINGULARITY both", "", map[string]string{EnvSingularityOS: "linux", EnvSingularityArch: "s390x"}, hostAmd64, "linux/s390x",
			EnvSingularityOS + "+" + EnvSingularityArch, ""},
		{"APPTAINER beats SINGULARITY", "", map[string]string{EnvSingularityArch: "s390x", EnvApptainerArch: "ppc64le"}, hostAmd64, "linux/ppc64le", EnvApptainerArch, ""},
		{"bad flag", "linux", nil, hostAmd64, "", "", "--platform: invalid platform"},
		{"bad SINGULARITY arch", "", map[string]string{EnvSingularityArch: "arm/v7/x"}, hostAmd64, "", "", EnvSingularityArch},
		{"bad SINGULARITY os", "", map[string]string{EnvSingularityOS: "linux/amd64"}, hostAmd64, "", "", EnvSingularityOS},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, from, err := WantedPlatform(tc.explicit, "--platform", envMap(tc.env), tc.host)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error = %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := FormatPlatform(p); got != tc.want || from != tc.from {
				t.Errorf("got %s from %q, want %s from %q", got, from, tc.want, tc.from)
			}
		})
	}
}

func TestArmVariantFromCPUInfo(t *testing.T) {
	tests := []struct{ cpuinfo, goarch, want string }{
		{"processor\t: 0\nCPU architecture: 8\n", "arm64", "v8"},
		{"processor\t: 0\nCPU architecture: 8\n", "arm", "v7"},
		{"CPU architecture\t: 7\n", "arm", "v7"},
		{"CPU architecture: 6TEJ\n", "arm", "v6"},
		{"CPU architecture: 5TE\n", "arm", "v5"},
		{"CPU architecture: AArch64\n", "arm64", "v8"},
		{"model name: whatever\n", "arm", ""},
	}
	for _, tc := range tests {
		if got := armVariantFromCPUInfo(strings.NewReader(tc.cpuinfo), tc.goarch); got != tc.want {
			t.Errorf("armVariantFromCPUInfo(%q, %s) = %q, want %q", tc.cpuinfo, tc.goarch, got, tc.want)
		}
	}
}

func TestHostPlatformIsNormalised(t *testing.T) {
	p := HostPlatform()
	if p.OS == "" || p.Architecture == "" {
		t.Fatalf("HostPlatform() = %+v", p)
	}
	if FormatPlatform(NormalizePlatform(p)) != FormatPlatform(p) {
		t.Errorf("HostPlatform() = %+v is not normalised", p)
	}
}

func FuzzParsePlatform(f *testing.F) {
	for _, s := range []string{"linux/amd64", "linux/arm/v7", "linux/aarch64/8", "a/b/c/d", "/", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePlatform(s)
		if err != nil {
			return
		}
		// Normalising is idempotent and a parsed platform matches itself.
		if NormalizePlatform(p).Variant != p.Variant || !MatchPlatform(p, p) {
			t.Fatalf("ParsePlatform(%q) = %+v not stable", s, p)
		}
	})
}
