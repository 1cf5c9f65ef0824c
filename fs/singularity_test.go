package fs

import (
	"bytes"
	"encoding/json"
	"errors"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/imgfs/imgfs/index"
)

// runSh runs a script with /bin/sh in an empty environment (plus env) and
// returns stdout.
func runSh(t *testing.T, script string, env []string, args ...string) string {
	t.Helper()
	return runShell(t, []string{"/bin/sh"}, script, env, args...)
}

// testShells are the shells the scripts are run with: /bin/sh, and bash
// and busybox sh where installed (Debian's /bin/sh is dash). Apptainer
// itself sources env/*.sh and the runscript with mvdan.cc/sh, and runs the
// action files with the image's /bin/sh.
func testShells(t *testing.T) map[string][]string {
	t.Helper()
	shells := map[string][]string{"sh": {"/bin/sh"}}
	if p, err := exec.LookPath("bash"); err == nil {
		shells["bash"] = []string{p, "--posix"}
	}
	if p, err := exec.LookPath("busybox"); err == nil {
		shells["busybox"] = []string{p, "sh"}
	}
	return shells
}

// runShell runs a script with the shell argv in an empty environment
// (plus env) and returns stdout.
func runShell(t *testing.T, shell []string, script string, env []string, args ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "script.sh")
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	argv := append(slices.Clone(shell), path)
	cmd := exec.Command(argv[0], append(argv[1:], args...)...)
	cmd.Env = append([]string{"PATH=/usr/bin:/bin"}, env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("sh: %v\nstderr: %s\nscript:\n%s", err, stderr.String(), script)
	}
	return string(out)
}

// sourceEnv sources a generated env script and returns the values of the
// named variables exactly (NUL-separated printf).
func sourceEnv(t *testing.T, script string, env []string, names ...string) []string {
	t.Helper()
	probe := script + "\n"
	for _, n := range names {
		probe += `printf '%s\0' "$` + n + `"` + "\n"
	}
	out := runSh(t, probe, env)
	vals := strings.Split(out, "\x00")
	return vals[:len(vals)-1]
}

func TestDockerEnvEscaping(t *testing.T) {
	values := []string{
		`plain`,
		`with spaces  and	tab`,
		`double "quotes"`,
		`dollar $HOME and ${PATH} and $(id)`,
		`back\slash \n \\ and trailing\`,
		"back`tick` `id`",
		"multi\nline\n",
		`single 'quotes'`,
		`brace } and {`,
		`=equals=`,
		``,
		`*glob?[a]`,
		`!bang ~tilde #hash ;semi &amp |pipe <lt >gt`,
	}
	var env, names []string
	for i, v := range values {
		name := "V" + string(rune('A'+i))
		names = append(names, name)
		env = append(env, name+"="+v)
	}
	script := dockerEnvScript(env)
	got := sourceEnv(t, script, nil, names...)
	for i, v := range values {
		if got[i] != v {
			t.Errorf("%s: got %q, want %q", names[i], got[i], v)
		}
	}
	// A value already set (host, --env) wins, except for PATH.
	script = dockerEnvScript([]string{"A=image", "PATH=/image/bin:/bin", "B=image"})
	got = sourceEnv(t, script, []string{"A=host"}, "A", "PATH", "B")
	if want := []string{"host", "/image/bin:/bin", "image"}; !slices.Equal(got, want) {
		t.Errorf("precedence: got %q, want %q", got, want)
	}
	// An empty host value counts as unset (${K:-...}).
	got = sourceEnv(t, script, []string{"A="}, "A")
	if got[0] != "image" {
		t.Errorf("empty host value: %q", got[0])
	}
}

