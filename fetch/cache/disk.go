package cache

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"hash/crc32"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"
)

// On-disk span file: magic, CRC-32C of the data, data. The CRC catches a
// torn or rotted file; the data was verified against its digest before it
// was cached.
var spanMagic = [4]byte{'I', 'S', 'P', '1'}

const spanHeaderSize = 8

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// pendingWrites bounds how much decoded data waits for the disk writer; when
// it is full, spans are simply not written (the cache is best effort).
const pendingWrites = 16

type diskFile struct {
	size    int64
	lastUse time.Time
}

type diskTier struct {
	dir    string
	max    int64
	logger *slog.Logger

	mu    sync.Mutex
	files map[string]*diskFile // by file name (hex of sha256(key))
	total int64

	queue  chan diskWrite
	closed bool // guarded by mu; no send on queue after close
	done   sync.WaitGroup
	once   sync.Once
}

type diskWrite struct {
	key  string
	data []byte
}

func openDiskTier(dir string, max int64, logger *slog.Logger) (*diskTier, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	d := &diskTier{dir: dir, max: max, logger: logger, files: map[string]*diskFile{}, queue: make(chan diskWrite, pendingWrites)}
	err := filepath.WalkDir(dir, func(path string, de fs.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return nil
		}
		name := de.Name()
		if len(name) != sha256.Size*2 {
			if filepath.Ext(name) == ".tmp" {
				os.Remove(path) // left by a crashed writer
			}
			return nil
		}
		info, err := de.Info()
		if err != nil {
			return nil
		}
		d.files[name] = &diskFile{size: info.Size(), lastUse: info.ModTime()}
		d.total += info.Size()
		return nil
	})
	if err != nil {
		return nil, err
	}
	d.evictLocked()
	d.done.Add(1)
	go d.writer()
	return d, nil
}

func fileName(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

func (d *diskTier) path(name string) string {
	return filepath.Join(d.dir, name[:2], name)
}

func (d *diskTier) get(key string) ([]byte, bool) {
	name := fileName(key)
	d.mu.Lock()
	f, ok := d.files[name]
	if ok {
		f.lastUse = time.Now()
	}
	d.mu.Unlock()
	if !ok {
		return nil, false
	}
	raw, err := os.ReadFile(d.path(name))
	if errors.Is(err, fs.ErrNotExist) {
		d.remove(name) // evicted between the lookup and the read
		return nil, false
	}
	if err == nil {
		var data []byte
		if data, err = decodeSpanFile(raw); err == nil {
			return data, true
		}
	}
	d.logger.Warn("span cache: dropping unreadable file", "file", d.path(name), "err", err)
	d.remove(name)
	return nil, false
}

func decodeSpanFile(raw []byte) ([]byte, error) {
	if len(raw) < spanHeaderSize || [4]byte(raw[:4]) != spanMagic {
		return nil, errors.New("not a span file")
	}
	data := raw[spanHeaderSize:]
	if crc32.Checksum(data, castagnoli) != binary.LittleEndian.Uint32(raw[4:8]) {
		return nil, errors.New("checksum mismatch")
	}
	return data, nil
}

func (d *diskTier) put(key string, data []byte) {
	name := fileName(key)
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, exists := d.files[name]; exists || d.closed {
		return
	}
	select {
	case d.queue <- diskWrite{key: key, data: data}:
	default: // writer busy: skip, the span stays in memory
	}
}

func (d *diskTier) writer() {
	defer d.done.Done()
	for w := range d.queue {
		if err := d.write(w); err != nil {
			d.logger.Warn("span cache: write failed", "err", err)
		}
	}
}

func (d *diskTier) write(w diskWrite) error {
	name := fileName(w.key)
	final := d.path(name)
	if err := os.MkdirAll(filepath.Dir(final), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(final), name+".*.tmp")
	if err != nil {
		return err
	}
	var header [spanHeaderSize]byte
	copy(header[:4], spanMagic[:])
	binary.LittleEndian.PutUint32(header[4:], crc32.Checksum(w.data, castagnoli))
	_, err = tmp.Write(header[:])
	if err == nil {
		_, err = tmp.Write(w.data)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), final)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return err
	}
	size := int64(spanHeaderSize + len(w.data))
	d.mu.Lock()
	defer d.mu.Unlock()
	if old, ok := d.files[name]; ok {
		d.total -= old.size
	}
	d.files[name] = &diskFile{size: size, lastUse: time.Now()}
	d.total += size
	d.evictLocked()
	return nil
}

func (d *diskTier) remove(name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if f, ok := d.files[name]; ok {
		d.total -= f.size
		delete(d.files, name)
	}
	os.Remove(d.path(name))
}

// evictLocked removes least recently used files until the tier fits. It
// sorts everything, which is fine: it only runs when the bound is crossed
// and files are spans of megabytes, so there are few of them.
func (d *diskTier) evictLocked() {
	if d.total <= d.max {
		return
	}
	names := make([]string, 0, len(d.files))
	for n := range d.files {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return d.files[names[i]].lastUse.Before(d.files[names[j]].lastUse) })
	for _, n := range names {
		if d.total <= d.max {
			break
		}
		d.total -= d.files[n].size
		delete(d.files, n)
		os.Remove(d.path(n))
	}
}

func (d *diskTier) bytes() int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.total
}

func (d *diskTier) close() {
	d.once.Do(func() {
		d.mu.Lock()
		d.closed = true
		d.mu.Unlock()
		close(d.queue)
		d.done.Wait()
	})
}
