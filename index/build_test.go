package index

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand"
	"strings"
	"sync/atomic"
	"testing"

	kgzip "github.com/klauspost/compress/gzip"

	"github.com/imgfs/imgfs/manifest"
	digest "github.com/opencontainers/go-digest"
)

func TestGzipWrongLayerDigest(t *testing.T) {
	rng := rand.New(rand.NewSource(21))
	tarData, _ := randomLayer(rng, 20, 50<<10)
	data := gzipBytes(tarData, 6)
	opts := buildOpts(data, manifest.FormatGzip, 0)
	opts.Layer.Digest = digest.FromString("something else")
	if _, err := Build(context.Background(), opts); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Build with the wrong digest: %v, want ErrCorrupt", err)
	}
}

// TestGzipDamagedBlobs: every way a gzip blob can be damaged is an error.
func TestGzipDamagedBlobs(t *testing.T) {
	rng := rand.New(rand.NewSource(22))
	tarData, _ := randomLayer(rng, 20, 50<<10)
	good := gzipBytes(tarData, 6)
	damage := map[string][]byte{
		"truncated":            good[:len(good)*2/3],
		"truncated trailer":    good[:len(good)-3],
		"trailing garbage":     append(bytes.Clone(good), "garbage"...),
		"trailing zeros":       append(bytes.Clone(good), make([]byte, 100)...),
		"crc mismatch":         func() []byte { b := bytes.Clone(good); b[len(b)-8] ^= 1; return b }(),
		"size mismatch":        func() []byte { b := bytes.Clone(good); b[len(b)-1] ^= 1; return b }(),
		"bad header crc":       corruptHeaderCRC(gzipMemberWithHeader(tarData, 1, rng)),
		"not deflate":          func() []byte { b := bytes.Clone(good); b[2] = 7; return b }(),
		"flipped deflate byte": func() []byte { b := bytes.Clone(good); b[len(b)/2] ^= 0x10; return b }(),
		"empty":                {0x1f, 0x8b},
	}
	for name, data := range damage {
		t.Run(name, func(t *testing.T) {
			opts := buildOpts(data, manifest.FormatGzip, 64<<10) // digest of the damaged bytes: only the damage is wrong
			ix, err := Build(context.Background(), opts)
			if err == nil {
				t.Fatalf("Build of a damaged blob succeeded with %d entries", len(ix.Entries))
			}
		})
	}
}

// corruptHeaderCRC flips the FHCRC field of a member written by
// gzipMemberWithHeader.
func corruptHeaderCRC(b []byte) []byte {
	b = bytes.Clone(b)
	xlen := int(b[10]) | int(b[11])<<8
	i := 12 + xlen
	i += bytes.IndexByte(b[i:], 0) + 1 // FNAME
	i += bytes.IndexByte(b[i:], 0) + 1 // FCOMMENT
	b[i] ^= 0xff
	return b
}

// TestStoredBlockCheckpoints is the regression test for the inflater's
// input position drifting after stored blocks: with a checkpoint at every
// block end of a level-0 stream (and of mixed streams), every span must
// decode to the right bytes.
func TestStoredBlockCheckpoints(t *testing.T) {
	rng := rand.New(rand.NewSource(23))
	tarData, _ := randomLayer(rng, 40, 200<<10)
	for _, data := range [][]byte{gzipBytes(tarData, 0), gzipBytes(tarData, 1), gzipBytes(tarData, -2), klauspostGzip(tarData, 9), multiMember(tarData, rng, 10)} {
		ix, err := Build(context.Background(), buildOpts(data, manifest.FormatGzip, 1))
		if err != nil {
			t.Fatal(err)
		}
		if len(ix.Spans) < 5 {
			t.Fatalf("%d spans: expected one per block", len(ix.Spans))
		}
		for i := range ix.Spans {
			s := &ix.Spans[i]
			comp := make([]byte, s.CLen+inflatePad)
			copy(comp, data[s.COff:s.COff+s.CLen])
			got, err := ix.decodeSpan(s, comp, &spanDecoders{})
			if err != nil || !bytes.Equal(got, tarData[s.UOff:s.end()]) {
				t.Fatalf("span %d (c %d+%d bit %d): err %v, bytes equal %v", i, s.COff, s.CLen, s.Bit, err, bytes.Equal(got, tarData[s.UOff:s.end()]))
			}
		}
	}
}