func TestDockerEnvScriptLines(t *testing.T) {
	script := dockerEnvScript([]string{
		"PATH=/usr/local/bin:/usr/bin", "LANG=C.UTF-8", "1BAD=x", "BAD-NAME=x", "=x", "BAD NAME=x",
		"NOVALUE", "DUP=first", "_ok9=y", "DUP=second", `Q=a"b$c`,
	})
	want := "#!/bin/sh\n# The image's Env (synthesized by imgfs). A value set outside the container wins, except for PATH.\n" +
		"export PATH=\"/usr/local/bin:/usr/bin\"\n" +
		"export LANG=\"${LANG:-\"C.UTF-8\"}\"\n" +
		"export NOVALUE=\"${NOVALUE:-}\"\n" +
		"export DUP=\"${DUP:-\"first\"}\"\n" +
		"export _ok9=\"${_ok9:-\"y\"}\"\n" +
		"export DUP=\"${DUP:-\"second\"}\"\n" +
		"export Q=\"${Q:-\"a\\\"b\\$c\"}\"\n"
	if script != want {
		t.Errorf("script:\n%s\nwant:\n%s", script, want)
	}
	got := sourceEnv(t, script, nil, "DUP", "NOVALUE", "Q")
	// Every entry is a line, in order, as Apptainer writes it: the first
	// value of a name given twice wins.
	if want := []string{"first", "", `a"b$c`}; !slices.Equal(got, want) {
		t.Errorf("values %q, want %q", got, want)
	}
	if s := dockerEnvScript(nil); strings.Count(s, "\n") != 2 || !strings.HasPrefix(s, "#!/bin/sh\n#") {
		t.Errorf("empty env: %q", s)
	}
}

// argv prints every argument on its own line between brackets.
var argv = []string{"printf", `[%s]\n`}

func TestOCIRunscript(t *testing.T) {
	cases := []struct {
		name       string
		entrypoint []string
		cmd        []string
		wantEP     string     // the line with ENTRYPOINT's words
		wantCmd    string     // the line with CMD's words
		runs       [][]string // argument lists to run with
		wantEval   []string   // output per run, default mode
		wantNoEval []string   // output per run, SINGULARITY_NO_EVAL=1
	}{
		{
			name:       "entrypoint only",
			entrypoint: append(slices.Clone(argv), "it's", "$HOME"),
			wantEP:     `imgfs_entrypoint='"printf" "[%s]\\n" "it'"'"'s" "\$HOME"'`,
			wantCmd:    `imgfs_cmd=''`,
			runs:       [][]string{nil, {"x y", "$HOME"}},
			wantEval:   []string{"[it's]\n[$HOME]\n", "[it's]\n[$HOME]\n[x y]\n[/h]\n"},
			wantNoEval: []string{"[it's]\n[$HOME]\n", "[it's]\n[$HOME]\n[x y]\n[$HOME]\n"},
		},
		{
			name:       "cmd only",
			cmd:        append(slices.Clone(argv), "a b", `"q"`),
			wantEP:     `imgfs_entrypoint=''`,
			wantCmd:    `imgfs_cmd='"printf" "[%s]\\n" "a b" "\"q\""'`,
			runs:       [][]string{nil, {"printf", "<%s>", "z"}},
			wantEval:   []string{"[a b]\n[\"q\"]\n", "<z>"},
			wantNoEval: []string{"[a b]\n[\"q\"]\n", "<z>"},
		},
		{
			name:       "entrypoint and cmd",
			entrypoint: argv,
			cmd:        []string{"default", "`id`"},
			wantEP:     `imgfs_entrypoint='"printf" "[%s]\\n"'`,
			wantCmd:    `imgfs_cmd='"default" "\` + "`id\\`" + `"'`,
			runs:       [][]string{nil, {"given"}},
			wantEval:   []string{"[default]\n[`id`]\n", "[given]\n"},
			wantNoEval: []string{"[default]\n[`id`]\n", "[given]\n"},
		},
		{
			name:    "neither",
			wantEP:  `imgfs_entrypoint=''`,
			wantCmd: `imgfs_cmd=''`,
			runs:    [][]string{{"printf", "%s", "direct"}},
			// Apptainer evaluates the arguments as the command line.
			wantEval:   []string{"direct"},
			wantNoEval: []string{"direct"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			script := ociRunscript(tc.entrypoint, tc.cmd)
			lines := strings.Split(script, "\n")
			if lines[0] != "#!/bin/sh" || !slices.Contains(lines, tc.wantEP) || !slices.Contains(lines, tc.wantCmd) {
				t.Errorf("runscript lacks\n%s\n%s\n%s", tc.wantEP, tc.wantCmd, script)
			}
			// Apptainer recognises the OCI runscript by this exact line.
			if !slices.Contains(lines, `eval "set ${SINGULARITY_OCI_RUN}"`) {
				t.Error(`no line eval "set ${SINGULARITY_OCI_RUN}"`)
			}
			for name, shell := range testShells(t) {
				if out, err := exec.Command(shell[0], append(shell[1:], "-n", "-c", script)...).CombinedOutput(); err != nil {
					t.Fatalf("%s: syntax: %v %s\n%s", name, err, out, script)
				}
				for i, args := range tc.runs {
					if got := runShell(t, shell, script, []string{"HOME=/h"}, args...); got != tc.wantEval[i] {
						t.Errorf("%s: run %q: got %q, want %q", name, args, got, tc.wantEval[i])
					}
					if got := runShell(t, shell, script, []string{"HOME=/h", "SINGULARITY_NO_EVAL=1"}, args...); got != tc.wantNoEval[i] {
						t.Errorf("%s: run %q with SINGULARITY_NO_EVAL: got %q, want %q", name, args, got, tc.wantNoEval[i])
					}
				}
			}
		})
	}
}

