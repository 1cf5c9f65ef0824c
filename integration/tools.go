package integration

import (
	"os"
	"os/exec"
	"testing"
)

// InCI reports whether the suite runs in CI (CI=true), where a missing tool
// is a failure rather than a reason to skip.
func InCI() bool { return os.Getenv("CI") == "true" }

// RequireTool returns the path of an external program the test needs. When
// it is missing the test is skipped locally, and fails in CI, where .ci/run
// installs it.
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if InCI() {
		t.Fatalf("%s not found (CI=true; .ci/run installs it): %v", name, err)
	}
	t.Skipf("%s not found; install it (apt-get install %s) to run this test", name, debianPackageOf(name))
	return ""
}

// debianPackageOf names the Debian package that ships a tool, for the skip message.
func debianPackageOf(tool string) string {
	switch tool {
	case "htpasswd":
		return "apache2-utils"
	case "busybox":
		return "busybox-static"
	case "getcap":
		return "libcap2-bin"
	default:
		return tool
	}
}
