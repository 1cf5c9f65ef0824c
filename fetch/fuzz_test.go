package fetch

import (
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

func FuzzParseContentRange(f *testing.F) {
	for _, s := range []string{"bytes 0-99/1000", "bytes 0-0/*", "bytes */1000", "bytes 5-4/10", "bytes 0-10/10",
		"bytes -1-5/10", "bytes +1-5/10", "BYTES 1-2/3", "bytes 99999999999999999999-1/2", "items 0-1/2", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		cr, err := parseContentRange(s)
		if err != nil {
			return
		}
		if cr.start == -1 {
			if cr.end != -1 || cr.total < 0 {
				t.Fatalf("%q: unsatisfied form parsed as %+v", s, cr)
			}
			return
		}
		if cr.start < 0 || cr.start > cr.end || (cr.total >= 0 && cr.end >= cr.total) || cr.total < -1 {
			t.Fatalf("%q: inconsistent %+v", s, cr)
		}
	})
}

func FuzzParseChallenges(f *testing.F) {
	for _, s := range []string{`Bearer realm="https://a/token",service="s",scope="repository:a:pull"`,
		`Basic realm="x"`, `Basic abc==`, `Bearer realm="unterminated`, `=,=,"\`, `a=b`, `Negotiate, Basic realm=x`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, c := range parseChallenges([]string{s}) {
			if c.Scheme == "" || c.Params == nil {
				t.Fatalf("%q: empty challenge %+v", s, c)
			}
		}
		challengeAttrs([]string{s})
	})
}

func FuzzParseRetryAfter(f *testing.F) {
	for _, s := range []string{"0", "120", "-1", "Wed, 21 Oct 2015 07:28:00 GMT", "soon", "99999999999999999999"} {
		f.Add(s)
	}
	now := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		d, ok := parseRetryAfter(s, now)
		if ok && d < 0 {
			t.Fatalf("%q: negative delay %v", s, d)
		}
		if _, numErr := strconv.Atoi(strings.TrimSpace(s)); ok && numErr == nil && d > 24*time.Hour {
			t.Fatalf("%q: delay %v beyond a day", s, d)
		}
	})
}

func FuzzParseErrorBody(f *testing.F) {
	for _, s := range []string{`{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"x"}}]}`,
		`{"errors":[]}`, `{"errors":[{"code":1}]}`, "<html>\n<body>bad gateway</body>", "\x00\xff\n\r", ""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		e := parseErrorBody(body)
		e.StatusCode = 500
		msg := e.Error()
		if strings.ContainsAny(msg, "\n\r\x00") {
			t.Fatalf("multi-line or control characters in %q", msg)
		}
		if len(msg) > 2000 {
			t.Fatalf("message of %d bytes", len(msg))
		}
	})
}

func FuzzRedactURL(f *testing.F) {
	f.Add("https://a.example/p?token=", "s3cretvalue1")
	f.Add("https://a.example/p?X-Amz-Signature=", "abcdefgh1234")
	f.Add("http://u:", "pw12345678@h/x")
	f.Fuzz(func(t *testing.T, prefix, secret string) {
		raw := prefix + url.QueryEscape(secret)
		u, err := url.Parse(raw)
		if err != nil {
			return
		}
		out := redactURL(u)
		// A secret that is a whole query value of a secret parameter must go.
		if len(secret) >= 8 && strings.HasSuffix(prefix, "token=") && strings.Count(raw, "?") == 1 &&
			!strings.ContainsAny(secret, "&;#=+%") && strings.Contains(out, secret) {
			t.Fatalf("%q leaks %q: %s", raw, secret, out)
		}
		redactErrorText("Get \"" + raw + "\": EOF")
	})
}
