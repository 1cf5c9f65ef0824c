package index

import (
	"bufio"
	"context"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"

	"github.com/klauspost/compress/flate"
	digest "github.com/opencontainers/go-digest"

	"github.com/imgfs/imgfs/manifest"
)

// gzipReadBuffer is the size of the reads the gzip builder makes from the
// blob (one ReadAt or one Read of the stream each).
const gzipReadBuffer = 1 << 20

// buildGzip indexes a tar+gzip layer in one streaming pass: it inflates every
// member, walks the tar headers in the output, and records a checkpoint (a
// deflate block boundary, its bit offset and the 32 KiB of output before it)
// at the start of the stream, at gzip member starts at least SpanSize/4 past
// the previous checkpoint, and at the first non-final block end after every
// SpanSize of output. Each span between checkpoints records the sha256 of its
// compressed bytes, and the blob digest is checked as the bytes pass, so no
// index is produced for a blob that does not match its digest.
func buildGzip(ctx context.Context, b *builder) (*Index, error) {
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

	in := newCompressedInput(ctx, src, alg.Hash(), size, b.progress)
	in.br = bufio.NewReaderSize(in, gzipReadBuffer)
	ix := b.newIndex()
	gz := &gzipStream{in: in, ix: ix, spanSize: b.spanSize, windows: newWindowPacker()}
	if b.keep != nil {
		// The index is verified if the build succeeds: name the spans so.
		gz.kept = &keptOutput{batch: b.keep, prefix: keyPrefix(ix.Layer, manifest.FormatGzip, "", true, ""), log: b.log}
	}

	walker := &tarWalker{log: b.log, pos: func() int64 { return gz.out }, hideTOCArtefacts: true}
	if err := walker.collect(ctx, gz, ix); err != nil {
		return nil, err
	}
	// The tar may end before the stream does (padding, or members after the
	// end-of-archive marker): inflate the rest to verify it and the digest.
	if _, err := io.Copy(io.Discard, gz); err != nil {
		return nil, err
	}
	if in.total != size {
		return nil, fmt.Errorf("blob stream has %d bytes, expected %d: %w", in.total, size, io.ErrUnexpectedEOF)
	}
	if got := digest.NewDigest(alg, in.blobHash); got != b.opts.Layer.Digest {
		return nil, fmt.Errorf("blob digest is %s: %w", got, ErrCorrupt)
	}
	if err := gz.finish(); err != nil {
		return nil, err
	}
	ix.windows = gz.windows.windows
	ix.usize = gz.out
	ix.verified = true
	return ix, nil
}

// gzipStream inflates a (multi-member) gzip stream for the tar walker and
// cuts it into spans as it goes.
type gzipStream struct {
	in       *compressedInput
	ix       *Index
	spanSize int64
	windows  *windowPacker

	fr           io.ReadCloser // inflater of the current member, nil between members
	members      int
	deflateStart int64  // blob offset of the current member's deflate stream
	memberOut    int64  // output of the current member so far
	memberCRC    uint32 // CRC-32 of that output
	drift        int64  // bytes the inflater over-counts in the current member, see onBlockEnd
	out          int64  // total output returned
	done         bool
	err          error // sticky
	cpErr        error // a checkpoint that could not be placed, reported by Read

	span        Span        // the span being built; its ULen and Digest are set when it ends
	spanEntries int         // len(ix.Entries) when it started: the tar walker lags the inflater by its read-ahead, which only blurs where density is seen
	kept        *keptOutput // nil: the decoded spans are not kept
}

func (g *gzipStream) Read(p []byte) (int, error) {
	for {
		if g.err != nil {
			return 0, g.err
		}
		if g.done {
			return 0, io.EOF
		}
		if g.fr == nil {
			if g.err = g.startMember(); g.err != nil {
				if g.err == io.EOF {
					g.err, g.done = nil, true
				}
				continue
			}
		}
		n, err := g.fr.Read(p)
		if g.cpErr != nil {
			g.err = g.cpErr
			return 0, g.err
		}
		if g.kept != nil {
			g.kept.write(p[:n], g.out, g.ix.Spans)
		}
		g.memberCRC = crc32.Update(g.memberCRC, crc32.IEEETable, p[:n])
		g.memberOut += int64(n)
		g.out += int64(n)
		switch {
		case err == io.EOF:
			g.err = g.endMember()
		case err != nil:
			g.err = fmt.Errorf("inflate gzip member %d: %w", g.members, noEOF(err))
		}
		if n > 0 {
			return n, nil
		}
	}
}