func synthConfig() ocispec.Image {
	return ocispec.Image{Config: ocispec.ImageConfig{
		Env:        []string{"PATH=/opt/bin:/usr/bin:/bin", "GREETING=hello \"world\""},
		Entrypoint: []string{"/bin/echo"},
		Cmd:        []string{"hi"},
		Labels:     map[string]string{"org.opencontainers.image.title": "test", "maintainer": "me <m@e>"},
	}, Created: &testTime}
}

func TestSynthesize(t *testing.T) {
	tree := mustMerge(t, []index.Entry{dir("etc"), reg("etc/passwd", 1), dir("usr"), sym("tmp", "var/tmp")})
	if err := Synthesize(tree, synthConfig(), SynthOptions{Logger: quietLogger()}); err != nil {
		t.Fatal(err)
	}
	checkInvariants(t, tree)
	want := map[string]uint32{
		"/.singularity.d":                              0o40755,
		"/.singularity.d/actions":                      0o40755,
		"/.singularity.d/actions/exec":                 0o100755,
		"/.singularity.d/actions/run":                  0o100755,
		"/.singularity.d/actions/shell":                0o100755,
		"/.singularity.d/actions/start":                0o100755,
		"/.singularity.d/actions/test":                 0o100755,
		"/.singularity.d/env":                          0o40755,
		"/.singularity.d/libs":                         0o40755,
		"/.singularity.d/env/01-base.sh":               0o100755,
		"/.singularity.d/env/10-docker2singularity.sh": 0o100755,
		"/.singularity.d/env/90-environment.sh":        0o100755,
		"/.singularity.d/env/94-appsbase.sh":           0o100755,
		"/.singularity.d/env/95-apps.sh":               0o100755,
		"/.singularity.d/env/99-base.sh":               0o100755,
		"/.singularity.d/env/99-runtimevars.sh":        0o100755,
		"/.singularity.d/runscript":                    0o100755,
		"/.singularity.d/startscript":                  0o100755,
		"/.singularity.d/labels.json":                  0o100644,
		"/singularity":                                 0o120777,
		"/.exec":                                       0o120777,
		"/.run":                                        0o120777,
		"/.shell":                                      0o120777,
		"/.test":                                       0o120777,
		"/environment":                                 0o120777,
		"/dev":                                         0o40755,
		"/proc":                                        0o40755,
		"/sys":                                         0o40755,
		"/home":                                        0o40755,
		"/root":                                        0o40755,
		"/var":                                         0o40755,
		"/var/tmp":                                     0o41777,
		"/etc/hosts":                                   0o100644,
		"/etc/resolv.conf":                             0o100644,
	}
	var synthesized []string
	_ = tree.Walk(func(p string, n *Node) error {
		if n.Synthetic() {
			synthesized = append(synthesized, p)
			if n.Mode() != want[p] || n.UID() != 0 || n.GID() != 0 || !n.ModTime().Equal(testTime) {
				t.Errorf("%s: mode %o uid %d gid %d mtime %v", p, n.Mode(), n.UID(), n.GID(), n.ModTime())
			}
		}
		return nil
	})
	if len(synthesized) != len(want) {
		t.Errorf("synthesized %q", synthesized)
	}
	if n, _ := tree.Lookup("tmp"); n.Type() != index.TypeSymlink {
		t.Error("the image's /tmp symlink was replaced")
	}
	content := func(p string) string {
		n, ok := tree.Lookup(p)
		if !ok {
			t.Fatalf("%s missing", p)
		}
		return string(n.Content())
	}
	var labels map[string]string
	if err := json.Unmarshal([]byte(content(".singularity.d/labels.json")), &labels); err != nil || labels["maintainer"] != "me <m@e>" || len(labels) != 4 ||
		labels["org.label-schema.build-date"] != "Thursday_4_March_2021_5:6:7_UTC" {
		t.Errorf("labels.json: %v %v", labels, err)
	}
	got := sourceEnv(t, content(".singularity.d/env/10-docker2singularity.sh"), nil, "PATH", "GREETING")
	if want := []string{"/opt/bin:/usr/bin:/bin", `hello "world"`}; !slices.Equal(got, want) {
		t.Errorf("env: %q", got)
	}
	if out := runSh(t, content(".singularity.d/runscript"), nil); out != "hi\n" {
		t.Errorf("runscript: %q", out)
	}
	if out := runSh(t, content(".singularity.d/env/99-base.sh")+"\nprintf %s \"$LD_LIBRARY_PATH\"", []string{"LD_LIBRARY_PATH=/x"}); out != "/x:/.singularity.d/libs" {
		t.Errorf("99-base.sh: %q", out)
	}
	// PS1 is set only when empty, as Apptainer's 99-base.sh does.
	// (dash gives PS1 a default: unset it for the empty case.)
	for env, want := range map[string]string{"": "Apptainer> ", "PS1=mine$ ": "mine$ "} {
		unset := ""
		if env == "" {
			unset = "unset PS1\n"
		}
		if out := runSh(t, unset+content(".singularity.d/env/99-base.sh")+"\nprintf %s \"$PS1\"", []string{env}); out != want {
			t.Errorf("99-base.sh with %q: PS1 %q, want %q", env, out, want)
		}
	}
	for _, p := range []string{"01-base.sh", "90-environment.sh"} {
		runSh(t, content(".singularity.d/env/"+p), nil)
	}
	if c := content("etc/hosts"); c != "" {
		t.Errorf("/etc/hosts: %q", c)
	}
}

