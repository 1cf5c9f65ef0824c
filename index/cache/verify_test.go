package cache

import (
	"bytes"
	"encoding/binary"
	"os"
	"strings"
	"testing"
)

// checkDropped opens a cache over dir, where key's file is bad, and checks
// that read neither serves nor keeps it, logging wantWarnings warnings.
func checkDropped(t *testing.T, dir, key string, read func(c *Cache) bool, wantWarnings int) {
	t.Helper()
	logger, logs := newTestLogger()
	c := open(t, Options{Dir: dir, Logger: logger})
	if !c.Contains(key) {
		t.Fatal("Contains reads files now? It should only look at the index")
	}
	if read(c) {
		t.Fatal("served a bad file")
	}
	wantStats(t, c, 0, 0, 1)
	if exists(spanPath(dir, key)) {
		t.Fatal("bad file not removed")
	}
	if c.Contains(key) {
		t.Fatal("bad file still indexed")
	}
	if w := logs.warnings(); len(w) != wantWarnings {
		t.Fatalf("warnings %v, want %d", w, wantWarnings)
	}
	if _, ok := c.Get(key); ok {
		t.Fatal("served a bad file on the second try")
	}
}

func readGet(key string) func(c *Cache) bool {
	return func(c *Cache) bool { _, ok := c.Get(key); return ok }
}

func readAt(key string, off, n int) func(c *Cache) bool {
	return func(c *Cache) bool {
		// On a miss p may hold the bytes that failed their check: the
		// caller must not use them, and ReadAt reports none.
		got, ok := c.ReadAt(key, make([]byte, n), int64(off))
		if !ok && got != 0 {
			panic("ReadAt reported bytes on a miss")
		}
		return ok
	}
}

