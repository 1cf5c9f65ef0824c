package integration

// Concurrent reads through the mount, and the memory the mount server uses
// while reading much more data than its memory cache holds.

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// semiRandom returns n bytes of seeded pseudo-random text from a 64-symbol
// alphabet: distinct everywhere, compressing to about 3/4.
func semiRandom(seed uint64, n int) []byte {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	var word [8]byte
	for i := 0; i < n; i += 8 {
		binary.LittleEndian.PutUint64(word[:], r.Uint64())
		for k := 0; k < 8 && i+k < n; k++ {
			b[i+k] = alphabet[word[k]&63]
		}
	}
	return b
}

// concurrencyEntries are files of many sizes, several larger than a 4 MiB
// gzip span, in two layers so reads cross layers too.
func concurrencyEntries() (lower, upper []Entry) {
	lower = []Entry{Dir("data"), Dir("small")}
	for i, size := range []int{9 << 20, 5<<20 + 12345, 3 << 20, 1 << 20, 700 << 10} {
		lower = append(lower, Entry{Path: fmt.Sprintf("data/file%d", i), Type: TypeFile, Mode: 0o644,
			Content: semiRandom(uint64(i+1), size)})
	}
	for i := 0; i < 200; i++ {
		lower = append(lower, Entry{Path: fmt.Sprintf("small/s%03d", i), Type: TypeFile, Mode: 0o644,
			Content: semiRandom(uint64(1000+i), 100+i*37)})
	}
	upper = []Entry{
		{Path: "data/file1", Type: TypeFile, Mode: 0o644, Content: semiRandom(99, 6<<20+7)}, // replaces a lower file
		{Path: "data/upper", Type: TypeFile, Mode: 0o644, Content: semiRandom(98, 4<<20+1)},
	}
	return lower, upper
}

// concurrentReadTimeout bounds the whole concurrent phase: a deadlock fails
// the test instead of hanging it.
const concurrentReadTimeout = 90 * time.Second

func TestConcurrentReadsMatchOracle(t *testing.T) {
	lowerEntries, upperEntries := concurrencyEntries()
	lower := MustLayer(t, LayerSpec{Entries: lowerEntries, GzipMembers: 3})
	upper := MustLayer(t, LayerSpec{Entries: upperEntries})
	img := MustImage(t, ImageSpec{Layers: []*BuiltLayer{lower, upper}})
	oracleRoot := OracleRootfs(t, img)

	var paths []string
	want := map[string][]byte{}
	for _, dir := range []string{"data", "small"} {
		names, err := os.ReadDir(filepath.Join(oracleRoot, dir))
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			p := dir + "/" + n.Name()
			data, err := os.ReadFile(filepath.Join(oracleRoot, p))
			if err != nil {
				t.Fatal(err)
			}
			paths, want[p] = append(paths, p), data
		}
	}

	reg := StartRegistry(t, RegistryOptions{})
	ref := reg.PushImage(t, "concurrency/reads", "v1", img)
	m := mountImage(t, ref, mountOptions{})

	const workers, readsPerWorker = 32, 60
	var (
		wg       sync.WaitGroup
		failures atomic.Int64
		bytesIn  atomic.Int64
		errMu    sync.Mutex
		errs     []string
	)
	report := func(format string, args ...any) {
		if failures.Add(1) <= 10 {
			errMu.Lock()
			errs = append(errs, fmt.Sprintf(format, args...))
			errMu.Unlock()
		}
	}
	for w := 0; w < workers; w++ {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 42))
			buf := make([]byte, 1<<20)
			for i := 0; i < readsPerWorker; i++ {
				p := paths[r.IntN(len(paths))]
				data := want[p]
				off := r.IntN(len(data))
				n := 1 + r.IntN(min(len(buf), len(data)-off))
				f, err := os.Open(m.path(p))
				if err != nil {
					report("open %s: %v", p, err)
					return
				}
				got, err := f.ReadAt(buf[:n], int64(off))
				f.Close()
				if err != nil && !(err == io.EOF && got == n) {
					report("read %s [%d, +%d): %v", p, off, n, err)
					continue
				}
				bytesIn.Add(int64(got))
				if !bytes.Equal(buf[:got], data[off:off+n]) {
					report("read %s [%d, +%d): bytes differ from the oracle", p, off, n)
				}
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(concurrentReadTimeout):
		// Have the server print its goroutines to its log before the cleanup.
		_ = syscall.Kill(m.PID, syscall.SIGQUIT)
		time.Sleep(500 * time.Millisecond)
		t.Fatalf("%d concurrent readers not done after %s: deadlock? server goroutines:\n%s",
			workers, concurrentReadTimeout, tailFile(m.LogPath, 200))
	}
	if n := failures.Load(); n > 0 {
		t.Errorf("%d failed reads, first ones:\n%s", n, joinLines(errs))
	}
	if bytesIn.Load() < 8<<20 {
		t.Errorf("only %d bytes read: the test did not exercise several spans", bytesIn.Load())
	}
}