func TestSynthesizeKeepsImageSingularityDir(t *testing.T) {
	own := reg(".singularity.d/runscript", 5)
	tree := mustMerge(t, []index.Entry{dir(".singularity.d"), own, dir("tmp"), dir("etc"), reg("etc/hosts", 3)})
	if err := Synthesize(tree, synthConfig(), SynthOptions{Logger: quietLogger()}); err != nil {
		t.Fatal(err)
	}
	sd, _ := tree.Lookup(".singularity.d")
	if sd.Synthetic() || len(sd.Children()) != 1 {
		t.Errorf("image /.singularity.d changed: %d children", len(sd.Children()))
	}
	if rs, _ := tree.Lookup(".singularity.d/runscript"); rs.Synthetic() || rs.Size() != 5 {
		t.Error("image runscript replaced")
	}
	if h, _ := tree.Lookup("etc/hosts"); h.Synthetic() {
		t.Error("image /etc/hosts replaced")
	}
	if r, ok := tree.Lookup("etc/resolv.conf"); !ok || !r.Synthetic() {
		t.Error("missing /etc/resolv.conf not synthesized")
	}
}

func TestSynthesizeEdgeCases(t *testing.T) {
	// /var is a symlink: no /var/tmp under it. /etc is a file: nothing in it.
	tree := mustMerge(t, []index.Entry{sym("var", "private/var"), reg("etc", 1)})
	if err := Synthesize(tree, ocispec.Image{}, SynthOptions{Logger: quietLogger()}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"var/tmp", "etc/hosts"} {
		if _, ok := tree.Lookup(p); ok {
			t.Errorf("%s synthesized under a non-directory", p)
		}
	}
	labels, _ := tree.Lookup(".singularity.d/labels.json")
	if string(labels.Content()) != "{\n\t\"org.label-schema.schema-version\": \"1.0\"\n}" {
		t.Errorf("labels.json without labels: %q", labels.Content())
	}
	rs, _ := tree.Lookup(".singularity.d/runscript")
	if !strings.Contains(string(rs.Content()), "\nimgfs_entrypoint=''\nimgfs_cmd=''\n") {
		t.Errorf("runscript without entrypoint/cmd:\n%s", rs.Content())
	}
	if n, _ := tree.Lookup("dev"); !n.ModTime().IsZero() {
		t.Error("no created time: want zero mtime")
	}

	// Empty image, options off, frozen tree.
	tree = mustMerge(t)
	if err := Synthesize(tree, ocispec.Image{}, SynthOptions{NoSingularity: true, NoStubs: true}); err != nil || tree.Len() != 1 {
		t.Errorf("all off: %v, %d nodes", err, tree.Len())
	}
	if err := Synthesize(tree, ocispec.Image{}, SynthOptions{NoSingularity: true, Logger: quietLogger()}); err != nil {
		t.Fatal(err)
	}
	if _, ok := tree.Lookup(".singularity.d"); ok {
		t.Error("NoSingularity ignored")
	}
	if _, ok := tree.Lookup("etc/resolv.conf"); !ok {
		t.Error("stubs missing on an empty image")
	}
	tree = mustMerge(t)
	tree.Freeze()
	if err := Synthesize(tree, ocispec.Image{}, SynthOptions{}); err == nil {
		t.Error("Synthesize on a frozen tree succeeded")
	}
}

