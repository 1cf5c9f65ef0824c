package fetch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
)

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func mustReadAt(t *testing.T, b *Blob, want []byte, off, n int) {
	t.Helper()
	p := make([]byte, n)
	got, err := b.ReadAt(context.Background(), p, int64(off))
	if err != nil || got != n || !bytes.Equal(p, want[off:off+n]) {
		t.Fatalf("ReadAt(%d, %d) = %d, %v; data equal %v", off, n, got, err, bytes.Equal(p[:got], want[off:off+got]))
	}
}

func TestBlobReadAtRanges(t *testing.T) {
	reg := newFakeRegistry(t)
	reg.set(func(r *fakeRegistry) { r.authMode = "bearer" })
	data := randomBytes(100_000, 1)
	d := reg.addBlob(data)
	opts, _ := testOptions(t)
	repo := openRepo(t, reg, opts)
	b, err := repo.OpenBlob(context.Background(), d, -1)
	if err != nil {
		t.Fatal(err)
	}
	if b.Size() != int64(len(data)) || b.Digest() != d {
		t.Fatalf("size %d digest %s", b.Size(), b.Digest())
	}
	mustReadAt(t, b, data, 0, 10)
	mustReadAt(t, b, data, 5000, 40_000)
	mustReadAt(t, b, data, len(data)-1, 1)

	p := make([]byte, 10)
	if n, err := b.ReadAt(context.Background(), p, int64(len(data)-4)); n != 4 || err != io.EOF || !bytes.Equal(p[:4], data[len(data)-4:]) {
		t.Errorf("read across the end = %d, %v", n, err)
	}
	if n, err := b.ReadAt(context.Background(), p, int64(len(data))); n != 0 || err != io.EOF {
		t.Errorf("read at the end = %d, %v", n, err)
	}
	if _, err := b.ReadAt(context.Background(), p, -1); err == nil {
		t.Error("negative offset accepted")
	}
	if n := reg.hit("blob-range"); n != 4 {
		t.Errorf("range requests = %d, want 4", n)
	}
	st := b.Stats()
	if st.Requests != 5 || st.Bytes != 10+40_000+1+4 { // HEAD + 4 ranges
		t.Errorf("stats = %+v", st)
	}
	if !strings.HasPrefix(reg.authsFor("blob-range")[0], "Bearer ") {
		t.Error("range read without the bearer token")
	}
}

func TestBlobSizeWithoutHeadLength(t *testing.T) {
	reg := newFakeRegistry(t)
	data := randomBytes(5000, 2)
	d := reg.addBlob(data)
	reg.set(func(r *fakeRegistry) { r.noHeadLength = true })
	opts, _ := testOptions(t)
	b, err := openRepo(t, reg, opts).OpenBlob(context.Background(), d, -1)
	if err != nil {
		t.Fatal(err)
	}
	if b.Size() != 5000 {
		t.Fatalf("size = %d", b.Size())
	}
	if reg.hit("blob-head") != 1 || reg.hit("blob-range") != 1 {
		t.Errorf("HEAD %d, range GETs %d, want 1 and 1", reg.hit("blob-head"), reg.hit("blob-range"))
	}
	mustReadAt(t, b, data, 4000, 1000)
}

func TestBlobOpenMissing(t *testing.T) {
	reg := newFakeRegistry(t)
	opts, _ := testOptions(t)
	repo := openRepo(t, reg, opts)
	if _, err := repo.OpenBlob(context.Background(), digest.Digest("sha256:"+strings.Repeat("a", 64)), -1); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing blob: %v", err)
	}
	if _, err := repo.OpenBlob(context.Background(), "md5:abc", 10); err == nil {
		t.Error("invalid digest accepted")
	}
}