// TestCheckpointPlacement: checkpoints at the start, at member starts at
// least SpanSize/4 past the previous one, and at the first block end after
// every SpanSize of output (or sooner where files are small, see
// TestCheckpointsFollowFileDensity), never less than SpanSize/8 apart.
func TestCheckpointPlacement(t *testing.T) {
	rng := rand.New(rand.NewSource(24))
	tarData, _ := randomLayer(rng, 60, 300<<10)
	const spanSize = 100 << 10
	var data []byte
	memberStarts := map[int64]bool{}
	for start := 0; start < len(tarData); start += len(tarData) / 7 {
		end := min(len(tarData), start+len(tarData)/7)
		memberStarts[int64(start)] = true
		data = append(data, gzipBytes(tarData[start:end], 6)...)
	}
	ix, err := Build(context.Background(), buildOpts(data, manifest.FormatGzip, spanSize))
	if err != nil {
		t.Fatal(err)
	}
	memberCheckpoints := 0
	for i, s := range ix.Spans {
		if s.Check != CheckCompressed {
			t.Fatalf("span %d has no digest", i)
		}
		if memberStarts[s.UOff] {
			memberCheckpoints++
			if s.Window != -1 || s.Bit != 0 {
				t.Fatalf("member-start span %d has a window or bit offset", i)
			}
		} else if s.Window == -1 {
			t.Fatalf("span %d starts inside a member without a window", i)
		}
		if i+1 < len(ix.Spans) && !memberStarts[ix.Spans[i+1].UOff] && s.ULen < spanSize/8 {
			t.Fatalf("span %d ends at a block boundary after only %d bytes", i, s.ULen)
		}
		if s.ULen > spanSize+(1<<20) {
			t.Fatalf("span %d decodes to %d bytes", i, s.ULen)
		}
	}
	for u := range memberStarts {
		i := spanAt(ix.Spans, u)
		if ix.Spans[i].UOff != u && u-ix.Spans[i].UOff >= spanSize/4 {
			t.Fatalf("member at %d is %d bytes past a checkpoint but got none", u, u-ix.Spans[i].UOff)
		}
	}
	if memberCheckpoints < 3 {
		t.Fatalf("only %d member-start checkpoints", memberCheckpoints)
	}
	if ix.Spans[0].COff != 10 || ix.Spans[0].Window != -1 {
		t.Fatalf("first span %+v does not start at the deflate stream", ix.Spans[0])
	}
}

// TestGzipPrefersStreamerAndReportsProgress.
func TestGzipPrefersStreamerAndReportsProgress(t *testing.T) {
	rng := rand.New(rand.NewSource(25))
	tarData, _ := randomLayer(rng, 100, 2<<20)
	data := gzipBytes(tarData, 0) // several read buffers' worth
	opts := buildOpts(data, manifest.FormatGzip, 0)
	sb := &streamBlob{memBlob: newMemBlob(data)}
	opts.Blob = sb
	var calls int
	var last int64
	opts.Progress = func(done, total int64) {
		if done < last || total != int64(len(data)) {
			t.Errorf("progress %d/%d after %d", done, total, last)
		}
		last = done
		calls++
	}
	if _, err := Build(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	if sb.opened.Load() != 1 || sb.bytes.Load() > 512 {
		t.Fatalf("streamer opened %d times, %d bytes read with ReadAt", sb.opened.Load(), sb.bytes.Load())
	}
	if calls < 2 || last != int64(len(data)) {
		t.Fatalf("%d progress calls, last %d of %d", calls, last, len(data))
	}
}

// TestTarBuildSkipsFileData: walking an uncompressed tar fetches headers in
// windows and skips the data of large files.
func TestTarBuildSkipsFileData(t *testing.T) {
	var files []tarFile
	big := make([]byte, 8<<20)
	for i := range 4 {
		files = append(files, tarFile{hdr: tarHeader("big"+string(rune('a'+i)), len(big)), content: big})
	}
	data := writeTar(t, files)
	opts := buildOpts(data, manifest.FormatTar, 0)
	ix, err := Build(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(ix.Entries) != 4 {
		t.Fatalf("%d entries", len(ix.Entries))
	}
	blob := opts.Blob.(*memBlob)
	if fetched := blob.bytes.Load(); fetched > int64(len(data))/4 {
		t.Fatalf("walking headers fetched %d of %d bytes", fetched, len(data))
	}
}

// TestFormatSniffing: content decides between tar and gzip when the media
// type is wrong or missing.
func TestFormatSniffing(t *testing.T) {
	rng := rand.New(rand.NewSource(26))
	tarData, _ := randomLayer(rng, 10, 10<<10)
	gz := gzipBytes(tarData, 1)
	for _, c := range []struct {
		data     []byte
		declared manifest.Format
		want     manifest.Format
	}{
		{tarData, manifest.FormatGzip, manifest.FormatTar},
		{gz, manifest.FormatTar, manifest.FormatGzip},
		{gz, "", manifest.FormatGzip},
		{tarData, manifest.FormatUnknown, manifest.FormatTar},
		{nil, manifest.FormatTar, manifest.FormatTar},
	} {
		ix, err := Build(context.Background(), buildOpts(c.data, c.declared, 0))
		if err != nil {
			t.Fatalf("declared %q: %v", c.declared, err)
		}
		if ix.Format != c.want {
			t.Fatalf("declared %q: format %q, want %q", c.declared, ix.Format, c.want)
		}
	}
	if _, err := Build(context.Background(), buildOpts([]byte("hello"), "", 0)); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("5-byte blob: %v", err)
	}
	if _, err := Build(context.Background(), buildOpts(gz, manifest.FormatZstdChunked, 0)); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("zstd:chunked: %v", err)
	}
}

