package index

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/imgfs/imgfs/manifest"
)

// DefaultSpanSize is the default spacing of gzip checkpoints in
// uncompressed bytes: a cold read of a small file decodes at most this much.
const DefaultSpanSize = 4 << 20

// maxSpanSize caps Options.SpanSize so that a span (SpanSize plus one
// deflate block) stays below maxSpanBytes.
const maxSpanSize = 8 << 20

// builder carries what every format builder needs.
type builder struct {
	opts     Options
	blob     Blob
	log      *slog.Logger
	format   manifest.Format
	spanSize int64
	progress func(done, total int64)
	keep     SpanBatch // this attempt's, nil: keep nothing
}

func (b *builder) newIndex() *Index {
	return &Index{
		Layer:    b.opts.Layer.Digest,
		Format:   b.format,
		SpanSize: b.spanSize,
		blobSize: b.blob.Size(),
	}
}

// Build indexes the layer from its blob, without looking at or writing the
// index cache. A plain zstd layer's decompressed copy is written under
// opts.CacheDir (or to an unlinked temporary file without one), and the
// returned Index holds it open until Close.
//
// To add a format: write build_<format>.go with a func(ctx, *builder)
// (*Index, error) that fills Entries (Offset in the addressable stream of
// its choice), Spans (tiling that stream; a new SpanKind if needed) and
// Meta; add its case below; add its SpanKind's case to decodeSpan and to
// Index.validate; and give index files a new version only if the encoding
// itself changes.
//
// A build that fails on bad bytes (a digest, CRC or decoder error: a byte
// flipped on the way, or a stream the network broke beyond what fetch
// resumes) starts again from the beginning, up to opts.Attempts in all:
// where a flipped byte was cannot be known before the digest check at the
// end, so no earlier point of the stream is known good. No index is ever
// made of bytes that failed the digest.
func Build(ctx context.Context, opts Options) (*Index, error) {
	b, err := newBuilder(opts)
	if err != nil {
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		b.keep = nil
		if opts.Keep != nil {
			b.keep = opts.Keep()
		}
		ix, err := b.build(ctx)
		if b.keep != nil {
			if err != nil {
				b.keep.Abort()
			} else if cerr := b.keep.Commit(); cerr != nil {
				b.log.Warn("could not keep the spans the build decoded; reads will fetch them", "err", cerr)
			}
		}
		if err == nil || attempt >= opts.Attempts || !worthRebuilding(ctx, err) {
			return ix, err
		}
		b.log.Warn("index build failed on bad input; starting again", "attempt", attempt, "err", err)
		if err := sleepContext(ctx, time.Duration(attempt)*rebuildDelay); err != nil {
			return nil, err
		}
	}
}

// NetworkAttempts is the Options.Attempts for blobs fetched over a
// network; rebuildDelay grows the pause between attempts.
const (
	NetworkAttempts = 3
	rebuildDelay    = 500 * time.Millisecond
)

// worthRebuilding reports whether a failed build may succeed on the same
// blob fetched again: not for what imgfs does not support, and not once
// the caller has given up.
func worthRebuilding(ctx context.Context, err error) bool {
	return ctx.Err() == nil && !errors.Is(err, ErrUnsupported) &&
		!errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}

