package fs

import (
	"encoding/json"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"time"
)

// The shell scripts of the synthesized /.singularity.d. They are imgfs's
// own, written from Apptainer's documented behaviour and from what
// Apptainer 1.5 does with a sandbox it built from an OCI image: the same
// files at the same paths, doing the same thing (same environment, same
// order, same arguments, same messages and exit codes), so that Apptainer
// and users cannot tell a mount from such a sandbox. How Apptainer uses
// them:
//
//   - It sources env/*.sh itself, in name order, with its built-in shell
//     interpreter (mvdan.cc/sh), before every action: they must stay
//     plain POSIX sh. env/99-runtimevars.sh is replaced by Apptainer's own
//     at run time; ours does the same for other runtimes and for
//     /.singularity.d/actions/*.
//   - It interprets the runscript itself (no /bin/sh needed in the image)
//     when the runscript has the line eval "set ${SINGULARITY_OCI_RUN}".
//   - It runs actions/test and actions/start with the image's /bin/sh
//     when the image has no test and no startscript (and older runtimes
//     run every action file): they source env/*.sh first, as
//     sourceEnvScripts does.
//
// The action scripts' messages are Apptainer's, word for word: they are
// part of the behaviour ("No test found in container, ...").

// sourceEnvScripts is the start of every action script: the container's
// environment, from /.singularity.d/env/*.sh in name order (the numbers in
// the names give it), regular files only. The loop variable is unset
// afterwards and named so as not to meet a variable of the environment.
const sourceEnvScripts = `# The container's environment first: every env/*.sh, in name order.
for __imgfs_env_script in /.singularity.d/env/*.sh; do
    if [ -f "$__imgfs_env_script" ]; then
        . "$__imgfs_env_script"
    fi
done
unset __imgfs_env_script
`

// actionScript is an action script: the comment (one or more lines,
// without "#"), first (what comes before the environment, if anything),
// the environment, then body.
func actionScript(comment, first, body string) string {
	var b strings.Builder
	b.WriteString("#!/bin/sh\n")
	for _, line := range strings.Split(strings.TrimSpace(comment), "\n") {
		b.WriteString(strings.TrimRight("# "+line, " ") + "\n")
	}
	b.WriteString("\n")
	if first != "" {
		b.WriteString(first + "\n")
	}
	b.WriteString(sourceEnvScripts)
	b.WriteString("\n")
	b.WriteString(body)
	return b.String()
}

// actionExec is /.singularity.d/actions/exec (and /.exec).
var actionExec = actionScript(`
/.singularity.d/actions/exec (also /.exec), synthesized by imgfs.
apptainer exec IMAGE COMMAND [ARG...]: COMMAND with its arguments, as given,
in the container's environment.
`, "", `exec "$@"
`)

// actionRun is /.singularity.d/actions/run (and /.run).
var actionRun = actionScript(`
/.singularity.d/actions/run (also /.run), synthesized by imgfs.
apptainer run IMAGE [ARG...]: the runscript with the arguments. With --app
NAME (SINGULARITY_APPNAME), that SCIF app's runscript, or else the one of
the catch-all app "singularity". Without a runscript, /bin/sh.
`, "", `if [ -n "${SINGULARITY_APPNAME:-}" ]; then
    for __imgfs_script in "/scif/apps/$SINGULARITY_APPNAME/scif/runscript" /scif/apps/singularity/scif/runscript; do
        [ -x "$__imgfs_script" ] && exec "$__imgfs_script" "$@"
    done
    echo "No Apptainer runscript for contained app: $SINGULARITY_APPNAME"
    exit 1
fi

[ -x /.singularity.d/runscript ] && exec /.singularity.d/runscript "$@"

echo "No Apptainer runscript found, executing /bin/sh"
exec /bin/sh "$@"
`)