// startMember reads a member header and sets up its inflater. It returns
// io.EOF at the clean end of the stream.
func (g *gzipStream) startMember() error {
	start := g.in.consumed()
	if _, err := readGzipHeader(g.in.br); err != nil {
		if err == io.EOF && g.members > 0 {
			return io.EOF
		}
		if err == io.EOF {
			err = fmt.Errorf("%w: empty blob", errGzipHeader)
		}
		return fmt.Errorf("gzip member %d at blob offset %d: %w", g.members, start, err)
	}
	g.deflateStart = g.in.consumed()
	g.memberOut, g.memberCRC, g.drift = 0, 0, 0
	switch {
	case g.members == 0:
		if err := g.in.startSpan(g.deflateStart); err != nil {
			return err
		}
		g.span = Span{UOff: 0, COff: g.deflateStart, Kind: SpanDeflate, Check: CheckCompressed, Window: -1}
	case g.span.UOff == g.out && g.span.Window >= 0:
		// The previous member's last block ended a span where the member
		// ended: start that span here instead, without the window.
		if err := g.in.startSpan(g.deflateStart); err != nil {
			return err
		}
		g.windows.dropLast(g.span.Window)
		g.span = Span{UOff: g.out, COff: g.deflateStart, Kind: SpanDeflate, Check: CheckCompressed, Window: -1}
	case g.out-g.span.UOff >= max(1, g.spanSize/4):
		// A member start is a free checkpoint: no bit offset, no history.
		if err := g.cut(g.deflateStart*8, g.out, nil); err != nil {
			return err
		}
	}
	g.members++
	g.fr = flate.NewReaderOpts(g.in.br, flate.WithEobCallback(g.onBlockEnd))
	return nil
}

// endMember checks the member trailer.
func (g *gzipStream) endMember() error {
	g.fr = nil
	crc, isize, err := readGzipTrailer(g.in.br)
	if err != nil {
		return fmt.Errorf("gzip member %d: %w", g.members-1, err)
	}
	if crc != g.memberCRC || isize != uint32(g.memberOut) {
		return fmt.Errorf("gzip member %d: trailer says crc %#08x size %d, data has crc %#08x size %d: %w",
			g.members-1, crc, isize, g.memberCRC, uint32(g.memberOut), ErrCorrupt)
	}
	return nil
}

// onBlockEnd is the inflater's end-of-block callback. cp offsets are
// relative to the member's deflate stream; cp.Window is only valid during
// the call (the window packer compresses it before returning).
func (g *gzipStream) onBlockEnd(cp flate.InflateCheckpoint) {
	bit, ok := g.trueBitOffset(cp)
	if !ok {
		g.cpErr = fmt.Errorf("gzip member %d: inflater reported block end at bit %d, inconsistent with %d bytes consumed",
			g.members-1, cp.CompressedOffset*8+int64(cp.BitOffset), g.in.consumed()-g.deflateStart)
		return
	}
	if cp.Final || g.cpErr != nil {
		return // nothing follows a final block inside this member
	}
	memberBase := g.out - g.memberOut // output of earlier members
	u := memberBase + cp.UncompressedOffset
	if !g.spanFull(u - g.span.UOff) {
		return
	}
	g.cpErr = g.cut(g.deflateStart*8+bit, u, cp.Window)
}

// spanFull says whether the span being built, now length bytes long, should
// end at this block end. Spans are SpanSize long where files are large (a
// big file is read sequentially: large spans cost nothing), and shorter
// where many small files sit, since reading one of them decodes its whole
// span: an eighth of SpanSize where the span holds at least 16 entries
// (32 KiB each on average at the default), a quarter where it holds 4. A
// checkpoint costs its window, 32 KiB compressed as well as the data
// compresses (10-16 KiB), so the extra checkpoints stop while the windows
// would take more than windowBudget of the output so far.
func (g *gzipStream) spanFull(length int64) bool {
	entries := len(g.ix.Entries) - g.spanEntries
	switch {
	case length >= g.spanSize:
		return true
	case g.windows.bytes+maxWindow/2 > windowBudget(g.out, len(g.ix.Entries)):
		return false
	case length >= g.spanSize/4 && entries >= 4:
		return true
	default:
		return length >= g.spanSize/8 && entries >= 16
	}
}

// windowBudget bounds the windows of the extra checkpoints placed where
// files are small, for out bytes of output holding entries entries: 1% of
// the output plus 64 B per entry, at most 2% of the output. The index (an
// entry takes about 50 B) then stays within both of its size targets: 1% of
// the uncompressed size plus 128 B per entry (docs/PERFORMANCE.md P7), and
// 3% of the uncompressed size where files are not tiny.
func windowBudget(out int64, entries int) int64 {
	return min(out*2/100, out/100+64*int64(entries))
}

// trueBitOffset corrects the block-end position the inflater reports.
//
// klauspost/compress v1.20.4's inflater over-counts its input position at
// the start of a stored block: bytes already in its bit buffer are counted
// again (dataBlock adds nb>>3 to roffset), so CompressedOffset drifts ahead
// by up to 4 bytes per stored block. The bytes it really consumed are known
// exactly (bufio.Reader consumption), so the drift can be recovered: with
// nb bits still unused in its buffer (0..32), reported = 8*(consumed+drift)
// - nb. The drift only grows at a stored block, after which nb is 0; so
// x = reported - 8*consumed = 8*drift - nb exceeds 8*drift exactly when a
// stored block added drift, and then x/8 is the new drift.
func (g *gzipStream) trueBitOffset(cp flate.InflateCheckpoint) (int64, bool) {
	consumed := g.in.consumed() - g.deflateStart
	reported := cp.CompressedOffset*8 + int64(cp.BitOffset)
	if x := reported - 8*consumed; x > 8*g.drift {
		if x%8 != 0 {
			return 0, false
		}
		g.drift = x / 8
	}
	bit := reported - 8*g.drift
	return bit, bit <= 8*consumed && bit >= 8*consumed-32
}

