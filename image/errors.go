package image

import (
	"errors"
	"fmt"
	"strings"
)

// ErrPlainHTTP marks the error of a registry that answered plain HTTP to
// an HTTPS request.
var ErrPlainHTTP = errors.New("the registry speaks plain HTTP: use --plain-http (or --plain-http-registry HOST with serve) for it")

// withHint adds what helps to errors that say too little on their own.
func withHint(err error) error {
	if err == nil {
		return nil
	}
	if strings.Contains(err.Error(), "server gave HTTP response to HTTPS client") {
		return fmt.Errorf("%w (%w)", err, ErrPlainHTTP)
	}
	return err
}