// actionShell is /.singularity.d/actions/shell (and /.shell).
var actionShell = actionScript(`
/.singularity.d/actions/shell (also /.shell), synthesized by imgfs.
apptainer shell IMAGE: $SINGULARITY_SHELL (--shell) when it names an
executable; else bash without its rc files and with an Apptainer prompt;
else sh. SHELL names the shell started.
`, "", `if [ -n "${SINGULARITY_SHELL:-}" ] && [ -x "$SINGULARITY_SHELL" ]; then
    exec "$SINGULARITY_SHELL" "$@"
    echo "ERROR: Failed running shell as defined by '\$SINGULARITY_SHELL'" >&2
    exit 1
fi

if [ -x /bin/bash ]; then
    export SHELL=/bin/bash PS1='Apptainer '"$APPTAINER_NAME"':\w> '
    exec /bin/bash --norc "$@"
fi

if [ -x /bin/sh ]; then
    export SHELL=/bin/sh
    exec /bin/sh "$@"
fi

echo "ERROR: /bin/sh does not exist in container" >&2
exit 1
`)

// actionStart is /.singularity.d/actions/start. Its SIGCONT comes before
// the environment: a runtime may hold the instance's PID 1 stopped until
// the start action runs.
var actionStart = actionScript(`
/.singularity.d/actions/start, synthesized by imgfs.
apptainer instance start IMAGE NAME: first wake the instance's init (PID 1
of the container, which runtimes may keep stopped until now), then the
startscript, if any.
`, "kill -s CONT 1\n", `[ -x /.singularity.d/startscript ] && exec /.singularity.d/startscript
exit 0
`)

// actionTest is /.singularity.d/actions/test (and /.test).
var actionTest = actionScript(`
/.singularity.d/actions/test (also /.test), synthesized by imgfs.
apptainer test IMAGE [ARG...]: the image's test script with the arguments.
With --app NAME (SINGULARITY_APPNAME), that SCIF app's test, or else the one
of the catch-all app "singularity". An image without a test passes.
`, "", `if [ -n "${SINGULARITY_APPNAME:-}" ]; then
    for __imgfs_script in "/scif/apps/$SINGULARITY_APPNAME/scif/test" /scif/apps/singularity/scif/test; do
        [ -x "$__imgfs_script" ] && exec "$__imgfs_script" "$@"
    done
    echo "No tests for contained app: $SINGULARITY_APPNAME"
    exit 1
fi

[ -x /.singularity.d/test ] && exec /.singularity.d/test "$@"

echo "No test found in container, executing /bin/sh -c true"
exec /bin/sh -c true
`)

// baseEnvScript is env/01-base.sh, the first environment script.
const baseEnvScript = `#!/bin/sh
# /.singularity.d/env/01-base.sh, synthesized by imgfs: sourced first, before
# the image's own environment. Nothing to set for an image converted from OCI.
`

// environmentScript is env/90-environment.sh (and /environment).
const environmentScript = `#!/bin/sh
# /.singularity.d/env/90-environment.sh (also /environment), synthesized by
# imgfs: where the %environment section of a definition file would be. An
# image converted from OCI has none; its Env is in 10-docker2singularity.sh.
`

// appsBaseScript is env/94-appsbase.sh: where Apptainer lists the SCIF
// apps of a definition file. An OCI image has none: empty.
const appsBaseScript = ""

