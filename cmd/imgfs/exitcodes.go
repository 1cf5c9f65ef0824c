package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	iofs "io/fs"
	"net"
	"net/url"
	"syscall"

	"github.com/imgfs/imgfs/fetch"
	"github.com/imgfs/imgfs/image"
)

// Exit codes: one per kind of failure, so that scripts can tell them apart.
const (
	exitOK          = 0
	exitFailure     = 1   // anything else: a bad image, an I/O error, a busy mount...
	exitUsage       = 2   // imgfs was called wrong: unknown command or flag, bad value, missing argument
	exitNotFound    = 3   // the image, tag, repository, local layout or path in the image does not exist
	exitAuth        = 4   // the registry refused the credentials, or wants some
	exitNetwork     = 5   // the registry could not be reached or spoke another protocol (TLS, plain HTTP)
	exitInterrupted = 130 // the shell's code for a command ended by SIGINT (also SIGTERM and SIGHUP)
)

// exitCodesHelp documents the exit codes in --help.
const exitCodesHelp = `Exit status:
  0    success
  1    failure not listed below (a damaged image, an I/O error, a busy mount...)
  2    usage: unknown command or flag, bad flag value, missing argument
  3    not found: the image, tag or repository, the local layout or archive,
       or the path inside the image
  4    authentication: the registry refused the credentials or wants some
  5    network: the registry could not be reached, TLS failed, or it speaks
       plain HTTP (see --plain-http)
  130  interrupted (SIGINT, SIGTERM or SIGHUP while working)`

// exitCodeFor classifies an error.
func exitCodeFor(err error) int {
	var usage *usageError
	var coded *exitError
	var reported *reportedError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &reported):
		return reported.code
	case errors.As(err, &coded):
		return coded.code
	case errors.As(err, &usage):
		return exitUsage
	case errors.Is(err, fetch.ErrUnauthorized):
		return exitAuth
	case errors.Is(err, fetch.ErrNotFound), errors.Is(err, iofs.ErrNotExist):
		return exitNotFound
	case isNetworkError(err):
		return exitNetwork
	}
	return exitFailure
}

// isNetworkError reports failures to reach or talk to a registry.
func isNetworkError(err error) bool {
	var netErr net.Error
	var opErr *net.OpError
	var dnsErr *net.DNSError
	var urlErr *url.Error
	var certErr *tls.CertificateVerificationError
	var unknownAuthority x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var recordErr tls.RecordHeaderError
	switch {
	case errors.Is(err, image.ErrPlainHTTP),
		errors.As(err, &opErr), errors.As(err, &dnsErr), errors.As(err, &certErr),
		errors.As(err, &unknownAuthority), errors.As(err, &hostErr), errors.As(err, &recordErr),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return true
	case errors.As(err, &netErr) && netErr.Timeout():
		return true
	case errors.As(err, &urlErr) && !errors.Is(err, context.Canceled):
		return true
	}
	return false
}

// exitError carries the exit code of a failure already classified
// elsewhere (a background mount server's).
type exitError struct {
	err  error
	code int
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// reportedError is a failure whose messages the command printed already
// (one line each): run only exits with its code.
type reportedError struct {
	err  error
	code int
}

func (e *reportedError) Error() string { return e.err.Error() }
func (e *reportedError) Unwrap() error { return e.err }
