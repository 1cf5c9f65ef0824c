package fetch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sync"
	"time"

	digest "github.com/opencontainers/go-digest"
)

// blob is the lazy reader behind Blob. Range reads go to the registry, or
// straight to the blob storage the registry redirected an earlier read to.
// A server that answers a Range request with the whole blob gets its blob
// kept in memory (bounded), so it is downloaded once.
type blob struct {
	r        *repository
	dgst     digest.Digest
	size     int64 // known once openBlob returns
	counters netCounters
	mirror   bool // at a mirror: a 200 to a Range request means "not cached yet" (errWarming)

	mu            sync.Mutex
	direct        *url.URL // where the registry redirected a GET of this blob
	ignoresRanges bool     // a Range request got 200 and the whole blob
	whole         []byte   // the whole blob, verified, when ignoresRanges

	wholeMu sync.Mutex // one whole-blob download at a time
}

func (r *repository) openBlob(ctx context.Context, dgst digest.Digest, size int64) (*Blob, error) {
	if err := dgst.Validate(); err != nil {
		return nil, fmt.Errorf("blob %s@%s: %w", r.repo, dgst, err)
	}
	if size == 0 && dgst != dgst.Algorithm().FromBytes(nil) {
		// A hostile manifest's way to make a layer vanish, or to cache an
		// empty index under a popular digest.
		return nil, fmt.Errorf("blob %s@%s: the descriptor says 0 bytes, which only the empty blob (%s) has", r.repo, dgst, dgst.Algorithm().FromBytes(nil))
	}
	b := &blob{r: r, dgst: dgst, size: size}
	if size < 0 {
		if err := b.resolveSize(ctx); err != nil {
			return nil, fmt.Errorf("blob %s@%s: size: %w", r.repo, dgst, err)
		}
	}
	out := &Blob{impl: b}
	for _, m := range r.mirrors {
		if m.cfg.Digests {
			out.srcs = r.newSources(b)
			break
		}
	}
	return out, nil
}

func (b *blob) stats() BlobStats { return b.counters.snapshot() }

func (b *blob) registryURL() string { return b.r.url("blobs", b.dgst.String()) }

// resolveSize asks HEAD for the size, else the Content-Range total of a
// 1-byte GET.
func (b *blob) resolveSize(ctx context.Context) error {
	resp, err := b.send(ctx, http.MethodHead, b.registryURL(), "")
	if err != nil {
		return err
	}
	switch {
	case resp.StatusCode == http.StatusOK && resp.ContentLength >= 0:
		resp.Body.Close()
		b.size = resp.ContentLength
		return nil
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return responseError(resp, b.r.statusHint(resp.StatusCode))
	}
	drainAndClose(resp.Body) // no length (or HEAD not allowed): try a GET

	resp, err = b.get(ctx, "bytes=0-0")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusPartialContent:
		cr, err := parseContentRange(resp.Header.Get("Content-Range"))
		if err != nil {
			return err
		}
		if cr.start != 0 || cr.end != 0 || cr.total < 0 {
			return fmt.Errorf("asked for bytes 0-0, got Content-Range %q", oneLine(resp.Header.Get("Content-Range"), 100))
		}
		b.size = cr.total
		return nil
	case http.StatusRequestedRangeNotSatisfiable:
		if cr, err := parseContentRange(resp.Header.Get("Content-Range")); err == nil && cr.total == 0 {
			b.size = 0
			return nil
		}
		return responseError(resp, "")
	case http.StatusOK:
		b.setIgnoresRanges()
		if resp.ContentLength >= 0 {
			b.size = resp.ContentLength // the body is fetched once, when first read
			return nil
		}
		// No length anywhere: the body is all we can learn it from.
		data, err := readLimited(resp, b.r.maxWholeBlob)
		if err != nil {
			return fmt.Errorf("registry sends neither length nor ranges: %w", err)
		}
		if got := b.dgst.Algorithm().FromBytes(data); got != b.dgst {
			return fmt.Errorf("%w: body hashes to %s", ErrDigest, got)
		}
		b.size = int64(len(data))
		b.mu.Lock()
		b.whole = data
		b.mu.Unlock()
		return nil
	default:
		return responseError(resp, b.r.statusHint(resp.StatusCode))
	}
}

// send issues one request (the stack below retries it) carrying the blob's
// counters.
func (b *blob) send(ctx context.Context, method, u, rangeHeader string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(withCounters(ctx, &b.counters), method, u, nil)
	if err != nil {
		return nil, err
	}
	if rangeHeader != "" {
		req.Header.Set("Range", rangeHeader)
	}
	return b.r.do(req)
}