// appsScript is env/95-apps.sh: the environment of the SCIF app named
// with --app.
const appsScript = `#!/bin/sh
# /.singularity.d/env/95-apps.sh, synthesized by imgfs.
# With --app NAME (SINGULARITY_APPNAME): the environment of that SCIF app,
# /scif/apps/NAME. For what NAME lacks (bin, lib, scif/env scripts) the
# catch-all app /scif/apps/singularity stands in. No app named: nothing.
if [ -n "${SINGULARITY_APPNAME:-}" ]; then
    export SINGULARITY_APPNAME
    if [ ! -d "/scif/apps/$SINGULARITY_APPNAME/" ]; then
        echo "Could not locate the container application: $SINGULARITY_APPNAME"
        exit 1
    fi
    SCIF_APPS=/scif/apps
    SCIF_APPROOT="/scif/apps/$SINGULARITY_APPNAME"
    export SCIF_APPS SCIF_APPROOT
    PATH="/scif/apps/$SINGULARITY_APPNAME:/scif/apps/singularity:$PATH"

    # The first app (NAME, else the catch-all) that has bin/ puts it in
    # front of PATH; the same for lib/ and LD_LIBRARY_PATH.
    for __imgfs_app in "/scif/apps/$SINGULARITY_APPNAME" /scif/apps/singularity; do
        if [ -d "$__imgfs_app/bin" ]; then
            PATH="$__imgfs_app/bin:$PATH"
            break
        fi
    done
    for __imgfs_app in "/scif/apps/$SINGULARITY_APPNAME" /scif/apps/singularity; do
        if [ -d "$__imgfs_app/lib" ]; then
            export LD_LIBRARY_PATH="$__imgfs_app/lib:$LD_LIBRARY_PATH"
            break
        fi
    done

    # Then the app's own environment scripts, each from NAME or else from
    # the catch-all.
    for __imgfs_part in 01-base.sh 90-environment.sh; do
        for __imgfs_app in "/scif/apps/$SINGULARITY_APPNAME" /scif/apps/singularity; do
            if [ -f "$__imgfs_app/scif/env/$__imgfs_part" ]; then
                . "$__imgfs_app/scif/env/$__imgfs_part"
                break
            fi
        done
    done
    unset __imgfs_app __imgfs_part
    export PATH
fi
`

// base99Script is env/99-base.sh.
const base99Script = `#!/bin/sh
# /.singularity.d/env/99-base.sh, synthesized by imgfs: sourced after the
# image's environment.
# Apptainer binds host libraries (--nv, --rocm) into /.singularity.d/libs:
# they come after whatever LD_LIBRARY_PATH already lists.
export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}/.singularity.d/libs"
# A prompt for shells, unless one is set already (an empty one counts as
# none).
export PS1="${PS1:-Apptainer> }"
`

// runtimeVarsScript is env/99-runtimevars.sh.
const runtimeVarsScript = `#!/bin/sh
# /.singularity.d/env/99-runtimevars.sh, synthesized by imgfs: sourced last.
# PATH given with --env (APPTAINERENV_PATH, APPTAINERENV_PREPEND_PATH,
# APPTAINERENV_APPEND_PATH) arrives as SING_USER_DEFINED_PATH,
# SING_USER_DEFINED_PREPEND_PATH and SING_USER_DEFINED_APPEND_PATH, since the
# scripts before would override PATH. Applied here: the prefix, the suffix,
# and a whole PATH, which replaces both. None is passed on.
PATH="${SING_USER_DEFINED_PREPEND_PATH:+$SING_USER_DEFINED_PREPEND_PATH:}$PATH"
PATH="$PATH${SING_USER_DEFINED_APPEND_PATH:+:$SING_USER_DEFINED_APPEND_PATH}"
PATH="${SING_USER_DEFINED_PATH:-$PATH}"
unset SING_USER_DEFINED_PREPEND_PATH SING_USER_DEFINED_APPEND_PATH SING_USER_DEFINED_PATH
export PATH
`

// startScript is /.singularity.d/startscript.
const startScript = `#!/bin/sh
# /.singularity.d/startscript, synthesized by imgfs: what an instance runs
# when it starts (apptainer instance start). An OCI image defines nothing to
# run: the instance just holds its namespaces until it is stopped.
`

