package main

import (
	"bytes"
	"context"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/imgfs/imgfs/manifest"
)

// testRegistryHost is what references in these tests name; runCLI points
// it at the test's in-memory registry, over plain HTTP, and shows that
// registry's real address as this one in the outputs.
const testRegistryHost = "127.0.0.1:5000"

// runCLI runs one command line against a fresh app with the given
// environment (and a cache dir of the test's) and returns the exit code and
// outputs.
func runCLI(t *testing.T, env map[string]string, src *memSource, args ...string) (int, string, string) {
	t.Helper()
	env = maps.Clone(env)
	if env == nil {
		env = map[string]string{}
	}
	if _, ok := env["IMGFS_CACHE_DIR"]; !ok {
		env["IMGFS_CACHE_DIR"] = t.TempDir()
	}
	if src != nil {
		if _, ok := env["IMGFS_PLAIN_HTTP"]; !ok {
			env["IMGFS_PLAIN_HTTP"] = "1"
		}
		args = slices.Clone(args)
		for i := range args {
			args[i] = strings.ReplaceAll(args[i], testRegistryHost, src.Host())
		}
	}
	var stdout, stderr bytes.Buffer
	a := newApp(&stdout, &stderr, func(k string) string { return env[k] })
	code := run(context.Background(), a, args)
	out, errOut := stdout.String(), stderr.String()
	if src != nil {
		out = strings.ReplaceAll(out, src.Host(), testRegistryHost)
		errOut = strings.ReplaceAll(errOut, src.Host(), testRegistryHost)
	}
	return code, out, errOut
}

func TestUsageErrorsShowHint(t *testing.T) {
	tests := []struct {
		args    []string
		env     map[string]string
		message string
		hint    string
	}{
		{[]string{"inspect"}, nil, "imgfs: imgfs inspect: missing IMAGE\n", "Run 'imgfs inspect --help' for usage.\n"},
		{[]string{"inspect", "a", "b"}, nil, `imgfs: imgfs inspect: unexpected argument "b"` + "\n", "Run 'imgfs inspect --help' for usage.\n"},
		{[]string{"--bogus"}, nil, "imgfs: unknown flag: --bogus\n", "Run 'imgfs --help' for usage.\n"},
		{[]string{"inspect", "--nope", "x"}, nil, "imgfs: unknown flag: --nope\n", "Run 'imgfs inspect --help' for usage.\n"},
		{[]string{"nosuchcommand"}, nil, `imgfs: unknown command "nosuchcommand" for "imgfs"` + "\n", "Run 'imgfs --help' for usage.\n"},
		{[]string{"inspec", "x"}, nil, `imgfs: unknown command "inspec" for "imgfs"; did you mean inspect?` + "\n", "Run 'imgfs --help' for usage.\n"},
		{[]string{"inspect", "--platform", "linux", "x"}, nil, `imgfs: invalid platform "linux"`, "Run 'imgfs inspect --help' for usage.\n"},
		{[]string{"inspect", "x"}, map[string]string{"IMGFS_PLAIN_HTTP": "maybe"}, `imgfs: IMGFS_PLAIN_HTTP="maybe": want true or false`, "Run 'imgfs inspect --help' for usage.\n"},
		{[]string{"inspect", "x"}, map[string]string{"IMGFS_CACHE_SIZE": "lots"}, `imgfs: invalid --cache-size "lots"`, "Run 'imgfs inspect --help' for usage.\n"},
		{[]string{"inspect", "--json", "--raw", "x"}, nil, "imgfs: --json and --raw cannot be used together\n", "Run 'imgfs inspect --help' for usage.\n"},
		{[]string{"version", "extra"}, nil, `imgfs: imgfs version: unexpected argument "extra"` + "\n", "Run 'imgfs version --help' for usage.\n"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, stdout, stderr := runCLI(t, tc.env, newMemSource(t), tc.args...)
			if code != exitUsage {
				t.Errorf("exit code %d, want %d", code, exitUsage)
			}
			if stdout != "" {
				t.Errorf("stdout %q", stdout)
			}
			if !strings.HasPrefix(stderr, tc.message) || !strings.HasSuffix(stderr, tc.hint) {
				t.Errorf("stderr:\n%s\nwant prefix %q and suffix %q", stderr, tc.message, tc.hint)
			}
			if n := strings.Count(stderr, "\n"); n != 2 {
				t.Errorf("stderr has %d lines, want error + hint:\n%s", n, stderr)
			}
		})
	}
}

