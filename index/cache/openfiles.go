package cache

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// maxOpenFiles bounds the span files the disk tier keeps open. A sequential
// reader holds one span at a time and readahead a few more, so this covers
// dozens of files read at once while staying far below any fd limit.
const maxOpenFiles = 64

// openSpan is a span file opened, sized and with its header verified for
// its key, so that a reread costs one preadv and the checksums of the
// blocks it touches: not an open, fstat, header read and close each time.
//
// Keeping it open is sound because a span file never changes once renamed
// into place (writers create a new file and rename it over the name): what
// was checked at open still describes the bytes, even after the name is
// removed or replaced. Damage to the bytes themselves is still caught, as
// every read checks the CRCs of the blocks it returns.
type openSpan struct {
	f  *os.File
	fd int
	h  spanHeader
	// refs counts the holders: the openFiles cache while it lists the
	// file, and each read in progress. The last to let go closes it, so an
	// eviction never closes a descriptor under a read (which could then
	// read whatever file reused the number).
	refs atomic.Int32
}

func newOpenSpan(f *os.File, h spanHeader) *openSpan {
	s := &openSpan{f: f, fd: int(f.Fd()), h: h}
	s.refs.Store(1)
	return s
}

func (s *openSpan) hold() { s.refs.Add(1) }

func (s *openSpan) release() {
	if s.refs.Add(-1) == 0 {
		s.f.Close()
	}
}

// openFiles is a bounded LRU of open span files by file name.
type openFiles struct {
	mu     sync.Mutex
	lru    *simplelru.LRU[string, *openSpan]
	closed bool // after close: nothing more is kept open
}

func newOpenFiles(max int) (*openFiles, error) {
	lru, err := simplelru.NewLRU[string, *openSpan](max, func(_ string, s *openSpan) { s.release() })
	if err != nil {
		return nil, fmt.Errorf("span cache: open files LRU: %w", err)
	}
	return &openFiles{lru: lru}, nil
}

// get returns the open file of name, held for the caller, who releases it.
func (o *openFiles) get(name string) (*openSpan, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	s, ok := o.lru.Get(name)
	if ok {
		s.hold()
	}
	return s, ok
}

// add keeps s, which the caller holds, open under name, and returns the
// file the caller should read, still held for it: s, or the file another
// reader added first (then s is released). After close it keeps nothing.
func (o *openFiles) add(name string, s *openSpan) *openSpan {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return s
	}
	if cur, ok := o.lru.Get(name); ok {
		cur.hold()
		s.release()
		return cur
	}
	s.hold()
	o.lru.Add(name, s)
	return s
}

// forget stops keeping name open if it is s (a read through s failed), so
// that the next read opens the file again.
func (o *openFiles) forget(name string, s *openSpan) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if cur, ok := o.lru.Peek(name); ok && cur == s {
		o.lru.Remove(name)
	}
}

// remove stops keeping name open: the file was evicted or dropped.
func (o *openFiles) remove(name string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.lru.Remove(name)
}

func (o *openFiles) len() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.lru.Len()
}

// close releases every file it keeps; reads in progress finish first.
func (o *openFiles) close() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.closed = true
	o.lru.Purge()
}