// escapeDoubleQuoted escapes the characters that stay special inside a
// double-quoted shell word: \ " $ and backtick.
func escapeDoubleQuoted(s string) string {
	if !strings.ContainsAny(s, "\\\"$`") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\', '"', '$', '`':
			b.WriteByte('\\')
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// singleQuoted quotes s as one single-quoted shell word.
func singleQuoted(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'"'"'`) + "'"
}

// quotedArgs renders args as double-quoted words separated by spaces, \ "
// $ and backtick escaped: evaluated by the shell, they give args back.
func quotedArgs(args []string) string {
	words := make([]string, len(args))
	for i, a := range args {
		words[i] = `"` + escapeDoubleQuoted(a) + `"`
	}
	return strings.Join(words, " ")
}

// isShellName reports whether s is a valid POSIX shell variable name.
func isShellName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_', c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// dockerEnvScript renders env/10-docker2singularity.sh from the config's
// Env, one line per entry in order: `export K="${K:-"v"}"`, so that a
// value set outside the container (on the host, or with --env) wins,
// except PATH (`export PATH="v"`: the image's always wins), and `export
// K="${K:-}"` for an entry without "=". Entries whose name is not a valid
// shell name are skipped. A name given twice keeps the first value, as in
// a sandbox Apptainer builds (the second line finds it set).
func dockerEnvScript(env []string) string {
	var b strings.Builder
	b.WriteString("#!/bin/sh\n# The image's Env (synthesized by imgfs). A value set outside the container wins, except for PATH.\n")
	for _, e := range env {
		key, val, hasValue := strings.Cut(e, "=")
		switch {
		case !isShellName(key):
		case !hasValue:
			fmt.Fprintf(&b, "export %s=\"${%s:-}\"\n", key, key)
		case key == "PATH":
			fmt.Fprintf(&b, "export PATH=\"%s\"\n", escapeDoubleQuoted(val))
		default:
			fmt.Fprintf(&b, "export %s=\"${%s:-\"%s\"}\"\n", key, key, escapeDoubleQuoted(val))
		}
	}
	return b.String()
}

// ociRunEvalLine is the runscript line by which Apptainer recognises a
// runscript made from an OCI image, and then interprets the script with
// its own shell interpreter instead of the image's /bin/sh. It must be
// this exact line, and it sets the positional parameters from
// SINGULARITY_OCI_RUN.
const ociRunEvalLine = `eval "set ${SINGULARITY_OCI_RUN}"`

// ociRunscript renders /.singularity.d/runscript for an image with the
// given ENTRYPOINT and CMD. It runs what `docker run IMAGE [ARG...]` runs:
// ENTRYPOINT followed by the arguments, or by CMD when there are none (no
// ENTRYPOINT: the arguments, or CMD). Like Apptainer's, in two ways:
//
//   - by default, evaluated by the shell: ENTRYPOINT and CMD as
//     double-quoted words (quotedArgs) and each argument between double
//     quotes as it is, not escaped (so "$HOME" in an argument expands, and
//     a double quote in one breaks the command line), set as the
//     positional parameters by ociRunEvalLine;
//   - with SINGULARITY_NO_EVAL set (apptainer --no-eval), verbatim: words
//     and arguments reach the program exactly as given.
func ociRunscript(entrypoint, cmd []string) string {
	var b strings.Builder
	line := func(s ...string) {
		for _, l := range s {
			b.WriteString(l)
			b.WriteByte('\n')
		}
	}
	// set -- 'w1' 'w2': the words, quoted so that nothing in them is
	// evaluated, as the positional parameters.
	setWords := func(words []string) string {
		var s strings.Builder
		s.WriteString("set --")
		for _, w := range words {
			s.WriteString(" " + singleQuoted(w))
		}
		return s.String()
	}

	line("#!/bin/sh",
		"# /.singularity.d/runscript (also /singularity), synthesized by imgfs from",
		"# the image's ENTRYPOINT and CMD: apptainer run IMAGE [ARG...] runs",
		"# ENTRYPOINT followed by the arguments, or by CMD when there are none.",
		"",
		"# Unless --no-eval is given, the command line is evaluated by the shell:",
		"# ENTRYPOINT and CMD as double-quoted words...",
		"imgfs_entrypoint="+singleQuoted(quotedArgs(entrypoint)),
		"imgfs_cmd="+singleQuoted(quotedArgs(cmd)),
		"",
		"# ...and with --no-eval (SINGULARITY_NO_EVAL), as an OCI runtime does:",
		"# every word and argument exactly as given.",
		`if [ -n "${SINGULARITY_NO_EVAL:-}" ]; then`)
	if len(cmd) > 0 {
		line(`    [ $# -gt 0 ] || ` + setWords(cmd))
	}
	if len(entrypoint) > 0 {
		line("    " + setWords(entrypoint) + ` "$@"`)
	}
	line(`    exec "$@"`,
		"fi",
		"",
		"# Each argument goes between double quotes, as it is.",
		`if [ $# -gt 0 ]; then`,
		`    imgfs_args=`,
		`    for imgfs_arg in "$@"; do`,
		`        imgfs_args="$imgfs_args \"$imgfs_arg\""`,
		`    done`,
		`else`,
		`    imgfs_args=$imgfs_cmd`,
		`fi`,
		`SINGULARITY_OCI_RUN="$imgfs_entrypoint $imgfs_args"`,
		"",
		"# Apptainer recognises this runscript by the next line and then runs it",
		"# with its own interpreter (the image needs no /bin/sh).",
		ociRunEvalLine,
		`exec "$@"`)
	return b.String()
}

// Provenance is where an image came from, as Apptainer records it in the
// sandbox it builds (labels.json and /.singularity.d/Singularity).
type Provenance struct {
	// Bootstrap is Apptainer's name of the source: docker, oci,
	// oci-archive, docker-archive. "" leaves out the deffile labels and
	// /.singularity.d/Singularity.
	Bootstrap string
	// From is the reference as given after the transport: "alpine:3.20"
	// for docker://alpine:3.20, the layout's path for oci:PATH.
	From string
	// BaseName and BaseDigest are the normalised reference
	// ("docker.io/library/alpine:3.20") and the digest it resolved to (the
	// index's for a multi-platform image): Apptainer records them for
	// docker:// only.
	BaseName, BaseDigest string
}

// labelsJSON renders labels.json as Apptainer's build writes it: the
// image's labels, then the build labels that can be derived from the
// image (they win over image labels of the same name, as in Apptainer),
// as a tab-indented JSON object with sorted keys and no final newline.
//
// Derived: org.label-schema.schema-version "1.0";
// org.label-schema.build-arch (the image's architecture);
// org.label-schema.build-date (the image's creation time in UTC, which is
// what 'apptainer build --reproducible' records; left out when the image
// does not say when it was created); the deffile bootstrap and from, and
// the docker base name and digest (see Provenance). Not derivable, so left
// out: org.label-schema.usage.apptainer.version (the Apptainer that built
// a sandbox).
func labelsJSON(labels map[string]string, arch string, created *time.Time, p Provenance) ([]byte, error) {
	out := maps.Clone(labels)
	if out == nil {
		out = map[string]string{}
	}
	out["org.label-schema.schema-version"] = "1.0"
	if created != nil && !created.IsZero() {
		out["org.label-schema.build-date"] = apptainerBuildDate(created.UTC())
	}
	if p.Bootstrap != "" {
		out["org.label-schema.usage.singularity.deffile.bootstrap"] = p.Bootstrap
		out["org.label-schema.usage.singularity.deffile.from"] = p.From
	}
	if p.BaseName != "" && p.BaseDigest != "" {
		out["org.opencontainers.image.base.name"] = p.BaseName
		out["org.opencontainers.image.base.digest"] = p.BaseDigest
	}
	if arch != "" {
		out["org.label-schema.build-arch"] = arch
	}
	return json.MarshalIndent(out, "", "\t")
}

// apptainerBuildDate formats t as Apptainer's build-date label:
// Weekday_Day_Month_Year_H:M:S_Zone, numbers without padding.
func apptainerBuildDate(t time.Time) string {
	year, month, day := t.Date()
	h, m, s := t.Clock()
	zone, _ := t.Zone()
	return t.Weekday().String() + "_" + strconv.Itoa(day) + "_" + month.String() + "_" + strconv.Itoa(year) + "_" +
		strconv.Itoa(h) + ":" + strconv.Itoa(m) + ":" + strconv.Itoa(s) + "_" + zone
}

// definitionFile is /.singularity.d/Singularity: the definition Apptainer
// builds from a source URI.
func definitionFile(p Provenance) []byte {
	return []byte("bootstrap: " + p.Bootstrap + "\nfrom: " + p.From + "\n\n")
}