func TestIsShellName(t *testing.T) {
	for s, want := range map[string]bool{"A": true, "_": true, "a_1": true, "1a": false, "": false, "a-b": false, "a b": false, "é": false} {
		if isShellName(s) != want {
			t.Errorf("isShellName(%q) != %v", s, want)
		}
	}
}

// exportedAfter runs script with the shell, in an empty environment plus
// env, and returns what it then exports.
func exportedAfter(t *testing.T, shell []string, script string, env []string) map[string]string {
	t.Helper()
	out := runShell(t, shell, script+"\nexec /usr/bin/env -0\n", env)
	vars := map[string]string{}
	for _, kv := range strings.Split(out, "\x00") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			vars[k] = v
		}
	}
	return vars
}

// envChanges is what script changes in the exported environment: the new
// or changed variables, and the removed ones with the value "<unset>".
func envChanges(t *testing.T, shell []string, script string, env []string) map[string]string {
	t.Helper()
	before := exportedAfter(t, shell, "unset PS1", env)
	after := exportedAfter(t, shell, script, env)
	out := map[string]string{}
	for k, v := range after {
		if old, ok := before[k]; !ok || old != v {
			out[k] = v
		}
	}
	for k := range before {
		if _, ok := after[k]; !ok {
			out[k] = "<unset>"
		}
	}
	return out
}

