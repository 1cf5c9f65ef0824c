package fetch

import (
	"log/slog"
	"runtime/debug"
	"time"
)

// Limits on what we keep in memory from a registry.
const (
	maxManifestSize     = 4 << 20   // manifests and indexes are small; 4 MiB is generous
	defaultMaxBlob      = 16 << 20  // FetchBlob limit when the caller gives none
	defaultMaxWholeBlob = 256 << 20 // a blob whose server ignores Range is kept whole up to this
	maxErrorBodySize    = 64 << 10  // registry error bodies are read up to this
)

// Timeouts of one registry request: to connect (and finish TLS), to get
// the response headers once the request is sent, and the longest a body may
// send nothing. Each failure is retried (and a broken body resumed) within
// the RetryPolicy.
const (
	connectTimeout        = 10 * time.Second
	responseHeaderTimeout = 20 * time.Second
	DefaultStallTimeout   = 15 * time.Second
)

// DefaultRetryPolicy is what a zero Options.Retry means: 5 attempts within
// 60 s, backoff from 200 ms doubling up to 10 s.
func DefaultRetryPolicy() RetryPolicy {
	return RetryPolicy{
		MaxAttempts: 5,
		MaxElapsed:  60 * time.Second,
		BaseDelay:   200 * time.Millisecond,
		MaxDelay:    10 * time.Second,
	}
}

// withDefaults fills the zero fields of a policy from DefaultRetryPolicy, so
// a caller can change one bound without restating the others.
func (p RetryPolicy) withDefaults() RetryPolicy {
	d := DefaultRetryPolicy()
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = d.MaxAttempts
	}
	if p.MaxElapsed <= 0 {
		p.MaxElapsed = d.MaxElapsed
	}
	if p.BaseDelay <= 0 {
		p.BaseDelay = d.BaseDelay
	}
	if p.MaxDelay <= 0 {
		p.MaxDelay = d.MaxDelay
	}
	if p.MaxDelay < p.BaseDelay {
		p.MaxDelay = p.BaseDelay
	}
	return p
}

// DefaultUserAgent is "imgfs/<version>", the version taken from the build
// information of the main module ("devel" in tests and plain go builds).
func DefaultUserAgent() string {
	version := "devel"
	if info, ok := debug.ReadBuildInfo(); ok && info.Main.Version != "" && info.Main.Version != "(devel)" {
		version = info.Main.Version
	}
	return "imgfs/" + version
}

// withDefaults returns opts with every nil/zero field given its default.
func (o Options) withDefaults() Options {
	if o.UserAgent == "" {
		o.UserAgent = DefaultUserAgent()
	}
	if o.Keychain == nil {
		o.Keychain = DefaultKeychain()
	}
	o.Retry = o.Retry.withDefaults()
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.StallTimeout <= 0 {
		o.StallTimeout = DefaultStallTimeout
	}
	if o.MaxWholeBlob <= 0 {
		o.MaxWholeBlob = defaultMaxWholeBlob
	}
	if o.Transport == nil {
		t := NewBaseTransport(o.Insecure)
		if o.Proxy != nil {
			t.Proxy = o.Proxy
		}
		o.Transport = t
	}
	return o
}