// TestIndexSizeTarget: at the default span size the stored index stays
// within 1% of the uncompressed size plus 128 bytes per entry (P7), even
// for incompressible content.
func TestIndexSizeTarget(t *testing.T) {
	rng := rand.New(rand.NewSource(27))
	var files []tarFile
	for i := range 2000 {
		files = append(files, tarFile{hdr: tarHeader("usr/share/doc/pkg"+string(rune('a'+i%26))+"/file"+string(rune('0'+i%10))+randName(rng), 0)})
	}
	for range 4 {
		content := make([]byte, 5<<20)
		rng.Read(content)
		files = append(files, tarFile{hdr: tarHeader("blob"+randName(rng), len(content)), content: content})
	}
	tarData := writeTar(t, files)
	ix, err := Build(context.Background(), buildOpts(gzipBytes(tarData, 1), manifest.FormatGzip, 0))
	if err != nil {
		t.Fatal(err)
	}
	size := len(encodeIndex(ix))
	limit := len(tarData)/100 + 128*len(ix.Entries)
	if size > limit {
		t.Fatalf("index is %d bytes, limit %d", size, limit)
	}
	t.Logf("index %d bytes for %d entries, %d spans, %d MiB", size, len(ix.Entries), len(ix.Spans), len(tarData)>>20)
}

func randName(rng *rand.Rand) string {
	b := make([]byte, 8)
	for i := range b {
		b[i] = 'a' + byte(rng.Intn(26))
	}
	return string(b)
}

func TestBuildCancelled(t *testing.T) {
	rng := rand.New(rand.NewSource(28))
	tarData, _ := randomLayer(rng, 20, 50<<10)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, data := range [][]byte{tarData, gzipBytes(tarData, 1)} {
		if _, err := Build(ctx, buildOpts(data, "", 0)); !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled build: %v", err)
		}
	}
}

func klauspostGzip(data []byte, level int) []byte {
	var buf bytes.Buffer
	w, err := kgzip.NewWriterLevel(&buf, level)
	if err != nil {
		panic(err)
	}
	w.Write(data)
	w.Close()
	return buf.Bytes()
}

// A build that meets a flipped byte fails its digest check and, with
// Attempts, starts again and succeeds; without, it fails: never an index
// of the bad bytes.
func TestBuildStartsAgainAfterBadBytes(t *testing.T) {
	rng := rand.New(rand.NewSource(40))
	tarData, _ := randomLayer(rng, 30, 64<<10)
	data := gzipBytes(tarData, 6)
	for _, attempts := range []int{1, 3} {
		opts := buildOpts(data, manifest.FormatGzip, 64<<10)
		blob := opts.Blob.(*memBlob)
		var flipped atomic.Bool
		blob.corrupt = func(_ int64, p []byte, off int64) {
			if end := off + int64(len(p)); off <= 5000 && end > 5000 && !flipped.Swap(true) {
				p[5000-off] ^= 0x40
			}
		}
		opts.Attempts = attempts
		ix, err := Build(context.Background(), opts)
		switch {
		case attempts == 1 && err == nil:
			t.Fatal("an index was built from bytes that failed the digest")
		case attempts > 1 && err != nil:
			t.Fatalf("build with %d attempts: %v", attempts, err)
		case attempts > 1 && !ix.Verified():
			t.Fatal("rebuilt index not verified")
		}
	}
}

// recordBatch is a SpanBatch in memory that remembers what was committed.
type recordBatch struct {
	spans     map[string][]byte
	committed bool
	aborted   bool
}

func (b *recordBatch) Add(key string, data []byte) error {
	b.spans[key] = bytes.Clone(data)
	return nil
}
func (b *recordBatch) Commit() error { b.committed = true; return nil }
func (b *recordBatch) Abort()        { b.aborted = true }

