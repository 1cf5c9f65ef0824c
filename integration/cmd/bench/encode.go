package main

import (
	"bytes"
	"fmt"
	"io"
	"runtime"
	"strconv"
	"sync"

	"github.com/containerd/stargz-snapshotter/estargz"
	kgzip "github.com/klauspost/compress/gzip"
	digest "github.com/opencontainers/go-digest"

	"github.com/imgfs/imgfs/integration"
)

// The fixture builder compresses with compress/gzip (and eStargz at
// BestCompression, one core), 10-20 MB/s here: minutes for the bench
// images. These encoders write the same formats with klauspost/compress at
// the default level (3-5x faster, within 1-2% of the size) and eStargz on
// every core.

// gzipEncoder makes a single-member gzip blob.
func gzipEncoder(tarball []byte) (integration.EncodedLayer, error) {
	var out bytes.Buffer
	zw, err := kgzip.NewWriterLevel(&out, kgzip.DefaultCompression)
	if err != nil {
		return integration.EncodedLayer{}, err
	}
	if _, err := zw.Write(tarball); err != nil {
		return integration.EncodedLayer{}, err
	}
	if err := zw.Close(); err != nil {
		return integration.EncodedLayer{}, err
	}
	return integration.EncodedLayer{Blob: out.Bytes()}, nil
}

// fastEstargzCompression is the library's gzip compression with its chunk
// writer replaced; the TOC and footer are still written by the library.
type fastEstargzCompression struct {
	*estargz.GzipCompressor
	*estargz.GzipDecompressor
}

// Writer is called once per gzip member, i.e. per small file: writers are
// pooled, as a fresh one allocates about a megabyte of tables.
func (fastEstargzCompression) Writer(w io.Writer) (estargz.WriteFlushCloser, error) {
	if zw, ok := gzipWriters.Get().(*kgzip.Writer); ok {
		zw.Reset(w)
		return pooledGzipWriter{zw}, nil
	}
	zw, err := kgzip.NewWriterLevel(w, kgzip.DefaultCompression)
	return pooledGzipWriter{zw}, err
}

var gzipWriters sync.Pool

// pooledGzipWriter goes back to the pool once closed; the eStargz builder
// never touches a member's writer after closing it.
type pooledGzipWriter struct{ *kgzip.Writer }

func (p pooledGzipWriter) Close() error {
	err := p.Writer.Close()
	gzipWriters.Put(p.Writer)
	return err
}

// estargzEncoder converts the tar to eStargz (4 MiB chunks, the library
// default) and returns the annotations a registry image carries.
func estargzEncoder(tarball []byte) (integration.EncodedLayer, error) {
	comp := fastEstargzCompression{estargz.NewGzipCompressorWithLevel(kgzip.DefaultCompression), &estargz.GzipDecompressor{}}
	sb, err := estargz.Build(io.NewSectionReader(bytes.NewReader(tarball), 0, int64(len(tarball))),
		estargz.WithCompression(comp), estargz.WithParallelism(runtime.NumCPU()))
	if err != nil {
		return integration.EncodedLayer{}, fmt.Errorf("estargz build: %w", err)
	}
	defer sb.Close()
	blob, err := io.ReadAll(sb)
	if err != nil {
		return integration.EncodedLayer{}, fmt.Errorf("estargz read: %w", err)
	}
	size, err := sb.UncompressedSize()
	if err != nil {
		return integration.EncodedLayer{}, fmt.Errorf("estargz size: %w", err)
	}
	zr, err := kgzip.NewReader(bytes.NewReader(blob))
	if err != nil {
		return integration.EncodedLayer{}, fmt.Errorf("estargz decode: %w", err)
	}
	decoded, err := io.ReadAll(zr)
	if err != nil {
		return integration.EncodedLayer{}, fmt.Errorf("estargz decode: %w", err)
	}
	if got := digest.FromBytes(decoded); got != sb.DiffID() {
		return integration.EncodedLayer{}, fmt.Errorf("estargz diffID %s, decoded tar is %s", sb.DiffID(), got)
	}
	return integration.EncodedLayer{
		Blob: blob,
		Tar:  decoded,
		Annotations: map[string]string{
			integration.EstargzTOCDigestAnnotation:        sb.TOCDigest().String(),
			integration.EstargzUncompressedSizeAnnotation: strconv.FormatInt(size, 10),
		},
	}, nil
}

// encoderFor picks the fast encoder of a compression ("" for the
// builder's own: uncompressed tar).
func encoderFor(c integration.Compression) integration.LayerEncoder {
	switch c {
	case integration.Gzip:
		return gzipEncoder
	case integration.Estargz:
		return estargzEncoder
	}
	return nil
}