// cut ends the current span at blob bit position bit and stream offset u,
// and starts the next one there with the given history window.
func (g *gzipStream) cut(bit, u int64, window []byte) error {
	g.span.ULen = u - g.span.UOff
	end := (bit + 7) / 8 // a boundary inside a byte: that byte belongs to both spans
	g.span.CLen = end - g.span.COff
	var err error
	if g.span.Digest, err = g.in.endSpan(end); err != nil {
		return err
	}
	g.ix.Spans = append(g.ix.Spans, splitSpan(g.span, g.spanSize)...)

	w := int32(-1)
	if len(window) > 0 {
		w = g.windows.add(window)
	}
	if err := g.in.startSpan(bit / 8); err != nil {
		return err
	}
	g.span = Span{UOff: u, COff: bit / 8, Bit: uint8(bit % 8), Kind: SpanDeflate, Check: CheckCompressed, Window: w}
	g.spanEntries = len(g.ix.Entries)
	return nil
}

// finish ends the last span at the end of the blob. A last span that would
// decode to nothing (an empty final block after a checkpoint) is dropped:
// its neighbour already ends where the stream does.
func (g *gzipStream) finish() error {
	if g.out-g.span.UOff == 0 {
		return nil
	}
	g.span.ULen = g.out - g.span.UOff
	g.span.CLen = g.in.total - g.span.COff
	var err error
	if g.span.Digest, err = g.in.endSpan(g.in.total); err != nil {
		return err
	}
	g.ix.Spans = append(g.ix.Spans, splitSpan(g.span, g.spanSize)...)
	if g.kept != nil {
		g.kept.write(nil, g.out, g.ix.Spans)
	}
	return nil
}

// splitSpan cuts a span that decodes to more than maxSpanBytes (encoders
// end a deflate block every few MiB at most, except on long runs of one
// byte: klauspost's best compression writes one block for hundreds of MiB
// of zeros) into pieces of size bytes that each decode from the same
// checkpoint and skip what comes before them. Memory stays bounded; a
// piece far into the block costs the inflating of what precedes it.
func splitSpan(s Span, size int64) []Span {
	if s.ULen <= maxSpanBytes {
		return []Span{s}
	}
	var out []Span
	for skip := int64(0); skip < s.ULen; skip += size {
		p := s
		p.UOff, p.ULen, p.Skip = s.UOff+skip, min(size, s.ULen-skip), skip
		out = append(out, p)
	}
	return out
}

// keptOutput collects a gzip build's output span by span and hands every
// complete span to the batch (see Options.Keep).
type keptOutput struct {
	batch  SpanBatch
	prefix string
	log    *slog.Logger
	buf    []byte // output from stream offset start on
	start  int64  // -1: not collecting until the next span starts
	next   int    // index of the next span to hand over
	failed bool
}

// write takes output p, which starts at stream offset at, and hands over
// the spans (of spans, the index so far) it completes. A span too large to
// hold (a giant deflate block) is skipped, and collecting starts again at
// the next span: reads fetch what was skipped.
func (k *keptOutput) write(p []byte, at int64, spans []Span) {
	if k.failed {
		return
	}
	end := at + int64(len(p))
	if k.start >= 0 && k.start <= end {
		k.buf = append(k.buf, p[max(0, k.start-at):]...)
	}
	for k.next < len(spans) && spans[k.next].end() <= end {
		s := &spans[k.next]
		k.next++
		if k.start < 0 || s.UOff < k.start {
			continue
		}
		if err := k.batch.Add(spanKey(k.prefix, s), k.buf[s.UOff-k.start:s.end()-k.start]); err != nil {
			k.log.Warn("could not keep the spans the build decodes; reads will fetch them", "err", err)
			k.failed, k.buf = true, nil
			return
		}
		n := copy(k.buf, k.buf[s.end()-k.start:])
		k.buf, k.start = k.buf[:n], s.end()
	}
	if k.start < 0 && k.next == len(spans) {
		var cur int64 // where the span being built starts
		if len(spans) > 0 {
			cur = spans[len(spans)-1].end()
		}
		if cur >= at && cur <= end {
			k.start, k.buf = cur, append(k.buf[:0], p[cur-at:]...)
		}
	}
	if int64(len(k.buf)) > maxSpanBytes+gzipReadBuffer {
		k.start, k.buf = -1, k.buf[:0] // a giant block: wait for the next span
	}
}
