package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// binDir holds the imgfs binary built for this test run.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "imgfs-integration-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration: temp dir:", err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	if left := checkNoMountsLeft(); code == 0 {
		code = left
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

var (
	buildOnce sync.Once
	buildErr  error
)

// imgfsBinary builds ./cmd/imgfs once per run (only when a test needs it,
// so harness-only runs stay fast) and returns its path.
func imgfsBinary(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(binDir, "imgfs")
	buildOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		var out bytes.Buffer
		cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/imgfs")
		cmd.Dir = ".." // module root
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/imgfs: %v\n%s", err, out.String())
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return bin
}
