package integration

// Programs run from the mount: a static busybox image, chrooted into, stands
// in for `apptainer exec|run DIR` (Apptainer is not installable here). The
// synthesized /.singularity.d must give the image's environment, run its
// entrypoint and command, and carry its labels.

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// programTimeout bounds each program run in the chroot.
const programTimeout = 30 * time.Second

// showArgs prints each argument on its own line in brackets, so that word
// boundaries and quoting are visible.
const showArgs = "#!/bin/sh\nfor a in \"$@\"; do printf '[%s]\\n' \"$a\"; done\n"

// programEnv is the image's Env: values with spaces, quotes, $, backslashes,
// backticks, '=', UTF-8, an empty value, an entry without '=', an invalid
// name (skipped) and a repeated name (the last wins).
var programEnv = []string{
	"PATH=/bin:/usr/bin",
	"SPACES=value with  two spaces",
	`QUOTES=it's "double" and 'single'`,
	"DOLLAR=$HOME ${PATH} $(id -u) $",
	`BACKSLASH=back\slash \\ \n \"`,
	"BACKTICK=`uname` and \\`",
	"EMPTY=",
	"EQUALS=a=b=c",
	"NOVALUE",
	"1INVALID=skipped",
	"DUP=first",
	"UNICODE=héllo ✓",
	"DUP=second",
}

// wantProgramEnv is what sourcing env/10-docker2singularity.sh in an empty
// environment must export.
var wantProgramEnv = map[string]string{
	"PATH":      "/bin:/usr/bin",
	"SPACES":    "value with  two spaces",
	"QUOTES":    `it's "double" and 'single'`,
	"DOLLAR":    "$HOME ${PATH} $(id -u) $",
	"BACKSLASH": `back\slash \\ \n \"`,
	"BACKTICK":  "`uname` and \\`",
	"EMPTY":     "",
	"EQUALS":    "a=b=c",
	"NOVALUE":   "",
	"DUP":       "second",
	"UNICODE":   "héllo ✓",
}