// TestEnvScripts sources each fixed env/*.sh, alone, with each shell, and
// checks what it exports (the busybox chroot of the integration tests
// sources them all, in order, through the action scripts).
func TestEnvScripts(t *testing.T) {
	const libs = "/.singularity.d/libs"
	cases := []struct {
		name, script string
		env          []string
		want         map[string]string
	}{
		// Nothing to set in an OCI image, and nothing without --app.
		{"01-base", baseEnvScript, nil, map[string]string{}},
		{"90-environment", environmentScript, nil, map[string]string{}},
		{"94-appsbase", appsBaseScript, nil, map[string]string{}},
		{"95-apps without app", appsScript, []string{"PATH=/a", "LD_LIBRARY_PATH=/l"}, map[string]string{}},
		{"95-apps empty app name", appsScript, []string{"SINGULARITY_APPNAME="}, map[string]string{}},

		// LD_LIBRARY_PATH gets the libs directory last; PS1 only when empty.
		{"99-base", base99Script, nil, map[string]string{"LD_LIBRARY_PATH": libs, "PS1": "Apptainer> "}},
		{"99-base empty", "PS1=; export PS1\n" + base99Script, []string{"LD_LIBRARY_PATH="}, map[string]string{"LD_LIBRARY_PATH": libs, "PS1": "Apptainer> "}},
		{"99-base set", "PS1='mine$ '; export PS1\n" + base99Script, []string{"LD_LIBRARY_PATH=/x:/y"}, map[string]string{"LD_LIBRARY_PATH": "/x:/y:" + libs, "PS1": "mine$ "}},

		// --env PATH handling: prefix, suffix, a whole PATH winning over
		// both; the carriers are not passed on.
		{"99-runtimevars none", runtimeVarsScript, []string{"PATH=/a:/b"}, map[string]string{}},
		{"99-runtimevars prepend", runtimeVarsScript, []string{"PATH=/a:/b", "SING_USER_DEFINED_PREPEND_PATH=/p"},
			map[string]string{"PATH": "/p:/a:/b", "SING_USER_DEFINED_PREPEND_PATH": "<unset>"}},
		{"99-runtimevars append", runtimeVarsScript, []string{"PATH=/a:/b", "SING_USER_DEFINED_APPEND_PATH=/q"},
			map[string]string{"PATH": "/a:/b:/q", "SING_USER_DEFINED_APPEND_PATH": "<unset>"}},
		{"99-runtimevars both", runtimeVarsScript, []string{"PATH=/a", "SING_USER_DEFINED_PREPEND_PATH=/p", "SING_USER_DEFINED_APPEND_PATH=/q"},
			map[string]string{"PATH": "/p:/a:/q", "SING_USER_DEFINED_PREPEND_PATH": "<unset>", "SING_USER_DEFINED_APPEND_PATH": "<unset>"}},
		{"99-runtimevars whole", runtimeVarsScript, []string{"PATH=/a", "SING_USER_DEFINED_PREPEND_PATH=/p", "SING_USER_DEFINED_PATH=/x:/y", "SING_USER_DEFINED_APPEND_PATH=/q"},
			map[string]string{"PATH": "/x:/y", "SING_USER_DEFINED_PREPEND_PATH": "<unset>", "SING_USER_DEFINED_APPEND_PATH": "<unset>", "SING_USER_DEFINED_PATH": "<unset>"}},
		{"99-runtimevars empty", runtimeVarsScript, []string{"PATH=/a", "SING_USER_DEFINED_PREPEND_PATH=", "SING_USER_DEFINED_PATH="},
			map[string]string{"SING_USER_DEFINED_PREPEND_PATH": "<unset>", "SING_USER_DEFINED_PATH": "<unset>"}},
	}
	for name, shell := range testShells(t) {
		for _, c := range cases {
			// Shells give PS1 a default, or unset an inherited one: the
			// scripts start with it unset (or set by the case's own first line).
			env := c.env
			if !slices.ContainsFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "PATH=") }) {
				env = append(slices.Clone(env), "PATH=/usr/bin:/bin")
			}
			got := envChanges(t, shell, "unset PS1\n"+c.script, env)
			if !maps.Equal(got, c.want) {
				t.Errorf("%s: %s: exports %v, want the changes %v", name, c.name, got, c.want)
			}
		}
	}
}

// TestAppsScriptUnknownApp: --app with an app the image lacks stops the
// action with Apptainer's message and status 1.
func TestAppsScriptUnknownApp(t *testing.T) {
	for name, shell := range testShells(t) {
		path := filepath.Join(t.TempDir(), "95-apps.sh")
		if err := os.WriteFile(path, []byte(appsScript), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(shell[0], append(shell[1:], "-c", `. "$1"; echo not reached`, "sh", path)...)
		cmd.Env = []string{"PATH=/usr/bin:/bin", "SINGULARITY_APPNAME=no-such-app-imgfs"}
		out, err := cmd.Output()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 || string(out) != "Could not locate the container application: no-such-app-imgfs\n" {
			t.Errorf("%s: %q, %v; want the message and exit status 1", name, out, err)
		}
	}
}
