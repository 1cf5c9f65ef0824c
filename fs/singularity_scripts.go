package fs

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// The scripts below follow what Apptainer 1.x writes when it builds a
// sandbox from a Docker/OCI image (internal/pkg/build/sources:
// conveyorPacker_oci.go and base_environment.go), so that `apptainer
// run|exec|inspect` behave on the mount as on a built sandbox. The text is
// ours; the behaviour is meant to be the same.

// baseEnvScript is env/01-base.sh: Apptainer's is a licence header only.
const baseEnvScript = "#!/bin/sh\n# Base environment, sourced first. Empty on purpose (synthesized by imgfs).\n"

// environmentScript is env/90-environment.sh, where a definition file's
// %environment would go.
const environmentScript = "#!/bin/sh\n# Custom environment shell code should follow\n\n"

// base99Script is env/99-base.sh: makes the libraries Apptainer binds into
// /.singularity.d/libs (--nv, --rocm) visible and sets the prompt.
const base99Script = `#!/bin/sh
# Sourced last (synthesized by imgfs).

if [ -z "$LD_LIBRARY_PATH" ]; then
    LD_LIBRARY_PATH="/.singularity.d/libs"
else
    LD_LIBRARY_PATH="$LD_LIBRARY_PATH:/.singularity.d/libs"
fi

PS1="Apptainer> "
export LD_LIBRARY_PATH PS1
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

// quotedArgs renders args as double-quoted words separated by spaces (what
// Apptainer's runscript evaluates with `eval "set ..."`).
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
// Env: `export K="${K:-"v"}"` per variable, so a value set on the host (or
// with --env) wins, except PATH which is always the image's. Entries whose
// name is not a valid shell name are skipped; for a repeated name the last
// value wins, as in Docker.
func dockerEnvScript(env []string) string {
	var b strings.Builder
	b.WriteString("#!/bin/sh\n")
	seen := make(map[string]bool, len(env))
	var lines []string
	for i := len(env) - 1; i >= 0; i-- {
		key, val, hasValue := strings.Cut(env[i], "=")
		if !isShellName(key) || seen[key] {
			continue
		}
		seen[key] = true
		switch {
		case !hasValue:
			lines = append(lines, fmt.Sprintf("export %s=\"${%s:-}\"\n", key, key))
		case key == "PATH":
			lines = append(lines, fmt.Sprintf("export PATH=\"%s\"\n", escapeDoubleQuoted(val)))
		default:
			lines = append(lines, fmt.Sprintf("export %s=\"${%s:-\"%s\"}\"\n", key, key, escapeDoubleQuoted(val)))
		}
	}
	slices.Reverse(lines)
	for _, l := range lines {
		b.WriteString(l)
	}
	return b.String()
}

// prependArgs is `set -- 'a' 'b' "$@"`: puts args before the current
// positional parameters without any evaluation.
func prependArgs(args []string) string {
	var b strings.Builder
	b.WriteString("set --")
	for _, a := range args {
		b.WriteByte(' ')
		b.WriteString(singleQuoted(a))
	}
	b.WriteString(` "$@"`)
	return b.String()
}

// ociRunscript renders the runscript Apptainer writes for an OCI image.
// Apptainer recognises it by its `eval "set ${SINGULARITY_OCI_RUN}"` line
// and then runs it with its built-in shell interpreter, so it also works in
// images without /bin/sh. By default the entrypoint, cmd and arguments are
// evaluated by the shell (Apptainer's historical behaviour); with
// SINGULARITY_NO_EVAL set (apptainer --no-eval) they are passed verbatim,
// as Docker would.
func ociRunscript(entrypoint, cmd []string) string {
	var b strings.Builder
	w := func(lines ...string) {
		for _, l := range lines {
			b.WriteString(l)
			b.WriteByte('\n')
		}
	}
	w("#!/bin/sh",
		"OCI_ENTRYPOINT="+singleQuoted(quotedArgs(entrypoint)),
		"OCI_CMD="+singleQuoted(quotedArgs(cmd)),
		"",
		"# With SINGULARITY_NO_EVAL set, behave as OCI runtimes do: ENTRYPOINT, CMD",
		"# and arguments are not evaluated by the shell and keep their quoting.",
		`if [ -n "$SINGULARITY_NO_EVAL" ]; then`,
		"    # ENTRYPOINT only: entrypoint followed by the arguments",
		`    if [ -z "$OCI_CMD" ] && [ -n "$OCI_ENTRYPOINT" ]; then`)
	if len(entrypoint) > 0 {
		w("        " + prependArgs(entrypoint))
	}
	w(`        exec "$@"`,
		"    fi",
		"",
		"    # CMD only: cmd, unless arguments replace it",
		`    if [ -n "$OCI_CMD" ] && [ -z "$OCI_ENTRYPOINT" ]; then`)
	if len(cmd) > 0 {
		w("        if [ $# -eq 0 ]; then",
			"            "+prependArgs(cmd),
			"        fi")
	}
	w(`        exec "$@"`,
		"    fi",
		"",
		"    # ENTRYPOINT and CMD: entrypoint with cmd as default arguments")
	switch {
	case len(entrypoint) > 0:
		w("    if [ $# -gt 0 ]; then",
			"        "+prependArgs(entrypoint),
			"    else")
		if len(cmd) > 0 {
			w("        " + prependArgs(cmd))
		}
		w("        "+prependArgs(entrypoint),
			"    fi")
	case len(cmd) > 0:
		w("    if [ $# -eq 0 ]; then",
			"        "+prependArgs(cmd),
			"    fi")
	}
	w(`    exec "$@"`,
		"fi",
		"",
		"# Default: the command line is evaluated by the shell before it runs, so",
		"# arguments are joined into one string with their own quotes.",
		`CMDLINE_ARGS=""`,
		`for arg in "$@"; do`,
		`    CMDLINE_ARGS="${CMDLINE_ARGS} \"$arg\""`,
		"done",
		"",
		"# ENTRYPOINT only: entrypoint followed by the arguments",
		`if [ -z "$OCI_CMD" ] && [ -n "$OCI_ENTRYPOINT" ]; then`,
		"    if [ $# -gt 0 ]; then",
		`        SINGULARITY_OCI_RUN="${OCI_ENTRYPOINT} ${CMDLINE_ARGS}"`,
		"    else",
		`        SINGULARITY_OCI_RUN="${OCI_ENTRYPOINT}"`,
		"    fi",
		"fi",
		"",
		"# CMD only: cmd, unless arguments replace it",
		`if [ -n "$OCI_CMD" ] && [ -z "$OCI_ENTRYPOINT" ]; then`,
		"    if [ $# -gt 0 ]; then",
		`        SINGULARITY_OCI_RUN="${CMDLINE_ARGS}"`,
		"    else",
		`        SINGULARITY_OCI_RUN="${OCI_CMD}"`,
		"    fi",
		"fi",
		"",
		"# ENTRYPOINT and CMD: entrypoint with cmd as default arguments",
		"if [ $# -gt 0 ]; then",
		`    SINGULARITY_OCI_RUN="${OCI_ENTRYPOINT} ${CMDLINE_ARGS}"`,
		"else",
		`    SINGULARITY_OCI_RUN="${OCI_ENTRYPOINT} ${OCI_CMD}"`,
		"fi",
		"",
		"# Evaluate, set the arguments, then run the result as the container's first process.",
		`eval "set ${SINGULARITY_OCI_RUN}"`,
		`exec "$@"`)
	return b.String()
}

// labelsJSON renders labels.json: a JSON object of strings, "{}" when the
// image has no labels.
func labelsJSON(labels map[string]string) ([]byte, error) {
	if labels == nil {
		labels = map[string]string{}
	}
	return json.MarshalIndent(labels, "", "\t")
}