// get GETs the blob (a range of it if rangeHeader is set): from the storage
// URL an earlier GET was redirected to if there is one, else from the
// registry, remembering where that redirects. A remembered URL that stops
// working (expired signature: 401/403, gone: 404/410, or unreachable) is
// dropped and the registry asked again, once.
func (b *blob) get(ctx context.Context, rangeHeader string) (*http.Response, error) {
	if u := b.directURL(); u != nil {
		resp, err := b.send(ctx, http.MethodGet, u.String(), rangeHeader)
		if err == nil && !staleDirectStatus(resp.StatusCode) {
			return resp, nil
		}
		if ctx.Err() != nil {
			if err == nil {
				resp.Body.Close()
			}
			return nil, ctx.Err()
		}
		reason := "request failed"
		if err == nil {
			reason = resp.Status
			drainAndClose(resp.Body)
		}
		b.forgetDirect(u)
		b.r.log.LogAttrs(ctx, slog.LevelInfo, "blob storage URL no longer works; asking the registry again",
			slog.String("digest", b.dgst.String()), slog.String("reason", reason))
	}
	resp, err := b.send(ctx, http.MethodGet, b.registryURL(), rangeHeader)
	if err != nil {
		return nil, err
	}
	if (resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusPartialContent) &&
		resp.Request != nil && resp.Request.URL != nil && !b.r.isRegistryURL(resp.Request.URL) {
		b.rememberDirect(resp.Request.URL)
	}
	return resp, nil
}

func staleDirectStatus(code int) bool {
	switch code {
	case http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound, http.StatusGone:
		return true
	}
	return false
}

func (b *blob) directURL() *url.URL {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.direct
}

func (b *blob) rememberDirect(u *url.URL) {
	c := *u
	c.User = nil // never a credential to a storage host
	b.mu.Lock()
	b.direct = &c
	b.mu.Unlock()
}

// forgetDirect drops u unless another read has remembered a newer URL.
func (b *blob) forgetDirect(u *url.URL) {
	b.mu.Lock()
	if b.direct == u {
		b.direct = nil
	}
	b.mu.Unlock()
}

func (b *blob) setIgnoresRanges() {
	b.mu.Lock()
	b.ignoresRanges = true
	b.mu.Unlock()
}

// wholeState reports the kept body and whether ranges are known not to work.
func (b *blob) wholeState() ([]byte, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.whole, b.ignoresRanges
}

func (b *blob) readAt(ctx context.Context, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("read blob %s: negative offset %d", b.dgst, off)
	}
	if off >= b.size {
		return 0, io.EOF
	}
	want := p
	if rest := b.size - off; int64(len(p)) > rest {
		want = p[:rest]
	}
	if len(want) == 0 {
		return 0, nil
	}
	n, err := b.readFull(ctx, want, off)
	if err != nil {
		return n, fmt.Errorf("read blob %s bytes %d-%d: %w", b.dgst, off, off+int64(len(want))-1, err)
	}
	if len(want) < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// readFull fills p from off (p lies within the blob). The transport retries
// until response headers; a body that breaks off is resumed here from where
// it stopped, within the same retry policy.
func (b *blob) readFull(ctx context.Context, p []byte, off int64) (int, error) {
	done := 0
	start := time.Now()
	digestRetried := false
	for attempt := 1; ; attempt++ {
		n, err := b.readOnce(ctx, p[done:], off+int64(done))
		done += n
		if err == nil {
			return done, nil
		}
		// The transport has already spent the retry policy on this request:
		// retrying it again here would multiply attempts and time.
		var spent *requestRetriesSpent
		if errors.As(err, &spent) {
			return done, spent.err
		}
		// A whole blob that failed verification is fetched once more.
		retryDigest := errors.Is(err, ErrDigest) && !digestRetried
		digestRetried = digestRetried || retryDigest
		delay := b.r.policy.backoff(attempt, rand.Float64())
		if !(transientError(err) || retryDigest) || attempt >= b.r.policy.MaxAttempts ||
			time.Since(start)+delay > b.r.policy.MaxElapsed || ctx.Err() != nil {
			return done, err
		}
		b.r.log.LogAttrs(ctx, slog.LevelInfo, "blob read broke off, resuming",
			slog.String("digest", b.dgst.String()), slog.Int64("offset", off+int64(done)),
			slog.String("error", redactErrorText(err.Error())), slog.Int("attempt", attempt))
		if err := sleepContext(ctx, delay); err != nil {
			return done, err
		}
	}
}