// A gzip build keeps every span it decodes, under the keys reads use, and
// commits them once the digest matched; reads then find them all and fetch
// nothing. A build that fails (wrong digest) aborts its batch.
func TestGzipBuildKeepsItsSpans(t *testing.T) {
	rng := rand.New(rand.NewSource(41))
	tarData, _ := randomLayer(rng, 40, 300<<10)
	data := gzipBytes(tarData, 6)
	var batches []*recordBatch
	opts := buildOpts(data, manifest.FormatGzip, 64<<10)
	opts.Keep = func() SpanBatch {
		b := &recordBatch{spans: map[string][]byte{}}
		batches = append(batches, b)
		return b
	}
	ix, err := Build(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	b := batches[0]
	if !b.committed || len(b.spans) != len(ix.Spans) {
		t.Fatalf("committed %v, %d spans kept of %d", b.committed, len(b.spans), len(ix.Spans))
	}
	c := newCache(defaultTestCache)
	for k, v := range b.spans {
		c.Put(k, v)
	}
	blob := opts.Blob.(*memBlob)
	blob.resetCounts()
	r := ix.NewReader(blob, c, ReaderOptions{})
	defer r.Close()
	want := extract(t, tarData)
	for _, e := range regularEntries(ix) {
		checkRead(t, r, e, want[e.Name], make([]byte, e.Size), 0)
	}
	if blob.reads.Load() != 0 {
		t.Fatalf("reads fetched %d times though the build kept every span", blob.reads.Load())
	}

	bad := buildOpts(data, manifest.FormatGzip, 64<<10)
	bad.Layer.Digest = sha([]byte("another"))
	bad.Keep = opts.Keep
	if _, err := Build(context.Background(), bad); err == nil {
		t.Fatal("built with a wrong digest")
	}
	if last := batches[len(batches)-1]; last.committed || !last.aborted {
		t.Fatal("a failed build's spans were committed")
	}
}

// TestCheckpointsFollowFileDensity: spans are short where many small files
// sit (reading one decodes its span) and SpanSize long across large files,
// and the windows of the extra checkpoints stay a small part of the layer.
func TestCheckpointsFollowFileDensity(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	const spanSize = DefaultSpanSize
	var entries []tarFile
	for i := 0; i < 6000; i++ { // ~12 MiB of 2 KiB files of source-like entropy
		words := make([]string, 300)
		for j := range words {
			words[j] = fmt.Sprintf("%x", rng.Intn(1<<16))
		}
		entries = append(entries, tarFile{hdr: tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("small/f%d", i), Mode: 0o644},
			content: []byte(strings.Join(words, " "))})
	}
	smallEnd := len(entries)
	for i := 0; i < 2; i++ { // 2 x 9 MiB files
		big := make([]byte, 9<<20)
		for j := range big {
			big[j] = byte(rng.Intn(16))
		}
		entries = append(entries, tarFile{hdr: tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("big/f%d", i), Mode: 0o644}, content: big})
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		e.hdr.Size = int64(len(e.content))
		if err := tw.WriteHeader(&e.hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(e.content); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	tarData := buf.Bytes()
	ix, err := Build(context.Background(), buildOpts(gzipBytes(tarData, 6), manifest.FormatGzip, spanSize))
	if err != nil {
		t.Fatal(err)
	}
	smallBytes := ix.Entries[smallEnd-1].Offset // where the big files start in the tar stream
	var inSmall, bigSpans []int64
	for i, s := range ix.Spans {
		switch {
		case s.end() <= smallBytes:
			inSmall = append(inSmall, s.ULen)
		case s.UOff > smallBytes && i+1 < len(ix.Spans):
			bigSpans = append(bigSpans, s.ULen)
		}
	}
	for _, n := range inSmall {
		if n > spanSize/4+(256<<10) {
			t.Errorf("a span among 2 KiB files decodes to %d bytes, want SpanSize/8 (%d) to SpanSize/4", n, spanSize/8)
		}
	}
	if len(inSmall) < 10 {
		t.Errorf("%d spans over %d bytes of small files, want short spans", len(inSmall), smallBytes)
	}
	for _, n := range bigSpans {
		if n < spanSize {
			t.Errorf("a span across large files decodes to %d bytes, want at least SpanSize (%d)", n, spanSize)
		}
	}
	var windows int
	for _, w := range ix.windows {
		windows += len(w)
	}
	if limit := len(tarData) * 3 / 100; windows > limit {
		t.Errorf("checkpoint windows take %d bytes, more than 3%% of the layer (%d)", windows, limit)
	}
}
