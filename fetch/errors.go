package fetch

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"unicode"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// RegistryError is a registry's answer we could not use, in one line:
// status, the registry's error codes and messages, and a hint when one helps.
// It wraps ErrNotFound for 404 and ErrUnauthorized for 401/403.
type RegistryError struct {
	StatusCode int
	Errors     []RegistryErrorDetail // from the {"errors":[...]} body, if any
	Text       string                // first line of a non-JSON body, if any
	Hint       string
}

// RegistryErrorDetail is one entry of the distribution error body.
type RegistryErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *RegistryError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "registry answered %d %s", e.StatusCode, http.StatusText(e.StatusCode))
	for i, d := range e.Errors {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		switch {
		case d.Code != "" && d.Message != "":
			b.WriteString(d.Code + " " + d.Message)
		default:
			b.WriteString(d.Code + d.Message)
		}
	}
	if len(e.Errors) == 0 && e.Text != "" {
		b.WriteString(": " + e.Text)
	}
	if e.Hint != "" {
		b.WriteString(" (" + e.Hint + ")")
	}
	return b.String()
}

func (e *RegistryError) Unwrap() error {
	switch e.StatusCode {
	case http.StatusNotFound:
		return ErrNotFound
	case http.StatusUnauthorized, http.StatusForbidden:
		return ErrUnauthorized
	}
	return nil
}

// responseError turns an unwanted response into a *RegistryError, reading
// (a bounded part of) and closing its body.
func responseError(resp *http.Response, hint string) error {
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBodySize))
	e := parseErrorBody(body)
	e.StatusCode = resp.StatusCode
	e.Hint = hint
	return e
}

// parseErrorBody reads the distribution error format
// {"errors":[{"code":"...","message":"...","detail":...}]}; anything else
// is kept as its first line, cleaned of control characters and shortened.
func parseErrorBody(body []byte) *RegistryError {
	var parsed struct {
		Errors []RegistryErrorDetail `json:"errors"`
	}
	e := &RegistryError{}
	if err := json.Unmarshal(body, &parsed); err == nil && len(parsed.Errors) > 0 {
		for i, d := range parsed.Errors {
			if i == 5 {
				e.Errors = append(e.Errors, RegistryErrorDetail{Message: fmt.Sprintf("and %d more", len(parsed.Errors)-5)})
				break
			}
			e.Errors = append(e.Errors, RegistryErrorDetail{Code: oneLine(d.Code, 64), Message: oneLine(d.Message, 200)})
		}
		return e
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(body)), "\n")
	e.Text = oneLine(line, 200)
	return e
}

// oneLine makes untrusted text safe for a one-line message.
func oneLine(s string, limit int) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			return ' '
		}
		return r
	}, s)
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > limit {
		s = string(r[:limit]) + "..."
	}
	return s
}

// mapTransportError turns what the client stack returned into our error
// vocabulary: ggcr token exchange failures become ErrUnauthorized, and any
// URL quoted in the message (a url.Error quotes it whole) is redacted.
func mapTransportError(err error) error {
	if err == nil {
		return nil
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		ue.URL = redactURLString(ue.URL)
	}
	var te *transport.Error
	if errors.As(err, &te) && (te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden) {
		return fmt.Errorf("%w: token exchange refused: %w", ErrUnauthorized, err)
	}
	return err
}