// requestRetriesSpent marks the failure of a request the retrying
// transport already retried as the policy allows (it failed before any
// response): readFull returns it as is instead of retrying it again.
type requestRetriesSpent struct{ err error }

func (e *requestRetriesSpent) Error() string { return e.err.Error() }
func (e *requestRetriesSpent) Unwrap() error { return e.err }

// readOnce serves p at off from the kept whole blob, or with one range
// request; it returns fewer bytes only with an error.
func (b *blob) readOnce(ctx context.Context, p []byte, off int64) (int, error) {
	whole, ignoresRanges := b.wholeState()
	if whole == nil && ignoresRanges {
		var err error
		if whole, err = b.keepWhole(ctx, nil); err != nil {
			return 0, err
		}
	}
	if whole != nil {
		return copy(p, whole[off:]), nil
	}

	end := off + int64(len(p)) - 1
	resp, err := b.get(ctx, fmt.Sprintf("bytes=%d-%d", off, end))
	if err != nil {
		return 0, &requestRetriesSpent{err: err}
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusPartialContent:
		header := resp.Header.Get("Content-Range")
		cr, err := parseContentRange(header)
		if err != nil || cr.start != off || cr.end != end || (cr.total >= 0 && cr.total != b.size) {
			return 0, fmt.Errorf("asked for bytes %d-%d/%d, server sent Content-Range %q", off, end, b.size, oneLine(header, 100))
		}
		return io.ReadFull(resp.Body, p)
	case http.StatusOK:
		if b.mirror {
			resp.Body.Close() // a pull-through cache goes on caching it
			return 0, errWarming
		}
		b.r.log.LogAttrs(ctx, slog.LevelInfo, "server ignores Range requests for this blob; keeping it whole in memory",
			slog.String("digest", b.dgst.String()), slog.Int64("size", b.size))
		whole, err := b.keepWhole(ctx, resp)
		if err != nil {
			return 0, err
		}
		return copy(p, whole[off:]), nil
	default:
		return 0, responseError(resp, b.r.statusHint(resp.StatusCode))
	}
}

// keepWhole reads the whole blob from resp (a 200 answer to a range
// request), or GETs it when resp is nil, verifies it and keeps it for every
// later read. Bounded by Options.MaxWholeBlob.
func (b *blob) keepWhole(ctx context.Context, resp *http.Response) ([]byte, error) {
	if resp != nil {
		defer resp.Body.Close()
	}
	b.wholeMu.Lock()
	defer b.wholeMu.Unlock()
	b.setIgnoresRanges()
	if whole, _ := b.wholeState(); whole != nil {
		return whole, nil // another reader got it meanwhile
	}
	if b.size > b.r.maxWholeBlob {
		return nil, fmt.Errorf("server ignores Range requests and the blob is %d bytes, more than the %d bytes imgfs keeps in memory for such servers", b.size, b.r.maxWholeBlob)
	}
	if resp == nil {
		var err error
		if resp, err = b.get(ctx, ""); err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, responseError(resp, b.r.statusHint(resp.StatusCode))
		}
	}
	if resp.ContentLength >= 0 && resp.ContentLength != b.size {
		return nil, fmt.Errorf("server sent the whole blob as %d bytes, expected %d", resp.ContentLength, b.size)
	}
	data := make([]byte, b.size)
	if _, err := io.ReadFull(resp.Body, data); err != nil {
		return nil, fmt.Errorf("read whole blob: %w", err)
	}
	var extra [1]byte
	if n, _ := io.ReadFull(resp.Body, extra[:]); n != 0 {
		return nil, fmt.Errorf("server sent more than the %d bytes of the blob", b.size)
	}
	if got := b.dgst.Algorithm().FromBytes(data); got != b.dgst {
		return nil, fmt.Errorf("%w: whole blob hashes to %s", ErrDigest, got)
	}
	b.mu.Lock()
	b.whole = data
	b.mu.Unlock()
	return data, nil
}

// open streams the whole blob. A body that breaks off (reset, stall,
// early end) is resumed with a Range request from the last byte received,
// within the retry policy: a one-pass index build of a large layer then
// survives a flaky network. A server that ignores Range for the resumption
// sends the whole blob again, and the bytes already read are skipped.
// Bytes are not verified here: the builder checks the blob digest.
func (b *blob) open(ctx context.Context) (io.ReadCloser, error) {
	if whole, _ := b.wholeState(); whole != nil {
		return io.NopCloser(bytes.NewReader(whole)), nil
	}
	s := &resumingStream{b: b, ctx: ctx, start: time.Now()}
	if err := s.connect(); err != nil {
		return nil, fmt.Errorf("open blob %s: %w", b.dgst, err)
	}
	return s, nil
}