func TestRuntimeErrorHasNoHint(t *testing.T) {
	code, _, stderr := runCLI(t, nil, newMemSource(t), "inspect", "127.0.0.1:5000/missing:v1")
	if code != exitNotFound {
		t.Errorf("exit code %d", code)
	}
	if !strings.HasPrefix(stderr, "imgfs: manifest 127.0.0.1:5000/missing:v1: registry answered 404 Not Found") || strings.Contains(stderr, "--help") {
		t.Errorf("stderr:\n%s", stderr)
	}
	if strings.Count(stderr, "\n") != 1 {
		t.Errorf("want one line:\n%s", stderr)
	}
}

func TestVersion(t *testing.T) {
	old := version
	version = "v1.2.3"
	t.Cleanup(func() { version = old })
	code, stdout, _ := runCLI(t, nil, nil, "version")
	if code != 0 || !strings.HasPrefix(stdout, "imgfs v1.2.3 (go") {
		t.Errorf("version: %d %q", code, stdout)
	}
	code, stdout2, _ := runCLI(t, nil, nil, "--version")
	if code != 0 || stdout2 != stdout {
		t.Errorf("--version: %d %q, want what imgfs version prints, %q", code, stdout2, stdout)
	}
}

func TestHelpMentionsEnvironment(t *testing.T) {
	code, stdout, _ := runCLI(t, nil, nil, "inspect", "--help")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"imgfs inspect IMAGE", "--platform", "[IMGFS_PLATFORM]", "[IMGFS_CACHE_DIR]", "--json", "--raw", "Examples:"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("help lacks %q:\n%s", want, stdout)
		}
	}
}

// setupApp parses a command line without running a command and returns the
// app and the inspect command, to check how flags and environment combine.
func setupApp(t *testing.T, env map[string]string, args ...string) (*app, *cobra.Command) {
	t.Helper()
	a := newApp(&bytes.Buffer{}, &bytes.Buffer{}, func(k string) string { return env[k] })
	root := newRootCommand(a)
	cmd, rest, err := root.Find(append([]string{"inspect"}, args...))
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.ParseFlags(rest); err != nil {
		t.Fatal(err)
	}
	if err := a.setup(cmd); err != nil {
		t.Fatal(err)
	}
	return a, cmd
}

