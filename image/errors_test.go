package image

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestPlainHTTPHint(t *testing.T) {
	err := withHint(fmt.Errorf("connect to registry reg.example:5000: %w",
		errors.New(`Get "https://reg.example:5000/v2/": http: server gave HTTP response to HTTPS client`)))
	if !errors.Is(err, ErrPlainHTTP) || !strings.Contains(err.Error(), "use --plain-http") {
		t.Errorf("no hint: %v", err)
	}
	if other := withHint(errors.New("connection refused")); errors.Is(other, ErrPlainHTTP) {
		t.Errorf("hint on an unrelated error: %v", other)
	}
}
