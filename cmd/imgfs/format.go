package main

import (
	"encoding/json"
	"io"
	"strings"
	"text/template"
)

// formatFuncs are the functions --format templates may use besides Go's:
// json (a value as JSON), join (strings with a separator), upper, lower.
var formatFuncs = template.FuncMap{
	"json": func(v any) (string, error) {
		b, err := json.Marshal(v)
		return string(b), err
	},
	"join":  strings.Join,
	"upper": strings.ToUpper,
	"lower": strings.ToLower,
}

// parseFormat parses a --format template; a bad one is a usage error.
func parseFormat(s string) (*template.Template, error) {
	t, err := template.New("format").Funcs(formatFuncs).Parse(s)
	if err != nil {
		return nil, usageErrorf("invalid --format: %w", err)
	}
	return t, nil
}

// executeFormat prints v with t, then a newline unless the template ends
// with one.
func executeFormat(w io.Writer, t *template.Template, v any) error {
	var b strings.Builder
	if err := t.Execute(&b, v); err != nil {
		return err
	}
	out := b.String()
	if !strings.HasSuffix(out, "\n") {
		out += "\n"
	}
	_, err := io.WriteString(w, out)
	return err
}
