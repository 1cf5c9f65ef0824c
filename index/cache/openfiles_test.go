package cache

import (
	"bytes"
	"fmt"
	"os"
	"testing"
)

// openFDs counts this process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	des, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd:", err)
	}
	return len(des)
}

// diskOnly opens a cache over dir whose memory tier keeps nothing, so that
// every read goes to the disk tier.
func diskOnly(t *testing.T, opts Options) *Cache {
	opts.MemoryBytes = 1
	return open(t, opts)
}

func TestOpenFilesAreBoundedReusedAndClosed(t *testing.T) {
	dir := t.TempDir()
	n := maxOpenFiles + 10
	var kv []any
	for i := range n {
		kv = append(kv, fmt.Sprint("k", i), pattern(1000+i, byte(i)))
	}
	setupDir := open(t, Options{Dir: dir})
	putDisk(t, setupDir, kv...)
	setupDir.Close()

	before := openFDs(t)
	c := diskOnly(t, Options{Dir: dir})
	base := openFDs(t) - before // the cache's own, if any
	p := make([]byte, 100)
	for i := range n {
		if got, ok := c.ReadAt(fmt.Sprint("k", i), p, 10); !ok || !bytes.Equal(p[:got], pattern(1000+i, byte(i))[10:110]) {
			t.Fatalf("k%d: %v", i, ok)
		}
	}
	if open, fds := c.disk.open.len(), openFDs(t)-before-base; open != maxOpenFiles || fds != maxOpenFiles {
		t.Fatalf("%d files kept open, %d descriptors: want both %d", open, fds, maxOpenFiles)
	}
	// The most recent ones are reread through the files kept open.
	for i := n - maxOpenFiles; i < n; i++ {
		if _, ok := c.Get(fmt.Sprint("k", i)); !ok {
			t.Fatalf("k%d: miss", i)
		}
	}
	if fds := openFDs(t) - before - base; fds != maxOpenFiles {
		t.Fatalf("rereads opened files: %d descriptors", fds)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if fds := openFDs(t) - before - base; fds != 0 {
		t.Fatalf("%d span files still open after Close", fds)
	}
	// After Close the cache still serves, keeping nothing open.
	if _, ok := c.ReadAt("k0", p, 0); !ok {
		t.Fatal("no longer serves after Close")
	}
	if fds := openFDs(t) - before - base; fds != 0 || c.disk.open.len() != 0 {
		t.Fatalf("a read after Close left %d descriptors open", fds)
	}
}

func TestEvictedFileIsClosed(t *testing.T) {
	dir := t.TempDir()
	size := diskSize("k0", 1000)
	c := diskOnly(t, Options{Dir: dir, DiskBytes: 2 * size})
	putDisk(t, c, "k0", span(1000, 0), "k1", span(1000, 1))
	before := openFDs(t)
	if _, ok := c.ReadAt("k0", make([]byte, 10), 0); !ok {
		t.Fatal("miss")
	}
	if openFDs(t) != before+1 {
		t.Fatal("the file read is not kept open")
	}
	c.Put("k2", span(1000, 2)) // evicts k1, the least recently used
	c.Put("k3", span(1000, 3)) // evicts k0
	waitWrites(t, c)
	if exists(spanPath(dir, "k0")) {
		t.Fatal("k0 not evicted")
	}
	if openFDs(t) != before || c.disk.open.len() != 0 {
		t.Fatal("an evicted file is still open")
	}
}

// TestDamageIsCaughtInAFileKeptOpen: keeping a file open skips its header
// checks on later reads, never the block checks: a byte flipped in place
// after the file was opened and read is still caught, the file dropped and
// no longer kept open.
func TestDamageIsCaughtInAFileKeptOpen(t *testing.T) {
	data := pattern(3*spanBlockSize+100, 4)
	for _, via := range []string{"ReadAt", "Get"} {
		t.Run(via, func(t *testing.T) {
			dir := setup(t, "k", data)
			logger, logs := newTestLogger()
			c := diskOnly(t, Options{Dir: dir, Logger: logger})
			p := make([]byte, 20)
			if got, ok := c.ReadAt("k", p, spanBlockSize-5); !ok || !bytes.Equal(p[:got], data[spanBlockSize-5:][:20]) {
				t.Fatal("the intact file should serve")
			}
			if c.disk.open.len() != 1 {
				t.Fatal("the file is not kept open")
			}
			f, err := os.OpenFile(spanPath(dir, "k"), os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			// A byte of block 1, which the read above checked.
			at := diskSize("k", len(data)) - int64(len(data)) + spanBlockSize + 3
			if _, err := f.WriteAt([]byte{data[spanBlockSize+3] ^ 0x10}, at); err != nil {
				t.Fatal(err)
			}
			f.Close()
			var ok bool
			if via == "Get" {
				_, ok = c.Get("k")
			} else {
				_, ok = c.ReadAt("k", p, spanBlockSize)
			}
			if ok {
				t.Fatal("served a block damaged after its file was kept open")
			}
			if exists(spanPath(dir, "k")) || c.Contains("k") || c.disk.open.len() != 0 {
				t.Fatal("the damaged file is kept")
			}
			if w := logs.warnings(); len(w) != 1 {
				t.Fatalf("warnings %v, want one", w)
			}
		})
	}
}

// TestFileReplacedUnderAnOpenOneServesItsOwnKey: a file kept open was
// checked for its key; renaming another span's file over its name (which
// the cache itself never does) cannot make it serve that other span, and
// once it is no longer kept open the swapped file is caught.
func TestFileReplacedUnderAnOpenOneServesItsOwnKey(t *testing.T) {
	a, b := span(5000, 'a'), span(5000, 'b')
	dir := setup(t, "layer/a", a, "layer/b", b)
	c := diskOnly(t, Options{Dir: dir})
	p := make([]byte, 100)
	if _, ok := c.ReadAt("layer/b", p, 0); !ok {
		t.Fatal("miss")
	}
	if err := os.Rename(spanPath(dir, "layer/a"), spanPath(dir, "layer/b")); err != nil {
		t.Fatal(err)
	}
	if got, ok := c.ReadAt("layer/b", p, 0); !ok || !bytes.Equal(p[:got], b[:100]) {
		t.Fatalf("the file kept open served %q", p[:got])
	}
	c.disk.open.remove(fileName("layer/b"))
	if _, ok := c.ReadAt("layer/b", p, 0); ok {
		t.Fatal("served a's file as b once reopened")
	}
}

// TestConcurrentReadsWhileFilesAreEvictedAndClosed: more spans than files
// kept open, and than the tier holds, read, written and evicted from many
// goroutines: every byte served is right (run with -race).
func TestConcurrentReadsWhileFilesAreEvictedAndClosed(t *testing.T) {
	keys := 2 * maxOpenFiles
	per := diskSize("key/00", 3000)
	c := diskOnly(t, Options{Dir: t.TempDir(), DiskBytes: int64(keys) * per * 3 / 4})
	want := func(k int) []byte { return pattern(3000, byte(k)) }
	done := make(chan struct{})
	for g := range 6 {
		go func() {
			defer func() { done <- struct{}{} }()
			p := make([]byte, 700)
			for i := range 1500 {
				k := (i*7 + g*13) % keys
				key := fmt.Sprintf("key/%02d", k)
				switch i % 3 {
				case 0:
					c.Put(key, want(k))
				case 1:
					off := (i * 97) % 3000
					if n, ok := c.ReadAt(key, p, int64(off)); ok && !bytes.Equal(p[:n], want(k)[off:min(off+len(p), 3000)]) {
						t.Errorf("ReadAt %s at %d: wrong bytes", key, off)
						return
					}
				case 2:
					if v, ok := c.Get(key); ok && !bytes.Equal(v, want(k)) {
						t.Errorf("Get %s: wrong bytes", key)
						return
					}
				}
			}
		}()
	}
	for range 6 {
		<-done
	}
	if c.disk.open.len() > maxOpenFiles {
		t.Fatalf("%d files kept open", c.disk.open.len())
	}
	if s := c.Stats(); s.DiskHits == 0 {
		t.Fatalf("no disk hits: the test read nothing from files: %+v", s)
	}
}