// setup writes spans to a fresh dir and returns it.
func setup(t *testing.T, kv ...any) string {
	t.Helper()
	dir := t.TempDir()
	c := open(t, Options{Dir: dir})
	putDisk(t, c, kv...)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestSwappedFileIsNeverServed(t *testing.T) {
	// Equal key and data lengths: a file of one fits the other's name
	// exactly, which is what a whole-file checksum cannot tell apart.
	a, b := span(5000, 'a'), span(5000, 'b')
	for _, how := range []string{"copied", "renamed"} {
		for _, via := range []string{"Get", "ReadAt"} {
			t.Run(how+"/"+via, func(t *testing.T) {
				dir := setup(t, "layer/a", a, "layer/b", b)
				if how == "copied" {
					copyFile(t, spanPath(dir, "layer/a"), spanPath(dir, "layer/b"))
				} else if err := os.Rename(spanPath(dir, "layer/a"), spanPath(dir, "layer/b")); err != nil {
					t.Fatal(err)
				}
				read := readGet("layer/b")
				if via == "ReadAt" {
					read = readAt("layer/b", 0, 100)
				}
				checkDropped(t, dir, "layer/b", read, 1)
			})
		}
	}
	t.Run("under a running cache", func(t *testing.T) {
		dir := t.TempDir()
		logger, logs := newTestLogger()
		c := open(t, Options{Dir: dir, MemoryBytes: 1, Logger: logger}) // memory keeps nothing
		putDisk(t, c, "layer/a", a, "layer/b", b)
		copyFile(t, spanPath(dir, "layer/a"), spanPath(dir, "layer/b"))
		if n, ok := c.ReadAt("layer/b", make([]byte, 10), 0); ok {
			t.Fatalf("served %d bytes of a's file as b", n)
		}
		if got, ok := c.Get("layer/a"); !ok || !bytes.Equal(got, a) {
			t.Fatal("a's own file must still serve")
		}
		if len(logs.warnings()) != 1 || exists(spanPath(dir, "layer/b")) {
			t.Fatalf("want the file dropped with one warning, got %v", logs.warnings())
		}
	})
}

func TestKeyOfAnotherLengthIsDetected(t *testing.T) {
	dir := setup(t, "k", span(100, 1), "a-much-longer-key", span(100, 2))
	copyFile(t, spanPath(dir, "k"), spanPath(dir, "a-much-longer-key"))
	checkDropped(t, dir, "a-much-longer-key", readGet("a-much-longer-key"), 1)
}

func TestFlippedByteIsDetected(t *testing.T) {
	data := pattern(3*spanBlockSize+100, 9)
	flip := func(t *testing.T, dir string) {
		mutateFile(t, spanPath(dir, "k"), func(raw []byte) []byte {
			raw[len(raw)-len(data)+spanBlockSize+10] ^= 1 // block 1
			return raw
		})
	}
	t.Run("Get", func(t *testing.T) {
		dir := setup(t, "k", data)
		flip(t, dir)
		checkDropped(t, dir, "k", readGet("k"), 1)
	})
	t.Run("ReadAt touching the block", func(t *testing.T) {
		dir := setup(t, "k", data)
		flip(t, dir)
		checkDropped(t, dir, "k", readAt("k", spanBlockSize-5, 20), 1)
	})
	t.Run("ReadAt elsewhere", func(t *testing.T) {
		// Only the touched blocks are read and checked: the damage is
		// found when a read reaches it.
		dir := setup(t, "k", data)
		flip(t, dir)
		c := open(t, Options{Dir: dir})
		p := make([]byte, 1000)
		if n, ok := c.ReadAt("k", p, 2*spanBlockSize); !ok || !bytes.Equal(p[:n], data[2*spanBlockSize:][:1000]) {
			t.Fatal("an intact block should serve")
		}
		if _, ok := c.ReadAt("k", p, spanBlockSize); ok || exists(spanPath(dir, "k")) {
			t.Fatal("the damaged block served or its file kept")
		}
	})
	t.Run("in the header", func(t *testing.T) {
		dir := setup(t, "k", data)
		mutateFile(t, spanPath(dir, "k"), func(raw []byte) []byte {
			raw[fixedHeaderLen+1+4] ^= 0x80 // a block CRC
			return raw
		})
		checkDropped(t, dir, "k", readAt("k", 3*spanBlockSize, 10), 1)
	})
}

func TestTruncatedOrExtendedFileIsDropped(t *testing.T) {
	data := pattern(2*spanBlockSize+7, 1)
	headerLen := int(diskSize("k", len(data))) - len(data)
	for _, size := range []int{0, 3, 10, headerLen - 1, headerLen, headerLen + spanBlockSize, headerLen + len(data) - 1, headerLen + len(data) + 1} {
		for _, via := range []string{"Get", "ReadAt"} {
			dir := setup(t, "k", data)
			mutateFile(t, spanPath(dir, "k"), func(raw []byte) []byte {
				if size > len(raw) {
					return append(raw, 0)
				}
				return raw[:size]
			})
			read := readGet("k")
			if via == "ReadAt" {
				read = readAt("k", 0, 10)
			}
			t.Run(via, func(t *testing.T) { checkDropped(t, dir, "k", read, 1) })
		}
	}
}

func TestWrongMagicOrVersionIsDropped(t *testing.T) {
	data := span(100, 1)
	cases := []struct {
		name     string
		raw      func(good []byte) []byte
		warnings int
	}{
		{"version 1 file", func([]byte) []byte {
			// The layout this package replaces: magic, CRC of the data, data.
			old := append([]byte("ISP1"), binary.LittleEndian.AppendUint32(nil, crc32c(data))...)
			return append(old, data...)
		}, 0}, // expected once after an upgrade: not worth a warning per file
		{"unknown version", func(good []byte) []byte { good[3] = '3'; return good }, 1},
		{"other magic", func(good []byte) []byte { copy(good, "XSP2"); return good }, 1},
		{"text", func([]byte) []byte { return []byte(strings.Repeat("hello ", 30)) }, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := setup(t, "k", data)
			mutateFile(t, spanPath(dir, "k"), tc.raw)
			checkDropped(t, dir, "k", readGet("k"), tc.warnings)
		})
	}
}

func TestReadErrorThatIsNotDamageKeepsTheFile(t *testing.T) {
	dir := setup(t, "k", span(100, 1))
	logger, logs := newTestLogger()
	c := open(t, Options{Dir: dir, Logger: logger})
	// A directory opens but cannot be read: an I/O error, not a bad file.
	path := spanPath(dir, "k")
	os.Remove(path)
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Get("k"); ok {
		t.Fatal("served a directory")
	}
	if _, ok := c.ReadAt("k", make([]byte, 10), 0); ok {
		t.Fatal("served a directory")
	}
	if !exists(path) || !c.Contains("k") {
		t.Fatal("an I/O error dropped the file")
	}
	wantStats(t, c, 0, 0, 2)
	if w := logs.warnings(); len(w) != 1 {
		t.Fatalf("want one warning for repeated read errors, got %q", w)
	}
}

func TestFileLargerThanTheTierIsNotRead(t *testing.T) {
	dir := t.TempDir()
	c := open(t, Options{Dir: dir, DiskBytes: 1000, MemoryBytes: 1})
	putDisk(t, c, "k", span(100, 1))
	if err := os.WriteFile(spanPath(dir, "k"), make([]byte, 2000), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Get("k"); ok || exists(spanPath(dir, "k")) {
		t.Fatal("a file larger than the whole tier was served or kept")
	}
}
