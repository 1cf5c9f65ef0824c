package fetch

import (
	"net/http"
	"net/url"
	"sort"
	"strings"
)

const redacted = "REDACTED"

// secretQueryParam reports whether a URL query parameter may carry a
// credential: token and password parameters of token endpoints, and the
// signatures of pre-signed blob storage URLs (S3, GCS, Azure) that a
// registry redirects to, which grant access as long as they are valid.
func secretQueryParam(key string) bool {
	k := strings.ToLower(key)
	switch k {
	case "sig", "signature", "code", "key", "client_secret", "password":
		return true
	}
	for _, s := range []string{"token", "password", "passwd", "secret", "signature", "credential"} {
		if strings.Contains(k, s) {
			return true
		}
	}
	return false
}

// redactURL renders u for logs and errors: user info dropped, secret query
// values replaced.
func redactURL(u *url.URL) string {
	if u == nil {
		return ""
	}
	c := *u
	if c.User != nil {
		c.User = url.User(redacted)
	}
	// A fragment is never sent to a server, and may hold anything (a
	// token-like "?token=" after the "#" was logged as it was).
	c.Fragment, c.RawFragment = "", ""
	if c.RawQuery != "" {
		q, err := url.ParseQuery(c.RawQuery)
		if err != nil {
			c.RawQuery = redacted // unparsable: may hide anything
		} else {
			changed := false
			for k, vs := range q {
				if secretQueryParam(k) {
					for i := range vs {
						vs[i] = redacted
					}
					changed = true
				}
			}
			if changed {
				c.RawQuery = q.Encode()
			}
		}
	}
	return c.String()
}

// redactURLString is redactURL for a URL held as text (Location headers,
// url.Error); text that does not parse is dropped entirely.
func redactURLString(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return redacted
	}
	return redactURL(u)
}

// sensitiveHeader reports whether a header's value must never be logged.
func sensitiveHeader(name string) bool {
	n := strings.ToLower(name)
	for _, s := range []string{"authorization", "cookie", "token", "secret", "password", "api-key", "apikey", "signature", "credential"} {
		if strings.Contains(n, s) {
			return true
		}
	}
	return false
}

// redactHeaders renders headers as "Name: value" lines for Debug logs,
// sorted, with sensitive values replaced and Location's query redacted.
func redactHeaders(h http.Header) []string {
	names := make([]string, 0, len(h))
	for k := range h {
		names = append(names, k)
	}
	sort.Strings(names)
	out := make([]string, 0, len(names))
	for _, k := range names {
		for _, v := range h[k] {
			switch {
			case sensitiveHeader(k):
				v = redacted
			case strings.EqualFold(k, "Location") || strings.EqualFold(k, "Content-Location"):
				v = redactURLString(v)
			}
			out = append(out, k+": "+v)
		}
	}
	return out
}
