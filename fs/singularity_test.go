package fs

import (
	"bytes"
	"encoding/json"
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
	path := filepath.Join(t.TempDir(), "script.sh")
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/bin/sh", append([]string{path}, args...)...)
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
	want := "#!/bin/sh\n" +
		"export PATH=\"/usr/local/bin:/usr/bin\"\n" +
		"export LANG=\"${LANG:-\"C.UTF-8\"}\"\n" +
		"export NOVALUE=\"${NOVALUE:-}\"\n" +
		"export _ok9=\"${_ok9:-\"y\"}\"\n" +
		"export DUP=\"${DUP:-\"second\"}\"\n" +
		"export Q=\"${Q:-\"a\\\"b\\$c\"}\"\n"
	if script != want {
		t.Errorf("script:\n%s\nwant:\n%s", script, want)
	}
	got := sourceEnv(t, script, nil, "DUP", "NOVALUE", "Q")
	if want := []string{"second", "", `a"b$c`}; !slices.Equal(got, want) {
		t.Errorf("values %q, want %q", got, want)
	}
	if s := dockerEnvScript(nil); s != "#!/bin/sh\n" {
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
		wantEP     string     // the OCI_ENTRYPOINT line
		wantCmd    string     // the OCI_CMD line
		runs       [][]string // argument lists to run with
		wantEval   []string   // output per run, default mode
		wantNoEval []string   // output per run, SINGULARITY_NO_EVAL=1
	}{
		{
			name:       "entrypoint only",
			entrypoint: append(slices.Clone(argv), "it's", "$HOME"),
			wantEP:     `OCI_ENTRYPOINT='"printf" "[%s]\\n" "it'"'"'s" "\$HOME"'`,
			wantCmd:    `OCI_CMD=''`,
			runs:       [][]string{nil, {"x y", "$HOME"}},
			wantEval:   []string{"[it's]\n[$HOME]\n", "[it's]\n[$HOME]\n[x y]\n[/h]\n"},
			wantNoEval: []string{"[it's]\n[$HOME]\n", "[it's]\n[$HOME]\n[x y]\n[$HOME]\n"},
		},
		{
			name:       "cmd only",
			cmd:        append(slices.Clone(argv), "a b", `"q"`),
			wantEP:     `OCI_ENTRYPOINT=''`,
			wantCmd:    `OCI_CMD='"printf" "[%s]\\n" "a b" "\"q\""'`,
			runs:       [][]string{nil, {"printf", "<%s>", "z"}},
			wantEval:   []string{"[a b]\n[\"q\"]\n", "<z>"},
			wantNoEval: []string{"[a b]\n[\"q\"]\n", "<z>"},
		},
		{
			name:       "entrypoint and cmd",
			entrypoint: argv,
			cmd:        []string{"default", "`id`"},
			wantEP:     `OCI_ENTRYPOINT='"printf" "[%s]\\n"'`,
			wantCmd:    `OCI_CMD='"default" "\` + "`id\\`" + `"'`,
			runs:       [][]string{nil, {"given"}},
			wantEval:   []string{"[default]\n[`id`]\n", "[given]\n"},
			wantNoEval: []string{"[default]\n[`id`]\n", "[given]\n"},
		},
		{
			name:    "neither",
			wantEP:  `OCI_ENTRYPOINT=''`,
			wantCmd: `OCI_CMD=''`,
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
			if lines[0] != "#!/bin/sh" || lines[1] != tc.wantEP || lines[2] != tc.wantCmd {
				t.Errorf("head:\n%s\n%s\n%s\nwant:\n%s\n%s", lines[0], lines[1], lines[2], tc.wantEP, tc.wantCmd)
			}
			// Apptainer recognises the OCI runscript by this exact line.
			if !slices.Contains(lines, `eval "set ${SINGULARITY_OCI_RUN}"`) {
				t.Error(`no line eval "set ${SINGULARITY_OCI_RUN}"`)
			}
			if out, err := exec.Command("/bin/sh", "-n", "-c", script).CombinedOutput(); err != nil {
				t.Fatalf("syntax: %v %s\n%s", err, out, script)
			}
			for i, args := range tc.runs {
				if got := runSh(t, script, []string{"HOME=/h"}, args...); got != tc.wantEval[i] {
					t.Errorf("run %q: got %q, want %q", args, got, tc.wantEval[i])
				}
				if got := runSh(t, script, []string{"HOME=/h", "SINGULARITY_NO_EVAL=1"}, args...); got != tc.wantNoEval[i] {
					t.Errorf("run %q with SINGULARITY_NO_EVAL: got %q, want %q", args, got, tc.wantNoEval[i])
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
		"/.singularity.d/env":                          0o40755,
		"/.singularity.d/libs":                         0o40755,
		"/.singularity.d/env/01-base.sh":               0o100755,
		"/.singularity.d/env/10-docker2singularity.sh": 0o100755,
		"/.singularity.d/env/90-environment.sh":        0o100755,
		"/.singularity.d/env/99-base.sh":               0o100755,
		"/.singularity.d/runscript":                    0o100755,
		"/.singularity.d/labels.json":                  0o100644,
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
	if err := json.Unmarshal([]byte(content(".singularity.d/labels.json")), &labels); err != nil || labels["maintainer"] != "me <m@e>" || len(labels) != 2 {
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
	if string(labels.Content()) != "{}" {
		t.Errorf("labels.json without labels: %q", labels.Content())
	}
	rs, _ := tree.Lookup(".singularity.d/runscript")
	if !strings.Contains(string(rs.Content()), "\nOCI_ENTRYPOINT=''\nOCI_CMD=''\n") {
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