func TestBlobRedirectToStorage(t *testing.T) {
	for _, mode := range []string{"bearer", "basic"} {
		t.Run(mode, func(t *testing.T) {
			reg := newFakeRegistry(t)
			storage := newFakeStorage(t, reg)
			reg.set(func(r *fakeRegistry) { r.authMode, r.user, r.pass, r.redirectTo = mode, "carol", "pw-3", storage })
			data := randomBytes(50_000, 3)
			d := reg.addBlob(data)
			opts, _ := testOptions(t)
			opts.Keychain = staticKeychain{"carol", "pw-3"}
			b, err := openRepo(t, reg, opts).OpenBlob(context.Background(), d, int64(len(data)))
			if err != nil {
				t.Fatal(err)
			}

			mustReadAt(t, b, data, 100, 1000)
			mustReadAt(t, b, data, 30_000, 5000)
			hits, sigs := storage.state()
			if reg.hit("blob-range") != 1 || hits != 2 || sigs[1] != "SIGSECRET1" {
				t.Fatalf("registry range GETs %d, storage hits %d (%v): want 1, 2, the redirected URL reused", reg.hit("blob-range"), hits, sigs)
			}

			storage.mu.Lock()
			storage.forbidden = 1 // the signature expired
			storage.mu.Unlock()
			mustReadAt(t, b, data, 40_000, 10_000)
			hits, sigs = storage.state()
			if reg.hit("blob-range") != 2 || hits != 4 || sigs[3] != "SIGSECRET2" {
				t.Fatalf("after 403: registry range GETs %d, storage hits %d (%v): want 2, 4, re-resolved", reg.hit("blob-range"), hits, sigs)
			}

			rc, err := b.Open(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			all, err := io.ReadAll(rc)
			rc.Close()
			if err != nil || !bytes.Equal(all, data) {
				t.Fatalf("Open: %v", err)
			}
			if hits, _ := storage.state(); hits != 5 || reg.hit("blob-get") != 0 {
				t.Errorf("Open did not use the storage URL directly: storage %d, registry %d", hits, reg.hit("blob-get"))
			}
		})
	}
}

func TestBlobServerIgnoresRange(t *testing.T) {
	reg := newFakeRegistry(t)
	data := randomBytes(70_000, 4)
	d := reg.addBlob(data)
	reg.set(func(r *fakeRegistry) { r.ignoreRange = true })
	opts, _ := testOptions(t)
	b, err := openRepo(t, reg, opts).OpenBlob(context.Background(), d, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	mustReadAt(t, b, data, 10, 100)
	mustReadAt(t, b, data, 60_000, 10_000)
	mustReadAt(t, b, data, 0, 70_000)
	if n := reg.hit("blob-range"); n != 1 {
		t.Errorf("range requests = %d, want 1 (the whole body remembered)", n)
	}
	if st := b.Stats(); st.Requests != 1 || st.Bytes != int64(len(data)) {
		t.Errorf("stats = %+v", st)
	}
	rc, err := b.Open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	all, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(all, data) || reg.hit("blob-get") != 0 {
		t.Errorf("Open after whole body kept: equal %v, GETs %d", bytes.Equal(all, data), reg.hit("blob-get"))
	}
}

func TestBlobServerIgnoresRangeTooBig(t *testing.T) {
	reg := newFakeRegistry(t)
	data := randomBytes(3000, 5)
	d := reg.addBlob(data)
	reg.set(func(r *fakeRegistry) { r.ignoreRange = true })
	opts, _ := testOptions(t)
	opts.MaxWholeBlob = 1000
	repo := openRepo(t, reg, opts)
	b, err := repo.OpenBlob(context.Background(), d, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.ReadAt(context.Background(), make([]byte, 10), 0)
	if err == nil || !strings.Contains(err.Error(), "ignores Range") || !strings.Contains(err.Error(), d.String()) {
		t.Fatalf("err = %v", err)
	}
	if _, err = b.ReadAt(context.Background(), make([]byte, 10), 0); err == nil || reg.hit("blob-range") != 1 {
		t.Errorf("second read: %v, range GETs %d (want no new request)", err, reg.hit("blob-range"))
	}
}

func TestBlobServerIgnoresRangeCorrupt(t *testing.T) {
	reg := newFakeRegistry(t)
	data := randomBytes(3000, 6)
	d := reg.addBlob(data)
	reg.set(func(r *fakeRegistry) { r.ignoreRange, r.corrupt[d] = true, true })
	opts, _ := testOptions(t)
	b, err := openRepo(t, reg, opts).OpenBlob(context.Background(), d, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.ReadAt(context.Background(), make([]byte, 10), 0); !errors.Is(err, ErrDigest) {
		t.Fatalf("err = %v, want ErrDigest", err)
	}
}

func TestBlobWrongContentRange(t *testing.T) {
	reg := newFakeRegistry(t)
	data := randomBytes(3000, 7)
	d := reg.addBlob(data)
	reg.set(func(r *fakeRegistry) { r.badContentRange = true })
	opts, _ := testOptions(t)
	b, err := openRepo(t, reg, opts).OpenBlob(context.Background(), d, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	n, err := b.ReadAt(context.Background(), make([]byte, 100), 500)
	if err == nil || n != 0 || !strings.Contains(err.Error(), "Content-Range") {
		t.Fatalf("ReadAt = %d, %v", n, err)
	}
	if reg.hit("blob-range") != 1 {
		t.Errorf("a wrong Content-Range was retried: %d requests", reg.hit("blob-range"))
	}
}

func TestBlobBodyBreaksOffResumed(t *testing.T) {
	reg := newFakeRegistry(t)
	data := randomBytes(20_000, 8)
	d := reg.addBlob(data)
	broke := false
	var ranges []string
	reg.set(func(r *fakeRegistry) {
		r.fault = func(w http.ResponseWriter, req *http.Request, kind string) bool {
			if kind != "blob-range" {
				return false
			}
			ranges = append(ranges, req.Header.Get("Range"))
			if broke {
				return false
			}
			broke = true // promise the range, send half of it, drop the connection
			w.Header().Set("Content-Range", "bytes 1000-10999/20000")
			w.Header().Set("Content-Length", "10000")
			w.WriteHeader(http.StatusPartialContent)
			w.Write(data[1000:6000])
			w.(http.Flusher).Flush()
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close()
			return true
		}
	})
	opts, _ := testOptions(t)
	b, err := openRepo(t, reg, opts).OpenBlob(context.Background(), d, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	mustReadAt(t, b, data, 1000, 10_000)
	if len(ranges) != 2 || ranges[1] != "bytes=6000-10999" {
		t.Errorf("ranges requested: %q, want a resume from 6000", ranges)
	}
}

func TestBlobOpenStreams(t *testing.T) {
	reg := newFakeRegistry(t)
	data := randomBytes(200_000, 9)
	d := reg.addBlob(data)
	opts, _ := testOptions(t)
	b, err := openRepo(t, reg, opts).OpenBlob(context.Background(), d, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	rc, err := b.Open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	all, err := io.ReadAll(rc)
	if err := rc.Close(); err != nil {
		t.Error(err)
	}
	if err != nil || !bytes.Equal(all, data) {
		t.Fatalf("Open: %v, equal %v", err, bytes.Equal(all, data))
	}
	if reg.hit("blob-get") != 1 || reg.hit("blob-range") != 0 {
		t.Errorf("GETs %d, range GETs %d", reg.hit("blob-get"), reg.hit("blob-range"))
	}
	if st := b.Stats(); st.Requests != 1 || st.Bytes != int64(len(data)) {
		t.Errorf("stats = %+v", st)
	}

	// A size that disagrees with the registry is an error, not a short stream.
	b2, _ := openRepo(t, reg, opts).OpenBlob(context.Background(), d, 10)
	if _, err := b2.Open(context.Background()); err == nil {
		t.Error("size mismatch not reported")
	}
}

// A read's context bounds that read only: a cancelled read fails, the
// next read with a live context works, and no context is kept from open.
func TestBlobContextBoundsOneRead(t *testing.T) {
	reg := newFakeRegistry(t)
	data := randomBytes(1000, 10)
	d := reg.addBlob(data)
	opts, _ := testOptions(t)
	openCtx, cancelOpen := context.WithCancel(context.Background())
	b, err := openRepo(t, reg, opts).OpenBlob(openCtx, d, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	cancelOpen() // the blob outlives the context it was opened with
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := b.ReadAt(ctx, make([]byte, 10), 0); !errors.Is(err, context.Canceled) {
		t.Errorf("ReadAt with a cancelled context: %v", err)
	}
	if _, err := b.Open(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Open with a cancelled context: %v", err)
	}
	p := make([]byte, 10)
	if _, err := b.ReadAt(context.Background(), p, 0); err != nil || !bytes.Equal(p, data[:10]) {
		t.Errorf("ReadAt with a live context after a cancelled one: %v", err)
	}
}

func TestBlobConcurrentReads(t *testing.T) {
	for _, ignore := range []bool{false, true} {
		reg := newFakeRegistry(t)
		storage := newFakeStorage(t, reg)
		data := randomBytes(300_000, 11)
		d := reg.addBlob(data)
		reg.set(func(r *fakeRegistry) { r.ignoreRange = ignore })
		if !ignore {
			reg.set(func(r *fakeRegistry) { r.redirectTo = storage })
		}
		opts, _ := testOptions(t)
		b, err := openRepo(t, reg, opts).OpenBlob(context.Background(), d, int64(len(data)))
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		for g := range 8 {
			wg.Go(func() {
				r := rand.New(rand.NewPCG(uint64(g), 0))
				for range 10 {
					off := r.IntN(len(data) - 1)
					n := 1 + r.IntN(min(20_000, len(data)-off))
					p := make([]byte, n)
					if _, err := b.ReadAt(context.Background(), p, int64(off)); err != nil || !bytes.Equal(p, data[off:off+n]) {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("ignoreRange=%v: concurrent read failed: %v", ignore, err)
		}
	}
}

// TestBlobReadRetriesNotMultiplied: a range request that fails before any
// response (here the connection drops) is retried by the transport only;
// readFull, which resumes bodies that break off, must not retry it again.
// It did: MaxAttempts x MaxAttempts requests, and with the default policy a
// read with the registry gone took ~15 s instead of ~3 s before its EIO.
func TestBlobReadRetriesNotMultiplied(t *testing.T) {
	reg := newFakeRegistry(t)
	data := randomBytes(10_000, 9)
	d := reg.addBlob(data)
	opts, log := testOptions(t)
	b, err := openRepo(t, reg, opts).OpenBlob(context.Background(), d, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	reg.set(func(r *fakeRegistry) {
		r.fault = func(w http.ResponseWriter, req *http.Request, kind string) bool {
			if kind != "blob-range" {
				return false
			}
			conn, _, _ := w.(http.Hijacker).Hijack() // no response at all
			conn.Close()
			return true
		}
	})
	if _, err := b.ReadAt(context.Background(), make([]byte, 100), 10); err == nil {
		t.Fatal("read succeeded with every range request failing")
	}
	// Counted where the retry layer sends them (net/http itself may resend a
	// GET once when a kept-alive connection drops, so the server's count
	// can be one more).
	if got, want := strings.Count(log.String(), `msg="registry request failed" kind=blob`), opts.Retry.MaxAttempts; got != want {
		t.Errorf("%d range requests for one failed read, want the policy's %d", got, want)
	}
}

func TestBlobSizeZeroMustBeTheEmptyBlob(t *testing.T) {
	reg := newFakeRegistry(t)
	d := reg.addBlob(randomBytes(100, 3))
	opts, _ := testOptions(t)
	repo := openRepo(t, reg, opts)
	if _, err := repo.OpenBlob(context.Background(), d, 0); err == nil || !strings.Contains(err.Error(), "0 bytes") {
		t.Fatalf("size 0 for a non-empty digest: %v", err)
	}
	empty := digest.FromBytes(nil)
	if b, err := repo.OpenBlob(context.Background(), empty, 0); err != nil || b.Size() != 0 {
		t.Fatalf("the empty blob: %v", err)
	}
}

// stallOnce makes the first blob range request send half its bytes and
// then nothing until the client gives up.
func stallOnce(data []byte) func(w http.ResponseWriter, req *http.Request, kind string) bool {
	var stalled atomic.Bool
	return func(w http.ResponseWriter, req *http.Request, kind string) bool {
		if kind != "blob-range" && kind != "blob-get" || stalled.Swap(true) {
			return false
		}
		var start, end int
		if _, err := fmt.Sscanf(req.Header.Get("Range"), "bytes=%d-%d", &start, &end); err != nil {
			start, end = 0, len(data)-1
			w.WriteHeader(http.StatusOK)
		} else {
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, end, len(data)))
			w.Header().Set("Content-Length", strconv.Itoa(end-start+1))
			w.WriteHeader(http.StatusPartialContent)
		}
		w.Write(data[start : start+(end-start+1)/2])
		w.(http.Flusher).Flush()
		<-req.Context().Done()
		return true
	}
}

// A body that stops sending fails after the stall timeout and the read is
// resumed from where it broke off: the read returns the right bytes, fast.
func TestBlobStalledBodyIsResumed(t *testing.T) {
	reg := newFakeRegistry(t)
	data := randomBytes(64<<10, 11)
	d := reg.addBlob(data)
	reg.set(func(r *fakeRegistry) { r.fault = stallOnce(data) })
	opts, logs := testOptions(t)
	opts.StallTimeout = 200 * time.Millisecond
	b, err := openRepo(t, reg, opts).OpenBlob(context.Background(), d, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	p := make([]byte, len(data)-100)
	if _, err := b.ReadAt(context.Background(), p, 100); err != nil || !bytes.Equal(p, data[100:]) {
		t.Fatalf("ReadAt: %v", err)
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Fatalf("the stalled read took %s", el)
	}
	if !strings.Contains(logs.String(), "stopped sending") {
		t.Errorf("no log of the stall:\n%s", logs.String())
	}
}

// breakFirstStream makes the first whole-blob GET send part of the blob
// and then reset the connection.
func breakFirstStream(data []byte, at int) func(w http.ResponseWriter, req *http.Request, kind string) bool {
	var broke atomic.Bool
	return func(w http.ResponseWriter, req *http.Request, kind string) bool {
		if kind != "blob-get" || broke.Swap(true) {
			return false
		}
		conn, buf, err := w.(http.Hijacker).Hijack()
		if err != nil {
			panic(err)
		}
		fmt.Fprintf(buf, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nContent-Type: application/octet-stream\r\n\r\n", len(data))
		buf.Write(data[:at])
		buf.Flush()
		conn.(*net.TCPConn).SetLinger(0) // RST, not FIN
		conn.Close()
		return true
	}
}

// A whole-blob stream that breaks off is resumed with a Range request from
// the byte where it stopped (or, where the server ignores Range, restarted
// with the bytes already read skipped): the reader sees one intact stream.
func TestBlobStreamResumes(t *testing.T) {
	for _, ignoreRange := range []bool{false, true} {
		t.Run(fmt.Sprintf("ignoreRange=%v", ignoreRange), func(t *testing.T) {
			reg := newFakeRegistry(t)
			data := randomBytes(256<<10, 12)
			d := reg.addBlob(data)
			reg.set(func(r *fakeRegistry) { r.fault = breakFirstStream(data, 100_000); r.ignoreRange = ignoreRange })
			opts, logs := testOptions(t)
			b, err := openRepo(t, reg, opts).OpenBlob(context.Background(), d, int64(len(data)))
			if err != nil {
				t.Fatal(err)
			}
			rc, err := b.Open(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(rc)
			rc.Close()
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("stream: %d bytes, %v", len(got), err)
			}
			if !strings.Contains(logs.String(), "blob stream broke off, resuming") {
				t.Errorf("no resumption logged:\n%s", logs.String())
			}
			if want := "bytes=100000-"; !ignoreRange && !strings.Contains(logs.String(), want) {
				t.Errorf("no request for %s:\n%s", want, logs.String())
			}
		})
	}
}

// A stream whose every attempt breaks gives up within the retry policy.
func TestBlobStreamGivesUp(t *testing.T) {
	reg := newFakeRegistry(t)
	data := randomBytes(64<<10, 13)
	d := reg.addBlob(data)
	reg.set(func(r *fakeRegistry) {
		r.fault = func(w http.ResponseWriter, req *http.Request, kind string) bool {
			if kind != "blob-get" && kind != "blob-range" {
				return false
			}
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close()
			return true
		}
	})
	opts, _ := testOptions(t)
	b, err := openRepo(t, reg, opts).OpenBlob(context.Background(), d, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if rc, err := b.Open(context.Background()); err == nil {
		_, err = io.ReadAll(rc)
		rc.Close()
		if err == nil {
			t.Fatal("a stream that never arrives was read")
		}
	}
}