var (
	programEntrypoint = []string{"/bin/show-args", "entry word", `e$HOME"q\`}
	programCmd        = []string{"cmd one", "`c2`"}
	programLabels     = map[string]string{
		"org.opencontainers.image.title": "busybox test",
		"quote":                          `a "quoted" \ value`,
		"unicode":                        "ünïcödé",
	}
)

// busyboxImage is the host's static busybox with the applets the tests use
// as symlinks, and the show-args script.
func busyboxImage(t *testing.T) *BuiltImage {
	t.Helper()
	bb := requireStaticBusybox(t)
	entries := []Entry{
		Dir("bin"),
		{Path: "bin/busybox", Type: TypeFile, Mode: 0o755, Content: bb},
		{Path: "bin/show-args", Type: TypeFile, Mode: 0o755, Content: []byte(showArgs)},
		Dir("etc"), File("etc/hostname", "busybox-image\n"),
	}
	for _, applet := range []string{"sh", "cat", "ls", "env", "echo", "printf", "id", "uname", "test"} {
		entries = append(entries, Symlink("bin/"+applet, "busybox"))
	}
	layer := MustLayer(t, LayerSpec{Entries: entries})
	return MustImage(t, ImageSpec{
		Kind: OCI,
		Config: ocispec.ImageConfig{
			Env: programEnv, Entrypoint: programEntrypoint, Cmd: programCmd, Labels: programLabels,
		},
		Layers: []*BuiltLayer{layer},
	})
}

// requireStaticBusybox returns the host's busybox if it is statically
// linked (busybox-static), so that it runs in a chroot with no libraries.
func requireStaticBusybox(t *testing.T) []byte {
	t.Helper()
	path := RequireTool(t, "busybox")
	f, err := elf.Open(path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Skipf("%s is dynamically linked; install busybox-static", path)
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// inChroot runs argv chrooted into dir with exactly the environment env.
func inChroot(t *testing.T, dir string, env []string, argv ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), programTimeout)
	defer cancel()
	args := append([]string{dir, "/bin/env", "-i"}, env...)
	cmd := exec.CommandContext(ctx, RequireTool(t, "chroot"), append(args, argv...)...)
	cmd.Env = []string{}
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		return out.String(), &chrootError{argv: argv, err: err, stderr: stderr.String()}
	}
	return out.String(), nil
}

type chrootError struct {
	argv   []string
	err    error
	stderr string
}

func (e *chrootError) Error() string {
	return "chroot " + strings.Join(e.argv, " ") + ": " + e.err.Error() + ": " + e.stderr
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("chroot needs root")
	}
}

func TestProgramsOnMount(t *testing.T) {
	requireRoot(t)
	reg := StartRegistry(t, RegistryOptions{})
	ref := reg.PushImage(t, "programs/busybox", "v1", busyboxImage(t))
	m := mountImage(t, ref, mountOptions{})

	t.Run("shell", func(t *testing.T) {
		out, err := inChroot(t, m.Dir, nil, "/bin/sh", "-c", `cat /etc/hostname; ls /bin; echo "uid=$(id -u)"`)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(out, "busybox-image\n") || !strings.Contains(out, "show-args\n") || !strings.Contains(out, "uid=0\n") {
			t.Errorf("shell output:\n%s", out)
		}
	})

	t.Run("docker-env", func(t *testing.T) {
		// Print the environment before and after sourcing, NUL-separated,
		// with a 0x01 byte between: what sourcing added or changed must be
		// exactly the image's Env.
		out, err := inChroot(t, m.Dir, nil, "/bin/sh", "-c",
			`env -0; printf '\001'; . /.singularity.d/env/10-docker2singularity.sh && env -0`)
		if err != nil {
			t.Fatal(err)
		}
		before, after, ok := strings.Cut(out, "\x01")
		if !ok {
			t.Fatalf("no separator in %q", out)
		}
		got := changedVars(parseEnv0(before), parseEnv0(after))
		if !maps.Equal(got, wantProgramEnv) {
			t.Errorf("sourcing the env script exported\n%s\nwant\n%s", formatEnv(got), formatEnv(wantProgramEnv))
		}
	})

	t.Run("docker-env-host-wins", func(t *testing.T) {
		// Apptainer passes the host's environment: its values win, except PATH.
		out, err := inChroot(t, m.Dir, []string{"SPACES=from host", "PATH=/host/bin"}, "/bin/sh", "-c",
			`. /.singularity.d/env/10-docker2singularity.sh; printf '%s|%s' "$SPACES" "$PATH"`)
		if err != nil {
			t.Fatal(err)
		}
		if out != "from host|/bin:/usr/bin" {
			t.Errorf("got %q, want the host's SPACES and the image's PATH", out)
		}
	})

	t.Run("runscript", func(t *testing.T) {
		entry := []string{"[entry word]", `[e$HOME"q\]`}
		for _, c := range []struct {
			name string
			env  []string
			args []string
			want []string
		}{
			{"no-arguments", nil, nil, append(entry, "[cmd one]", "[`c2`]")},
			{"arguments-replace-cmd", nil, []string{"first arg", "second"}, append(entry, "[first arg]", "[second]")},
			{"no-eval-verbatim", []string{"SINGULARITY_NO_EVAL=1"}, []string{`$HOME "x"`, "a b"},
				append(entry, `[$HOME "x"]`, "[a b]")},
		} {
			t.Run(c.name, func(t *testing.T) {
				// Run the runscript as an executable (shebang, exec bit through FUSE).
				out, err := inChroot(t, m.Dir, c.env, append([]string{"/.singularity.d/runscript"}, c.args...)...)
				if err != nil {
					t.Fatal(err)
				}
				if got := strings.Split(strings.TrimSuffix(out, "\n"), "\n"); !slices.Equal(got, c.want) {
					t.Errorf("runscript %q printed\n%s\nwant\n%s", c.args, strings.Join(got, "\n"), strings.Join(c.want, "\n"))
				}
			})
		}
	})

	t.Run("labels", func(t *testing.T) {
		data, err := os.ReadFile(m.path(".singularity.d/labels.json"))
		if err != nil {
			t.Fatal(err)
		}
		var got map[string]string
		if err := json.Unmarshal(data, &got); err != nil {
			t.Fatalf("labels.json is not a JSON object of strings: %v\n%s", err, data)
		}
		if !maps.Equal(got, programLabels) {
			t.Errorf("labels.json %v, want %v", got, programLabels)
		}
	})
}

// parseEnv0 parses `env -0` output.
func parseEnv0(s string) map[string]string {
	out := map[string]string{}
	for _, kv := range strings.Split(s, "\x00") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			out[k] = v
		}
	}
	return out
}

// changedVars are the variables of after that before lacks or has otherwise.
func changedVars(before, after map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range after {
		if old, ok := before[k]; !ok || old != v {
			out[k] = v
		}
	}
	return out
}

func formatEnv(env map[string]string) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(env)) {
		b.WriteString("  " + k + "=" + strings.ReplaceAll(env[k], "\n", `\n`) + "\n")
	}
	return b.String()
}
