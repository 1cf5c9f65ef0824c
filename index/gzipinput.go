package index

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
)

// decoderLookbehind is how far behind the bytes consumed from the bufio
// reader a deflate block boundary can still be: the inflater holds at most
// 32 bits it has read but not used.
const decoderLookbehind = 8

// compressedInput sits between the blob and the bufio.Reader the inflater
// reads from. As the bytes pass it hashes all of them (the blob digest) and
// the bytes of the current span (the span digest). A span ends at a deflate
// block boundary the inflater reports only after reading past it, so span
// bytes are hashed lazily: bytes the inflater has certainly finished with
// are hashed when the next chunk is read, the few after them are kept until
// the boundary is known.
type compressedInput struct {
	ctx      context.Context
	src      io.Reader
	br       *bufio.Reader // the reader fed by this one, to know what was consumed
	blobHash hash.Hash
	total    int64 // bytes read from src
	size     int64 // expected blob size, for progress
	progress func(done, total int64)

	spanHash  hash.Hash
	spanOpen  bool
	hashedPos int64  // span bytes before this offset are in spanHash
	pending   []byte // blob bytes from pendingAt to total not yet hashed or dropped
	pendingAt int64
}

func newCompressedInput(ctx context.Context, src io.Reader, blobHash hash.Hash, size int64, progress func(done, total int64)) *compressedInput {
	return &compressedInput{ctx: ctx, src: src, blobHash: blobHash, size: size, progress: progress, spanHash: sha256.New()}
}

func (c *compressedInput) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	c.catchUp()
	n, err := c.src.Read(p)
	if n > 0 {
		c.blobHash.Write(p[:n])
		c.pending = append(c.pending, p[:n]...)
		c.total += int64(n)
		if c.progress != nil {
			c.progress(c.total, c.size)
		}
	}
	return n, err
}

// consumed is the offset of the next byte the inflater or header parser
// will read.
func (c *compressedInput) consumed() int64 { return c.total - int64(c.br.Buffered()) }

// catchUp hashes (or, between spans, drops) pending bytes the decoder is done with.
func (c *compressedInput) catchUp() {
	safe := c.consumed() - decoderLookbehind
	if safe <= c.hashedPos {
		return
	}
	if c.spanOpen {
		c.spanHash.Write(c.pending[c.hashedPos-c.pendingAt : safe-c.pendingAt])
	}
	c.hashedPos = safe
	c.drop(safe)
}

// drop forgets pending bytes before off.
func (c *compressedInput) drop(off int64) {
	k := int(off - c.pendingAt)
	if k <= 0 {
		return
	}
	rest := copy(c.pending, c.pending[k:])
	c.pending = c.pending[:rest]
	c.pendingAt = off
}

// errSpanBookkeeping means a span boundary fell outside the compressed
// bytes still held; trueBitOffset's bounds make it unreachable, but a wrong
// index must never be the outcome, so it is checked rather than assumed.
var errSpanBookkeeping = errors.New("internal error: span boundary outside the buffered compressed bytes")

// startSpan begins hashing a span at blob offset off, which must not be
// before bytes already dropped (it never is: spans start at most 4 bytes
// before the decoder's position, see decoderLookbehind).
func (c *compressedInput) startSpan(off int64) error {
	if off < c.pendingAt || off > c.total {
		return fmt.Errorf("%w: start %d, buffered %d-%d", errSpanBookkeeping, off, c.pendingAt, c.total)
	}
	c.spanHash.Reset()
	c.spanOpen = true
	c.hashedPos = off
	return nil
}

// endSpan finishes the current span at blob offset end (exclusive) and
// returns its digest.
func (c *compressedInput) endSpan(end int64) (sum [32]byte, err error) {
	if !c.spanOpen || end < c.hashedPos || end > c.total {
		return sum, fmt.Errorf("%w: end %d, hashed to %d, read %d", errSpanBookkeeping, end, c.hashedPos, c.total)
	}
	c.spanHash.Write(c.pending[c.hashedPos-c.pendingAt : end-c.pendingAt])
	c.spanHash.Sum(sum[:0])
	c.spanOpen = false
	return sum, nil
}
