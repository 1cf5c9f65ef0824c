package integration

// Programs run from the mount: a static busybox image, chrooted into, stands
// in for `apptainer exec|run|shell|test|instance start DIR` (Apptainer is
// not installable here). The synthesized /.singularity.d must give the
// image's environment, run its entrypoint and command, carry its labels,
// and its action scripts must behave as Apptainer's.

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
// name (skipped) and a repeated name.
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
	"DUP":       "first", // as in a sandbox Apptainer builds: each entry is a line, the first value wins
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

// scifApps are two SCIF apps (what `apptainer run|test|exec --app NAME`
// selects): demo, with a runscript, a test, bin/, lib/ and its own
// environment scripts, which record the order they are sourced in; and
// bare, an app with nothing in it.
func scifApps() []Entry {
	script := func(p, body string) Entry {
		return Entry{Path: p, Type: TypeFile, Mode: 0o755, Content: []byte("#!/bin/sh\n" + body)}
	}
	return []Entry{
		Dir("scif"), Dir("scif/apps"), Dir("scif/apps/demo"), Dir("scif/apps/demo/scif"), Dir("scif/apps/demo/scif/env"),
		Dir("scif/apps/demo/bin"), Dir("scif/apps/demo/lib"), Dir("scif/apps/bare"),
		script("scif/apps/demo/scif/runscript", "echo demo-run\nexec /bin/show-args \"$@\"\n"),
		script("scif/apps/demo/scif/test", "echo demo-test\n/bin/show-args \"$@\"\nexit 3\n"),
		// Sourced by 95-apps.sh, after 10-docker2singularity.sh (SPACES is
		// set) and before 99-base.sh (PS1 still empty).
		script("scif/apps/demo/scif/env/01-base.sh", "export DEMO_ORDER=app-01\n"),
		script("scif/apps/demo/scif/env/90-environment.sh",
			"export DEMO_ORDER=\"$DEMO_ORDER app-90 spaces=$SPACES ps1=${PS1:-none}\"\n"),
	}
}