func joinLines(lines []string) string {
	var b bytes.Buffer
	for _, l := range lines {
		b.WriteString("  " + l + "\n")
	}
	return b.String()
}

// TestConcurrencyMemoryBounded reads ~200 MiB of distinct data through a
// mount whose memory cache is 64 MiB: the server's RSS must stay under
// that plus 100 MiB (DESIGN P8).
func TestConcurrencyMemoryBounded(t *testing.T) {
	const (
		files       = 25
		fileSize    = 8 << 20
		memoryCache = 64 << 20
		rssSlack    = 100 << 20
	)
	entries := []Entry{Dir("big")}
	sums := map[string][32]byte{}
	for i := 0; i < files; i++ {
		p := fmt.Sprintf("big/f%02d", i)
		data := semiRandom(uint64(5000+i), fileSize)
		sums[p] = sha256.Sum256(data)
		entries = append(entries, Entry{Path: p, Type: TypeFile, Mode: 0o644, Content: data})
	}
	layer := MustLayer(t, LayerSpec{Entries: entries, GzipLevel: gzip.BestSpeed})
	entries = nil
	img := MustImage(t, ImageSpec{Layers: []*BuiltLayer{layer}})
	reg := StartRegistry(t, RegistryOptions{})
	ref := reg.PushImage(t, "concurrency/memory", "v1", img)
	layer.Blob, layer.Tar, layer.Source = nil, nil, nil // let the test's own memory go
	m := mountImage(t, ref, mountOptions{Args: []string{"--memory-cache", "64MiB"}})
	if rss, err := ProcessRSS(m.PID); err == nil {
		t.Logf("RSS after mount: %d MiB", rss>>20)
	}

	var peak atomic.Int64
	sample := func() {
		if rss, err := ProcessRSS(m.PID); err == nil && rss > peak.Load() {
			peak.Store(rss)
		}
	}
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			sample()
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()

	// Four readers, each through its own files, in 1 MiB reads.
	var wg sync.WaitGroup
	var readErr atomic.Value
	for w := 0; w < 4; w++ {
		wg.Go(func() {
			for i := w; i < files; i += 4 {
				p := fmt.Sprintf("big/f%02d", i)
				f, err := os.Open(m.path(p))
				if err != nil {
					readErr.Store(err)
					return
				}
				h := sha256.New()
				_, err = io.CopyBuffer(h, f, make([]byte, 1<<20))
				f.Close()
				if err != nil {
					readErr.Store(fmt.Errorf("read %s: %w", p, err))
					return
				}
				if got := [32]byte(h.Sum(nil)); got != sums[p] {
					readErr.Store(fmt.Errorf("%s: content differs", p))
				}
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(concurrentReadTimeout):
		close(stop)
		t.Fatalf("reading %d MiB not done after %s", files*fileSize>>20, concurrentReadTimeout)
	}
	close(stop)
	<-sampled
	if err, _ := readErr.Load().(error); err != nil {
		t.Fatal(err)
	}
	limit := int64(memoryCache + rssSlack)
	t.Logf("server peak RSS %d MiB reading %d MiB (limit %d MiB)", peak.Load()>>20, files*fileSize>>20, limit>>20)
	if peak.Load() == 0 {
		t.Fatal("could not sample the server's RSS")
	}
	if peak.Load() > limit {
		t.Errorf("server RSS peaked at %d MiB, over --memory-cache 64 MiB + 100 MiB", peak.Load()>>20)
	}
}

// TestFatSpansMemoryBounded: an eStargz layer of 15 MiB chunks (just under
// the 16 MiB a span may decode to) read by 64 readers at once, with a
// 32 MiB memory cache: the server's RSS stays within the memory cache plus
// the documented constant, because the bytes being fetched and decoded at
// once are bounded (index.DefaultDecodeBytes), whatever the concurrency.
// A layer whose chunks are larger than the bound is refused at mount, with
// a message that says why.
func TestFatSpansMemoryBounded(t *testing.T) {
	const (
		files       = 16
		chunk       = 15 << 20
		readers     = 64
		memoryCache = 32 << 20
		rssSlack    = 100 << 20 // DecodeBytes (32 MiB) + FUSE buffers, tree, runtime
	)
	fat := func(n, size int) []Entry {
		entries := []Entry{Dir("fat")}
		for i := 0; i < n; i++ {
			data := make([]byte, size)
			copy(data, fmt.Sprintf("file %d\n", i))
			entries = append(entries, Entry{Path: fmt.Sprintf("fat/f%02d", i), Type: TypeFile, Mode: 0o644, Content: data})
		}
		return entries
	}
	reg := StartRegistry(t, RegistryOptions{})

	tooFat := MustLayer(t, LayerSpec{Compression: Estargz, EstargzChunkSize: 20 << 20, Entries: fat(1, 20<<20)})
	ref := reg.PushImage(t, "fat/refused", "v1", MustImage(t, ImageSpec{Kind: OCI, Layers: []*BuiltLayer{tooFat}}))
	if _, res := startMount(t, ref, mountOptions{}); res.err == nil || !strings.Contains(res.stderr, "imgfs decodes at once") {
		t.Errorf("a layer with 20 MiB chunks: %v\n%s", res.err, res.stderr)
	}

	layer := MustLayer(t, LayerSpec{Compression: Estargz, EstargzChunkSize: chunk, Entries: fat(files, chunk)})
	ref = reg.PushImage(t, "fat/bounded", "v1", MustImage(t, ImageSpec{Kind: OCI, Layers: []*BuiltLayer{layer}}))
	layer.Blob, layer.Tar, layer.Source = nil, nil, nil
	m := mountImage(t, ref, mountOptions{Args: []string{"--memory-cache", "32MiB", "--prefetch=none"}})

	var peak atomic.Int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			if rss, err := ProcessRSS(m.PID); err == nil && rss > peak.Load() {
				peak.Store(rss)
			}
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	var wg sync.WaitGroup
	var readErr atomic.Value
	for r := 0; r < readers; r++ {
		wg.Go(func() {
			p := m.path(fmt.Sprintf("fat/f%02d", r%files))
			f, err := os.Open(p)
			if err != nil {
				readErr.Store(err)
				return
			}
			defer f.Close()
			// Each reader starts at its own offset: different pages, the
			// same few chunks.
			buf := make([]byte, 1<<20)
			if _, err := f.ReadAt(buf, int64(r/files)*(chunk/4)); err != nil {
				readErr.Store(fmt.Errorf("read %s: %w", p, err))
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(concurrentReadTimeout):
		t.Fatal("64 readers not done")
	}
	close(stop)
	<-sampled
	if err, _ := readErr.Load().(error); err != nil {
		t.Fatal(err)
	}
	limit := int64(memoryCache + rssSlack)
	t.Logf("server peak RSS %d MiB with %d readers of %d MiB chunks (limit %d MiB)", peak.Load()>>20, readers, chunk>>20, limit>>20)
	if peak.Load() == 0 || peak.Load() > limit {
		t.Errorf("server RSS peaked at %d MiB, over --memory-cache 32 MiB + %d MiB", peak.Load()>>20, rssSlack>>20)
	}
}