func sleepContext(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// build makes one attempt.
func (b *builder) build(ctx context.Context) (*Index, error) {
	opts := b.opts
	var err error
	if b.format, err = detectFormat(ctx, opts.Layer.Format, b.blob, b.log); err != nil {
		return nil, fmt.Errorf("index layer %s: %w", opts.Layer.Digest, err)
	}
	var ix *Index
	switch b.format {
	case manifest.FormatTar:
		ix, err = buildTar(ctx, b)
	case manifest.FormatGzip:
		ix, err = buildGzip(ctx, b)
	case manifest.FormatEstargz:
		ix, err = buildEstargz(ctx, b)
	case manifest.FormatZstdChunked:
		ix, err = buildZstdChunked(ctx, b)
	case manifest.FormatZstd:
		ix, err = buildZstd(ctx, b)
	default:
		err = fmt.Errorf("layer format %q: %w", b.format, ErrUnsupported)
	}
	if err != nil {
		return nil, fmt.Errorf("index layer %s (%s): %w", opts.Layer.Digest, b.format, err)
	}
	if !ix.verified {
		if ix.Meta == nil {
			ix.Meta = map[string]string{}
		}
		ix.Meta[metaScope] = opts.Scope
	}
	if err := ix.validate(); err != nil {
		ix.Close()
		return nil, fmt.Errorf("index layer %s (%s): %w", opts.Layer.Digest, b.format, err)
	}
	return ix, nil
}

func newBuilder(opts Options) (*builder, error) {
	if opts.Blob == nil {
		return nil, errors.New("index: Options.Blob is nil")
	}
	if err := opts.Layer.Digest.Validate(); err != nil {
		return nil, fmt.Errorf("index: layer digest %q: %w", opts.Layer.Digest, err)
	}
	b := &builder{opts: opts, blob: opts.Blob, log: opts.logger(), spanSize: opts.SpanSize, progress: opts.Progress}
	if b.spanSize <= 0 {
		b.spanSize = DefaultSpanSize
	}
	b.spanSize = min(b.spanSize, maxSpanSize)
	return b, nil
}

// detectFormat trusts the manifest for TOC formats (they are valid gzip or
// zstd too, so magic bytes cannot tell them apart) and checks the magic
// bytes otherwise: registries do serve layers whose media type lies about
// their compression (schema 1, old tools).
func detectFormat(ctx context.Context, declared manifest.Format, blob Blob, log *slog.Logger) (manifest.Format, error) {
	switch declared {
	case manifest.FormatEstargz, manifest.FormatZstdChunked, manifest.FormatForeign:
		return declared, nil
	}
	head := make([]byte, 512)
	n, err := blob.ReadAt(ctx, head, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read first bytes: %w", err)
	}
	head = head[:n]
	var sniffed manifest.Format
	switch {
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		sniffed = manifest.FormatGzip
	case bytes.HasPrefix(head, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		sniffed = manifest.FormatZstd
	case n == 0 || n == 512 || declared == manifest.FormatTar:
		// An empty blob is an empty tar; anything else that is not
		// compressed is walked as a tar, which reports malformed headers.
		sniffed = manifest.FormatTar
	default:
		return "", fmt.Errorf("%d-byte blob is neither gzip, zstd nor tar: %w", n, ErrUnsupported)
	}
	if declared != "" && declared != manifest.FormatUnknown && declared != sniffed {
		log.Warn("layer content does not match its media type; using the content", "declared", declared, "detected", sniffed)
	}
	return sniffed, nil
}

func (o *Options) logger() *slog.Logger {
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	return log.With("layer", o.Layer.Digest.String())
}

// stream reads the whole blob from the start for one-pass builders: with
// one request when the blob can stream, else through large sequential
// ReadAt calls.
func (b *builder) stream(ctx context.Context) (io.Reader, func(), error) {
	if s, ok := b.blob.(Streamer); ok {
		rc, err := s.Open(ctx)
		if err != nil {
			return nil, nil, fmt.Errorf("open blob stream: %w", err)
		}
		return rc, func() { rc.Close() }, nil
	}
	return io.NewSectionReader(boundReaderAt{ctx, b.blob}, 0, b.blob.Size()), func() {}, nil
}

// boundReaderAt reads a Blob as an io.ReaderAt for the span of one
// operation (a build), for library code that takes one.
type boundReaderAt struct {
	ctx  context.Context
	blob Blob
}

func (r boundReaderAt) ReadAt(p []byte, off int64) (int, error) { return r.blob.ReadAt(r.ctx, p, off) }