// busyboxImage is the host's static busybox with the applets the tests use
// as symlinks, the show-args script and the SCIF apps.
func busyboxImage(t *testing.T) *BuiltImage {
	t.Helper()
	bb := requireStaticBusybox(t)
	entries := []Entry{
		Dir("bin"),
		{Path: "bin/busybox", Type: TypeFile, Mode: 0o755, Content: bb},
		{Path: "bin/show-args", Type: TypeFile, Mode: 0o755, Content: []byte(showArgs)},
		Dir("etc"), File("etc/hostname", "busybox-image\n"),
	}
	entries = append(entries, scifApps()...)
	for _, applet := range []string{"sh", "cat", "ls", "env", "echo", "printf", "id", "uname", "test", "[", "kill", "true"} {
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

// Unwrap gives the command's error (an *exec.ExitError for its status).
func (e *chrootError) Unwrap() error { return e.err }

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

	// Apptainer runs /.singularity.d/actions/<action> (its own interpreter
	// first; for test and start without a script of the image's, the file
	// itself): each sources env/*.sh, then runs what its action runs.
	t.Run("action-exec", func(t *testing.T) {
		// Arguments reach the command as given: spaces, empty, quotes, $.
		args := []string{"a b", "", `q"uote`, "$HOME", "it's", "-n"}
		out, err := inChroot(t, m.Dir, nil, append([]string{"/.singularity.d/actions/exec", "/bin/show-args"}, args...)...)
		if err != nil {
			t.Fatal(err)
		}
		if want := "[a b]\n[]\n[q\"uote]\n[$HOME]\n[it's]\n[-n]\n"; out != want {
			t.Errorf("exec action: %q, want %q", out, want)
		}
		out, err = inChroot(t, m.Dir, nil, "/.exec", "/bin/echo", "via link")
		if err != nil || out != "via link\n" {
			t.Errorf("/.exec: %q, %v", out, err)
		}
	})
	t.Run("action-exec-env", func(t *testing.T) {
		// env/*.sh sourced: the image's Env, the libs directory, and PS1
		// set only when empty (an empty PS1 is what Apptainer gives; busybox
		// sh would set its own when unset).
		for _, c := range []struct{ ps1, want string }{
			{"PS1=", "value with  two spaces|/.singularity.d/libs|Apptainer> "},
			{"PS1=mine$ ", "value with  two spaces|/.singularity.d/libs|mine$ "},
		} {
			out, err := inChroot(t, m.Dir, []string{c.ps1}, "/.singularity.d/actions/exec", "/bin/sh", "-c", `printf '%s|%s|%s' "$SPACES" "$LD_LIBRARY_PATH" "$PS1"`)
			if err != nil {
				t.Fatal(err)
			}
			if out != c.want {
				t.Errorf("exec action with %s: %q, want %q (env/*.sh sourced in order)", c.ps1, out, c.want)
			}
		}
	})
	t.Run("env-order", func(t *testing.T) {
		// 10-docker2singularity.sh sets the image's PATH over the host's;
		// 99-runtimevars.sh, last, applies --env's PATH parts and drops
		// them; 95-apps.sh (before 99-base.sh) puts the app's bin and lib
		// first and sources the app's own scripts, after the image's Env and
		// before PS1 is set.
		show := `printf '%s|%s|%s|%s|%s|%s' "$PATH" "$LD_LIBRARY_PATH" "${SCIF_APPROOT:-none}" "${DEMO_ORDER:-none}" "$PS1" "${SING_USER_DEFINED_PREPEND_PATH:-gone}${SING_USER_DEFINED_APPEND_PATH:-gone}"`
		host := []string{"PATH=/host/bin", "LD_LIBRARY_PATH=/host/lib", "PS1=", "SING_USER_DEFINED_PREPEND_PATH=/pre", "SING_USER_DEFINED_APPEND_PATH=/post"}
		for _, c := range []struct {
			name string
			env  []string
			want string
		}{
			{"no app", nil, "/pre:/bin:/usr/bin:/post|/host/lib:/.singularity.d/libs|none|none|Apptainer> |gonegone"},
			{"app", []string{"SINGULARITY_APPNAME=demo"},
				"/pre:/scif/apps/demo/bin:/scif/apps/demo:/scif/apps/singularity:/bin:/usr/bin:/post|" +
					"/scif/apps/demo/lib:/host/lib:/.singularity.d/libs|/scif/apps/demo|" +
					"app-01 app-90 spaces=value with  two spaces ps1=none|Apptainer> |gonegone"},
			{"bare app", []string{"SINGULARITY_APPNAME=bare"},
				"/pre:/scif/apps/bare:/scif/apps/singularity:/bin:/usr/bin:/post|/host/lib:/.singularity.d/libs|/scif/apps/bare|none|Apptainer> |gonegone"},
			{"whole PATH", []string{"SING_USER_DEFINED_PATH=/only"}, "/only|/host/lib:/.singularity.d/libs|none|none|Apptainer> |gonegone"},
		} {
			out, err := inChroot(t, m.Dir, append(slices.Clone(host), c.env...), "/.singularity.d/actions/exec", "/bin/sh", "-c", show)
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			if out != c.want {
				t.Errorf("%s:\n got %q\nwant %q", c.name, out, c.want)
			}
		}
	})
	t.Run("no-apps-scripts", func(t *testing.T) {
		// Without --app, 94-appsbase.sh and 95-apps.sh (and 01-base.sh,
		// 90-environment.sh) change nothing.
		out, err := inChroot(t, m.Dir, []string{"PATH=/bin", "LD_LIBRARY_PATH=/l"}, "/bin/sh", "-c", `env -0; printf '\001'; `+
			`for f in 01-base 90-environment 94-appsbase 95-apps; do . /.singularity.d/env/$f.sh || exit 9; done; env -0`)
		if err != nil {
			t.Fatal(err)
		}
		before, after, _ := strings.Cut(out, "\x01")
		if got := changedVars(parseEnv0(before), parseEnv0(after)); len(got) != 0 {
			t.Errorf("sourcing without an app changed\n%s", formatEnv(got))
		}
		if data, err := os.ReadFile(m.path(".singularity.d/env/94-appsbase.sh")); err != nil || len(data) != 0 {
			t.Errorf("94-appsbase.sh: %q, %v; want empty (no apps)", data, err)
		}
	})
	t.Run("action-run", func(t *testing.T) {
		// Arguments replace CMD and follow ENTRYPOINT, one word each.
		out, err := inChroot(t, m.Dir, nil, "/.singularity.d/actions/run", "given", "two words", "")
		if err != nil {
			t.Fatal(err)
		}
		if want := "[entry word]\n" + `[e$HOME"q\]` + "\n[given]\n[two words]\n[]\n"; out != want {
			t.Errorf("run action: %q, want %q", out, want)
		}
		// No arguments: CMD.
		out, err = inChroot(t, m.Dir, nil, "/.run")
		if want := "[entry word]\n" + `[e$HOME"q\]` + "\n[cmd one]\n[`c2`]\n"; err != nil || out != want {
			t.Errorf("/.run: %q, %v; want %q", out, err, want)
		}
		// The root links point at the actions and runscript.
		out, err = inChroot(t, m.Dir, nil, "/singularity", "via-link")
		if err != nil || !strings.HasSuffix(out, "[via-link]\n") {
			t.Errorf("/singularity: %q, %v", out, err)
		}
		// --app: the app's runscript, with the arguments as given.
		out, err = inChroot(t, m.Dir, []string{"SINGULARITY_APPNAME=demo"}, "/.singularity.d/actions/run", "x", "y z")
		if err != nil || out != "demo-run\n[x]\n[y z]\n" {
			t.Errorf("run --app demo: %q, %v", out, err)
		}
		out, err = inChroot(t, m.Dir, []string{"SINGULARITY_APPNAME=bare"}, "/.singularity.d/actions/run")
		if want := "No Apptainer runscript for contained app: bare\n"; exitCode(err) != 1 || out != want {
			t.Errorf("run --app bare: %q, %v; want %q and status 1", out, err, want)
		}
	})
	t.Run("action-shell", func(t *testing.T) {
		// No bash in the image: sh, with SHELL naming it.
		out, err := inChroot(t, m.Dir, []string{"PS1="}, "/.shell", "-c", `printf '%s|%s|%s' "$SHELL" "$SPACES" "$PS1"`)
		if want := "/bin/sh|value with  two spaces|Apptainer> "; err != nil || out != want {
			t.Errorf("shell action: %q, %v; want %q", out, err, want)
		}
		// --shell: that program, with the arguments.
		out, err = inChroot(t, m.Dir, []string{"SINGULARITY_SHELL=/bin/show-args"}, "/.singularity.d/actions/shell", "-c", "a b")
		if err != nil || out != "[-c]\n[a b]\n" {
			t.Errorf("shell action with SINGULARITY_SHELL: %q, %v", out, err)
		}
	})
	t.Run("action-test", func(t *testing.T) {
		// No test in the image: Apptainer's message, and success.
		out, err := inChroot(t, m.Dir, nil, "/.test")
		if err != nil {
			t.Fatal(err)
		}
		if want := "No test found in container, executing /bin/sh -c true\n"; out != want {
			t.Errorf("test action: %q, want %q", out, want)
		}
		// A test script (the app's): run with the arguments; its status is
		// the action's.
		out, err = inChroot(t, m.Dir, []string{"SINGULARITY_APPNAME=demo"}, "/.singularity.d/actions/test", "arg one")
		if exitCode(err) != 3 || out != "demo-test\n[arg one]\n" {
			t.Errorf("test --app demo: %q, %v; want the test's output and its status 3", out, err)
		}
		out, err = inChroot(t, m.Dir, []string{"SINGULARITY_APPNAME=bare"}, "/.singularity.d/actions/test")
		if want := "No tests for contained app: bare\n"; exitCode(err) != 1 || out != want {
			t.Errorf("test --app bare: %q, %v; want %q and status 1", out, err, want)
		}
		out, err = inChroot(t, m.Dir, []string{"SINGULARITY_APPNAME=missing"}, "/.singularity.d/actions/test")
		if want := "Could not locate the container application: missing\n"; exitCode(err) != 1 || out != want {
			t.Errorf("test --app missing: %q, %v; want %q and status 1", out, err, want)
		}
	})
	t.Run("action-start", func(t *testing.T) {
		// start signals its PID 1 to continue: run it as PID 1 of its own
		// PID namespace, never the host's init.
		unshare := RequireTool(t, "unshare")
		ctx, cancel := context.WithTimeout(context.Background(), programTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, unshare, "--pid", "--fork", RequireTool(t, "chroot"), m.Dir,
			"/bin/env", "-i", "/bin/sh", "-c", `/.singularity.d/actions/start && echo started`)
		out, err := cmd.CombinedOutput()
		if err != nil || string(out) != "started\n" {
			t.Errorf("start action: %q, %v (want it to exec the startscript, which does nothing, and exit 0)", out, err)
		}
		script, err := inChroot(t, m.Dir, nil, "/.singularity.d/startscript", "ignored")
		if err != nil || script != "" {
			t.Errorf("startscript: %q, %v; want nothing and status 0", script, err)
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
		// The image's labels, and the build labels Apptainer adds that can
		// be derived from the image (fs.labelsJSON).
		want := maps.Clone(programLabels)
		want["org.label-schema.schema-version"] = "1.0"
		want["org.label-schema.build-arch"] = "amd64"
		want["org.label-schema.usage.singularity.deffile.bootstrap"] = "docker"
		want["org.label-schema.usage.singularity.deffile.from"] = ref
		want["org.opencontainers.image.base.name"] = ref
		_, dgst, _ := strings.Cut(ref, "@")
		want["org.opencontainers.image.base.digest"] = dgst
		// The image's creation time, in Apptainer's format (fs tests it).
		if created := got["org.label-schema.build-date"]; strings.HasSuffix(created, "_UTC") {
			want["org.label-schema.build-date"] = created
		}
		if !maps.Equal(got, want) {
			t.Errorf("labels.json %v\nwant %v", got, want)
		}
		def, err := os.ReadFile(m.path(".singularity.d/Singularity"))
		if err != nil || string(def) != "bootstrap: docker\nfrom: "+ref+"\n\n" {
			t.Errorf("/.singularity.d/Singularity: %q, %v", def, err)
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
