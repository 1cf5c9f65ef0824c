package fetch

import (
	"fmt"
	"strconv"
	"strings"
)

// contentRange is a parsed Content-Range header (RFC 9110 14.4).
type contentRange struct {
	start, end int64 // inclusive; both -1 for "bytes */total"
	total      int64 // -1 for "*"
}

// parseContentRange parses "bytes start-end/total", "bytes start-end/*" and
// "bytes */total", rejecting anything inconsistent.
func parseContentRange(s string) (contentRange, error) {
	bad := func() (contentRange, error) {
		return contentRange{}, fmt.Errorf("malformed Content-Range %q", oneLine(s, 100))
	}
	unit, spec, ok := strings.Cut(strings.TrimSpace(s), " ")
	if !ok || !strings.EqualFold(unit, "bytes") {
		return bad()
	}
	rng, total, ok := strings.Cut(strings.TrimSpace(spec), "/")
	if !ok {
		return bad()
	}
	cr := contentRange{start: -1, end: -1, total: -1}
	if total != "*" {
		n, ok := parseNonNegative(total)
		if !ok {
			return bad()
		}
		cr.total = n
	}
	if rng == "*" {
		if cr.total < 0 {
			return bad()
		}
		return cr, nil
	}
	first, last, ok := strings.Cut(rng, "-")
	if !ok {
		return bad()
	}
	start, ok1 := parseNonNegative(first)
	end, ok2 := parseNonNegative(last)
	if !ok1 || !ok2 || start > end || (cr.total >= 0 && end >= cr.total) {
		return bad()
	}
	cr.start, cr.end = start, end
	return cr, nil
}

// parseNonNegative accepts decimal digits only (no sign, no spaces).
func parseNonNegative(s string) (int64, bool) {
	if s == "" {
		return 0, false
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}