// resumingStream is the body of a whole-blob GET that resumes itself.
type resumingStream struct {
	b        *blob
	ctx      context.Context
	body     io.ReadCloser
	off      int64 // bytes delivered so far
	start    time.Time
	attempts int
	pending  error // an error that came with the last bytes delivered
}

// connect (re)opens the body at s.off.
func (s *resumingStream) connect() error {
	rangeHeader := ""
	if s.off > 0 {
		rangeHeader = fmt.Sprintf("bytes=%d-", s.off)
	}
	resp, err := s.b.get(s.ctx, rangeHeader)
	if err != nil {
		return err
	}
	switch {
	case resp.StatusCode == http.StatusPartialContent && s.off > 0:
		cr, err := parseContentRange(resp.Header.Get("Content-Range"))
		if err != nil || cr.start != s.off || cr.end != s.b.size-1 {
			resp.Body.Close()
			return fmt.Errorf("resumed at %d, server sent Content-Range %q", s.off, oneLine(resp.Header.Get("Content-Range"), 100))
		}
	case resp.StatusCode == http.StatusOK:
		if resp.ContentLength >= 0 && resp.ContentLength != s.b.size {
			resp.Body.Close()
			return fmt.Errorf("server sends %d bytes, expected %d", resp.ContentLength, s.b.size)
		}
		if s.off > 0 { // ignores Range: skip what was delivered
			if _, err := io.CopyN(io.Discard, resp.Body, s.off); err != nil {
				resp.Body.Close()
				return fmt.Errorf("skip %d bytes of a resumed stream: %w", s.off, err)
			}
		}
	default:
		return responseError(resp, s.b.r.statusHint(resp.StatusCode))
	}
	s.body = resp.Body
	return nil
}

func (s *resumingStream) Read(p []byte) (int, error) {
	for {
		err := s.pending
		s.pending = nil
		if err == nil {
			var n int
			n, err = s.body.Read(p)
			s.off += int64(n)
			if err == io.EOF && s.off < s.b.size {
				err = io.ErrUnexpectedEOF
			}
			if n > 0 || err == io.EOF {
				if err != io.EOF {
					s.pending = err
				}
				return n, err
			}
			if err == nil {
				continue
			}
		}
		if rerr := s.resume(err); rerr != nil {
			return 0, rerr
		}
	}
}

// resume reconnects after err if it is worth it and the policy allows.
func (s *resumingStream) resume(err error) error {
	s.body.Close()
	s.attempts++
	p := s.b.r.policy
	delay := p.backoff(s.attempts, rand.Float64())
	if !transientError(err) || s.attempts >= p.MaxAttempts || time.Since(s.start)+delay > p.MaxElapsed || s.ctx.Err() != nil {
		return fmt.Errorf("blob %s stream broke off at byte %d: %w", s.b.dgst, s.off, err)
	}
	s.b.r.log.LogAttrs(s.ctx, slog.LevelInfo, "blob stream broke off, resuming",
		slog.String("digest", s.b.dgst.String()), slog.Int64("offset", s.off),
		slog.String("error", redactErrorText(err.Error())), slog.Int("attempt", s.attempts))
	if err := sleepContext(s.ctx, delay); err != nil {
		return err
	}
	for {
		cerr := s.connect()
		if cerr == nil {
			return nil
		}
		s.attempts++
		delay = p.backoff(s.attempts, rand.Float64())
		if !transientError(cerr) && !retryableRegistryError(cerr) || s.attempts >= p.MaxAttempts ||
			time.Since(s.start)+delay > p.MaxElapsed || s.ctx.Err() != nil {
			return fmt.Errorf("blob %s: resume at byte %d: %w", s.b.dgst, s.off, cerr)
		}
		if err := sleepContext(s.ctx, delay); err != nil {
			return err
		}
	}
}

func (s *resumingStream) Close() error {
	if s.body == nil {
		return nil
	}
	return s.body.Close()
}

// retryableRegistryError reports an error answer worth asking again (the
// transport already retried these; a resumption asks afresh).
func retryableRegistryError(err error) bool {
	var re *RegistryError
	return errors.As(err, &re) && retryableStatus(re.StatusCode)
}
