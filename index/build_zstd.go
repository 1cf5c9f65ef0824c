package index

import (
	"bufio"
	"context"
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
	"path/filepath"

	"github.com/klauspost/compress/zstd"
	digest "github.com/opencontainers/go-digest"
)

// buildZstd indexes a plain tar+zstd layer in one streaming pass: the blob
// digest is checked as the bytes pass, the tar headers are walked in the
// decompressed stream, and the whole decompressed stream is written to a
// local copy (LocalPath under the cache dir, or an unlinked temporary file
// without one), because a zstd frame cannot be entered midway and a layer
// is usually one frame. Reads are then served from that copy in SpanLocal
// spans of SpanSize bytes whose sha256 is recorded here, so a damaged copy
// is detected. Such a layer is not lazy: the whole blob is fetched once.
func buildZstd(ctx context.Context, b *builder) (ix *Index, err error) {
	alg := b.opts.Layer.Digest.Algorithm()
	if !alg.Available() {
		return nil, fmt.Errorf("digest algorithm %q: %w", alg, ErrUnsupported)
	}
	size := b.blob.Size()
	src, closeSrc, err := b.stream(ctx)
	if err != nil {
		return nil, err
	}
	defer closeSrc()
	in := &hashingReader{ctx: ctx, r: bufio.NewReaderSize(src, gzipReadBuffer), hash: alg.Hash(), size: size, progress: b.progress}
	// Synchronous decoding: the decoder reads in this goroutine, so the
	// digest and progress bookkeeping need no locking.
	dec, err := zstd.NewReader(in, zstd.WithDecoderConcurrency(1))
	if err != nil {
		return nil, fmt.Errorf("zstd decoder: %w", err)
	}
	defer dec.Close()

	lw, err := newLocalWriter(b.opts.CacheDir, b.opts.Layer.Digest)
	if err != nil {
		return nil, err
	}
	committed := false
	defer func() {
		if !committed {
			lw.abort()
		}
	}()
	ix = b.newIndex()
	out := &localStream{src: dec, w: bufio.NewWriterSize(lw.f, gzipReadBuffer), spanSize: b.spanSize, ix: ix, hash: sha256.New()}
	walker := &tarWalker{log: b.log, pos: func() int64 { return out.out }}
	if err := walker.collect(ctx, out, ix); err != nil {
		return nil, err
	}
	// Keep what follows the tar (padding) and verify the rest of the blob.
	if _, err := io.Copy(io.Discard, out); err != nil {
		return nil, err
	}
	if _, err := io.Copy(io.Discard, in); err != nil {
		return nil, fmt.Errorf("read blob: %w", err)
	}
	if in.total != size {
		return nil, fmt.Errorf("blob stream has %d bytes, expected %d: %w", in.total, size, io.ErrUnexpectedEOF)
	}
	if got := digest.NewDigest(alg, in.hash); got != b.opts.Layer.Digest {
		return nil, fmt.Errorf("blob digest is %s: %w", got, ErrCorrupt)
	}
	out.cut()
	if err := out.w.Flush(); err != nil {
		return nil, fmt.Errorf("write local copy: %w", err)
	}
	if ix.local, err = lw.commit(); err != nil {
		return nil, err
	}
	committed = true
	ix.usize = out.out
	ix.verified = true
	if lw.final != "" {
		ix.Meta = map[string]string{metaLocal: filepath.ToSlash(localRel(b.opts.Layer.Digest))}
	}
	return ix, nil
}

// hashingReader hashes, counts and reports the compressed bytes.
type hashingReader struct {
	ctx      context.Context
	r        io.Reader
	hash     hash.Hash
	total    int64
	size     int64
	progress func(done, total int64)
}

func (h *hashingReader) Read(p []byte) (int, error) {
	if err := h.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := h.r.Read(p)
	if n > 0 {
		h.hash.Write(p[:n])
		h.total += int64(n)
		if h.progress != nil {
			h.progress(h.total, h.size)
		}
	}
	return n, err
}

// localStream hands the decompressed stream to the tar walker while
// writing it to the local copy and cutting it into SpanLocal spans.
type localStream struct {
	src      io.Reader
	w        *bufio.Writer
	spanSize int64
	ix       *Index
	hash     hash.Hash
	out      int64 // bytes returned so far
	spanLen  int64 // bytes of the current span so far
}

func (l *localStream) Read(p []byte) (int, error) {
	n, err := l.src.Read(p)
	if n > 0 {
		if _, werr := l.w.Write(p[:n]); werr != nil {
			return 0, fmt.Errorf("write local copy: %w", werr)
		}
		for b := p[:n]; len(b) > 0; {
			k := min(int64(len(b)), l.spanSize-l.spanLen)
			l.hash.Write(b[:k])
			l.spanLen += k
			l.out += k
			b = b[k:]
			if l.spanLen == l.spanSize {
				l.cut()
			}
		}
	}
	if err != nil && err != io.EOF {
		err = fmt.Errorf("zstd: %w", err)
	}
	return n, err
}

// cut ends the current span, if it has any bytes.
func (l *localStream) cut() {
	if l.spanLen == 0 {
		return
	}
	s := Span{UOff: l.out - l.spanLen, ULen: l.spanLen, Kind: SpanLocal, Check: CheckDecoded, Window: -1}
	l.hash.Sum(s.Digest[:0])
	l.ix.Spans = append(l.ix.Spans, s)
	l.hash.Reset()
	l.spanLen = 0
}