func TestFlagsAndEnvironment(t *testing.T) {
	t.Run("defaults", func(t *testing.T) {
		a, cmd := setupApp(t, map[string]string{"HOME": "/home/u"})
		if a.flags.cacheDir != "/home/u/.cache/imgfs" || a.flags.cacheSizeBytes != 10<<30 {
			t.Errorf("cache %q %d", a.flags.cacheDir, a.flags.cacheSizeBytes)
		}
		if a.logger.Enabled(context.Background(), -4) || a.logger.Enabled(context.Background(), 0) || !a.logger.Enabled(context.Background(), 4) {
			t.Error("default level is not Warn")
		}
		opts, err := a.imageOptions(cmd)
		if err != nil {
			t.Fatal(err)
		}
		if opts.PlatformFrom != "host" || opts.Registry.PlainHTTP || opts.Registry.Insecure || opts.CacheDir != "/home/u/.cache/imgfs" {
			t.Errorf("options %+v", opts)
		}
		if !strings.HasPrefix(opts.Registry.UserAgent, "imgfs/") {
			t.Errorf("user agent %q", opts.Registry.UserAgent)
		}
	})
	t.Run("XDG_CACHE_HOME", func(t *testing.T) {
		a, _ := setupApp(t, map[string]string{"HOME": "/home/u", "XDG_CACHE_HOME": "/xdg"})
		if a.flags.cacheDir != "/xdg/imgfs" {
			t.Errorf("cache dir %q", a.flags.cacheDir)
		}
	})
	t.Run("no HOME", func(t *testing.T) {
		a, _ := setupApp(t, nil)
		if _, err := a.cacheDir(); err == nil || !strings.Contains(err.Error(), "--cache-dir") {
			t.Errorf("cacheDir error %v", err)
		}
	})
	t.Run("environment", func(t *testing.T) {
		a, cmd := setupApp(t, map[string]string{
			"IMGFS_PLAIN_HTTP": "yes", "IMGFS_INSECURE": "1", "IMGFS_CACHE_DIR": "/c", "IMGFS_CACHE_SIZE": "512MiB",
			"IMGFS_VERBOSE": "true", "IMGFS_PLATFORM": "linux/arm64",
		})
		opts, err := a.imageOptions(cmd)
		if err != nil {
			t.Fatal(err)
		}
		if !opts.Registry.PlainHTTP || !opts.Registry.Insecure || opts.CacheDir != "/c" || a.flags.cacheSizeBytes != 512<<20 {
			t.Errorf("flags %+v", a.flags)
		}
		if manifest.FormatPlatform(opts.Platform) != "linux/arm64" || opts.PlatformFrom != "IMGFS_PLATFORM" {
			t.Errorf("platform %v from %q", opts.Platform, opts.PlatformFrom)
		}
		if !a.logger.Enabled(context.Background(), 0) || a.logger.Enabled(context.Background(), -4) {
			t.Error("IMGFS_VERBOSE did not select Info")
		}
	})
	t.Run("flags beat environment", func(t *testing.T) {
		a, cmd := setupApp(t, map[string]string{"IMGFS_PLATFORM": "linux/arm64", "IMGFS_CACHE_DIR": "/env", "IMGFS_PLAIN_HTTP": "1"},
			"--platform", "linux/arm/v7", "--cache-dir", "/flag", "--plain-http=false", "--debug")
		opts, err := a.imageOptions(cmd)
		if err != nil {
			t.Fatal(err)
		}
		if manifest.FormatPlatform(opts.Platform) != "linux/arm/v7" || opts.PlatformFrom != "--platform" || opts.CacheDir != "/flag" || opts.Registry.PlainHTTP {
			t.Errorf("platform %v cache %q plain %v", opts.Platform, opts.CacheDir, opts.Registry.PlainHTTP)
		}
		if !a.logger.Enabled(context.Background(), -4) {
			t.Error("--debug did not select Debug")
		}
	})
}

func TestParseSize(t *testing.T) {
	good := map[string]int64{
		"0": 0, "4096": 4096, "10B": 10, "1KiB": 1024, "1k": 1024, "1K": 1024, "1KB": 1000, "512MiB": 512 << 20,
		"1GiB": 1 << 30, "1 GiB": 1 << 30, "1.5GiB": 3 << 29, "2G": 2 << 30, "2gb": 2e9, "1TiB": 1 << 40, "1tb": 1e12,
	}
	for in, want := range good {
		got, err := parseSize(in)
		if err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "GiB", "lots", "1XB", "1.2.3G", "-1G", "99999999999TiB"} {
		if n, err := parseSize(bad); err == nil {
			t.Errorf("parseSize(%q) = %d, want an error", bad, n)
		}
	}
}

// Mount's own flags marked withEnv read IMGFS_<FLAG>; a bad value there is a
// usage error naming the variable, before any registry is contacted.
func TestMountFlagsFromEnvironment(t *testing.T) {
	code, _, stderr := runCLI(t, map[string]string{"IMGFS_PREFETCH": "sometimes"}, nil,
		"mount", "example.invalid/x:1", t.TempDir())
	if code == 0 || !strings.Contains(stderr, `invalid --prefetch "sometimes"`) {
		t.Fatalf("IMGFS_PREFETCH not applied: code %d, stderr %q", code, stderr)
	}
	code, _, stderr = runCLI(t, map[string]string{"IMGFS_STATS": "maybe"}, nil,
		"mount", "example.invalid/x:1", t.TempDir())
	if code == 0 || !strings.Contains(stderr, "IMGFS_STATS") {
		t.Fatalf("IMGFS_STATS not checked: code %d, stderr %q", code, stderr)
	}
}
