package fs

import (
	"context"
	"log/slog"
	"os"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/imgfs/imgfs/index"
)

// FileCopies keeps whole copies of files on local disk (index/cache's
// Copies satisfies it). With MountOptions.FileCopies, a file read to its
// end through the mount is copied there in the background, and later opens
// of it hand the copy to the kernel (FUSE passthrough, Linux 6.9 and later,
// as root): its reads then never reach imgfs, and run as fast as reads of
// a local file, in this mount and in the next ones.
type FileCopies interface {
	// Open opens the complete copy of key, size bytes long, if stored.
	Open(key string, size int64) (*os.File, bool)
	// Has reports whether a copy of key of size bytes is stored.
	Has(key string, size int64) bool
	// Store writes a copy of key, read with read.
	Store(ctx context.Context, key string, size int64, read func(ctx context.Context, p []byte, off int64) (int, error)) error
	// Admit reports whether a file of size bytes is worth copying (small
	// enough for the budget to hold several).
	Admit(size int64) bool
	// Probe opens a file of the store (empty, already unlinked), to check
	// that the kernel takes the store's files as backing files.
	Probe() (*os.File, error)
}

// ContentKeyer is what a ContentReader offers to have its files copied:
// a name for an entry's content, the same only for the same bytes.
// *index.Reader satisfies it.
type ContentKeyer interface {
	ContentKey(e *index.Entry) string
}

var _ ContentKeyer = (*index.Reader)(nil)

// MinFileCopySize is the smallest file copied for passthrough: the kernel
// page cache already serves rereads of small files, and an open costs a
// lookup of the copy.
const MinFileCopySize = 1 << 20

// maxCopyTracked bounds the files whose reads are being followed at once,
// and maxReadRanges the disjoint ranges followed per file: a file read at
// random in more places than that is not copied (it is not being read
// whole).
const (
	maxCopyTracked = 4096
	maxReadRanges  = 64
)

// File handles of opens that the passthrough state counts (0: not
// counted, a file below MinFileCopySize or without a key).
const (
	fhCached      = 1 // served by READs
	fhPassthrough = 2 // read by the kernel from the copy
)

// passthrough is a treeFS's file-copy and passthrough state.
//
// The kernel keeps one I/O mode per inode: while a file is open through
// READs (cached), an open that asks for passthrough fails with EIO, and the
// other way round. So an inode that has opens of one mode gets the same
// mode for every new open, and the mode only changes when the server has
// seen every open of the old one released (the kernel ends them before it
// sends RELEASE, so the server never lags the wrong way).
type passthrough struct {
	copies FileCopies
	log    *slog.Logger
	server atomic.Pointer[fuse.Server]
	off    atomic.Bool // the kernel refused a backing file: READs only
	probed sync.Once   // off set from what the kernel offers (usable)

	mu      sync.Mutex
	opens   map[uint64]*inodeOpens // by node ID, while open
	reads   map[uint64]*readSpans  // by node ID: what was read of files not yet copied
	copying map[string]bool        // keys being copied
	keys    sync.Map               // node ID -> content key ("" when not copyable), computed once
	sem     chan struct{}          // one copy at a time

	lastRead   atomic.Int64    // unix nanoseconds of the last READ: copies wait for a pause
	copiesCtx  context.Context // ends copies in flight (drain)
	stopCopies context.CancelFunc
	inFlight   sync.WaitGroup
}

// inodeOpens counts the opens of one inode, of each mode.
type inodeOpens struct {
	cached, passthrough int
	backingID           int32
	file                *os.File
}

// readSpans is what was read of a file, as sorted disjoint [start, end)
// ranges; abandoned once there are too many of them.
type readSpans struct {
	spans     [][2]int64
	abandoned bool
}

func newPassthrough(copies FileCopies, log *slog.Logger) *passthrough {
	p := &passthrough{copies: copies, log: log, opens: map[uint64]*inodeOpens{},
		reads: map[uint64]*readSpans{}, copying: map[string]bool{}, sem: make(chan struct{}, 1)}
	p.copiesCtx, p.stopCopies = context.WithCancel(context.Background())
	return p
}

// copyIdle is the pause in READs a copy waits for before it starts, so
// that copying (which reads the file again through the span cache, and
// writes it) does not take cores and disk from reads in progress.
const copyIdle = 100 * time.Millisecond

// waitForIdle returns once no READ has come for copyIdle, or ctx ends.
func (p *passthrough) waitForIdle(ctx context.Context) error {
	for {
		quiet := time.Since(time.Unix(0, p.lastRead.Load()))
		if quiet >= copyIdle {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(copyIdle - quiet):
		}
	}
}

// copyDrainTimeout bounds how long the end of a mount waits for copies in
// flight (a mount that ends right after a file was read, as in a CI job,
// would otherwise never keep one).
const copyDrainTimeout = 30 * time.Second

// drain waits for the copies in flight, at most copyDrainTimeout, then
// stops the rest. The mount has ended: no new copy starts.
func (p *passthrough) drain() {
	done := make(chan struct{})
	go func() {
		p.inFlight.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(copyDrainTimeout):
		p.log.Warn("file copies still running when the mount ended: stopped", "after", copyDrainTimeout)
	}
	p.stopCopies()
	<-done
}

// copyKey is the content key of n when n is a file worth copying.
func (t *treeFS) copyKey(n *Node) (string, bool) {
	if t.pt == nil || n.Type() != index.TypeReg || n.Synthetic() || n.Size() < MinFileCopySize {
		return "", false
	}
	if k, ok := t.pt.keys.Load(n.Ino()); ok {
		return k.(string), k.(string) != ""
	}
	key := ""
	if layer := n.Layer(); layer >= 0 && layer < len(t.readers) && t.pt.copies.Admit(n.Size()) {
		if k, ok := t.readers[layer].(ContentKeyer); ok {
			key = k.ContentKey(n.Entry())
		}
	}
	t.pt.keys.Store(n.Ino(), key)
	return key, key != ""
}

// open decides the mode of an open of node id (key, size) and fills out.
func (p *passthrough) open(id uint64, key string, size int64, out *fuse.OpenOut) {
	p.mu.Lock()
	defer p.mu.Unlock()
	o := p.opens[id]
	if o == nil {
		o = &inodeOpens{}
		p.opens[id] = o
	}
	if o.passthrough == 0 && o.cached == 0 {
		p.startPassthrough(o, key, size)
	}
	if o.backingID != 0 {
		o.passthrough++
		out.Fh = fhPassthrough
		out.BackingID = o.backingID
		// No page cache of the mount to keep: the kernel reads the copy.
		out.OpenFlags = out.OpenFlags&^fuse.FOPEN_KEEP_CACHE | fuse.FOPEN_PASSTHROUGH
		return
	}
	o.cached++
	out.Fh = fhCached
}

// startPassthrough registers the copy of key as o's backing file, when
// there is one and the kernel takes it. p.mu is held.
func (p *passthrough) startPassthrough(o *inodeOpens, key string, size int64) {
	if !p.usable() {
		return
	}
	srv := p.server.Load()
	f, ok := p.copies.Open(key, size)
	if !ok {
		return
	}
	id, errno := srv.RegisterBackingFd(&fuse.BackingMap{Fd: int32(f.Fd())})
	if errno != 0 {
		f.Close()
		if permanentBackingError(errno) {
			p.off.Store(true)
			p.log.Info("FUSE passthrough not available; file copies are not used", "err", errno)
		} else {
			p.log.Debug("backing file refused; this open is served by READs", "err", errno)
		}
		return
	}
	o.backingID, o.file = id, f
}

// usable reports whether passthrough works on this mount: the server runs
// as root, the kernel offered passthrough at INIT, and it takes a file of
// the store as a backing file (it does not when the store is on a stacked
// file system such as overlayfs: ELOOP). Files are only copied when it
// does.
func (p *passthrough) usable() bool {
	p.probed.Do(func() {
		srv := p.server.Load()
		if srv == nil || os.Geteuid() != 0 || srv.KernelSettings().Flags64()&fuse.CAP_PASSTHROUGH == 0 {
			p.off.Store(true)
			p.log.Info("FUSE passthrough not available (needs root and Linux 6.9 or later): files are not copied")
			return
		}
		f, err := p.copies.Probe()
		if err != nil {
			p.off.Store(true)
			p.log.Warn("file copies disabled", "err", err)
			return
		}
		defer f.Close()
		id, errno := srv.RegisterBackingFd(&fuse.BackingMap{Fd: int32(f.Fd())})
		if errno != 0 {
			p.off.Store(true)
			p.log.Info("FUSE passthrough refuses the file copies' directory (a stacked file system?): files are not copied", "err", errno)
			return
		}
		srv.UnregisterBackingFd(id)
	})
	return !p.off.Load()
}

// permanentBackingError tells a refusal of any backing file (no
// permission, no passthrough, a stacked file system) from a passing one
// (no file descriptors left, no memory).
func permanentBackingError(errno syscall.Errno) bool {
	switch errno {
	case syscall.EPERM, syscall.ELOOP, syscall.EOPNOTSUPP, syscall.EINVAL, syscall.ENOTTY, syscall.ENOSYS:
		return true
	}
	return false
}

// closeFiles closes the copies still held for opens the kernel never
// released (the mount has ended).
func (p *passthrough) closeFiles() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, o := range p.opens {
		if o.file != nil {
			o.file.Close()
		}
		delete(p.opens, id)
	}
}

// release counts an open of node id, of the mode fh says, as released.
func (p *passthrough) release(id uint64, fh uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	o := p.opens[id]
	if o == nil {
		return
	}
	switch fh {
	case fhPassthrough:
		o.passthrough--
	case fhCached:
		o.cached--
	}
	if o.passthrough > 0 || o.cached > 0 {
		return
	}
	if o.backingID != 0 {
		if srv := p.server.Load(); srv != nil {
			if errno := srv.UnregisterBackingFd(o.backingID); errno != 0 {
				p.log.Debug("unregister backing file", "id", o.backingID, "err", errno)
			}
		}
		o.file.Close()
	}
	delete(p.opens, id)
}

// noteRead records that [off, off+n) of node id was read, and starts a copy
// of the file once every byte has been.
func (t *treeFS) noteRead(id uint64, n *Node, key string, off int64, got int) {
	p := t.pt
	if !p.usable() {
		return
	}
	size := n.Size()
	p.mu.Lock()
	r := p.reads[id]
	if r == nil {
		if p.copying[key] {
			p.mu.Unlock()
			return
		}
		if len(p.reads) >= maxCopyTracked { // forget a file read in part
			for id := range p.reads {
				delete(p.reads, id)
				break
			}
		}
		r = &readSpans{}
		p.reads[id] = r
	}
	if r.abandoned {
		p.mu.Unlock()
		return
	}
	r.add(off, off+int64(got))
	if len(r.spans) > maxReadRanges {
		r.spans, r.abandoned = nil, true
		p.mu.Unlock()
		return
	}
	complete := r.covers(size)
	if complete {
		delete(p.reads, id)
		if p.copying[key] {
			complete = false
		} else {
			p.copying[key] = true
		}
	}
	if complete {
		// Added from a READ, which go-fuse handles on its serve loops: all
		// have returned before the mount's drain waits.
		p.inFlight.Add(1)
	}
	p.mu.Unlock()
	if complete {
		go t.copyFile(n, key)
	}
}

// copyFile stores a copy of n, read through its layer reader (what was
// just read is in the span cache).
func (t *treeFS) copyFile(n *Node, key string) {
	p := t.pt
	defer p.inFlight.Done()
	defer func() {
		p.mu.Lock()
		delete(p.copying, key)
		p.mu.Unlock()
	}()
	if p.copies.Has(key, n.Size()) {
		return
	}
	select {
	case p.sem <- struct{}{}:
	case <-p.copiesCtx.Done():
		return
	}
	defer func() { <-p.sem }()
	if p.waitForIdle(p.copiesCtx) != nil {
		return
	}
	ctx, cancel := context.WithTimeout(p.copiesCtx, 10*time.Minute)
	defer cancel()
	reader, e := t.readers[n.Layer()], n.Entry()
	start := time.Now()
	err := p.copies.Store(ctx, key, n.Size(), func(ctx context.Context, b []byte, off int64) (int, error) {
		return reader.ReadAt(ctx, e, b, off)
	})
	if err != nil {
		p.log.Warn("file copy failed", "path", n.Path(), "err", err)
		return
	}
	p.log.Debug("file copied for passthrough", "path", n.Path(), "bytes", n.Size(), "in", time.Since(start).Round(time.Millisecond))
}

// add merges [start, end) into the ranges, in place.
func (r *readSpans) add(start, end int64) {
	if end <= start {
		return
	}
	// The ranges from i to j-1 touch or overlap [start, end).
	i := sort.Search(len(r.spans), func(k int) bool { return r.spans[k][1] >= start })
	j := i
	for j < len(r.spans) && r.spans[j][0] <= end {
		start, end = min(start, r.spans[j][0]), max(end, r.spans[j][1])
		j++
	}
	if i == j {
		r.spans = slices.Insert(r.spans, i, [2]int64{start, end})
		return
	}
	r.spans[i] = [2]int64{start, end}
	r.spans = slices.Delete(r.spans, i+1, j)
}

// covers reports whether the ranges cover [0, size).
func (r *readSpans) covers(size int64) bool {
	return len(r.spans) == 1 && r.spans[0][0] == 0 && r.spans[0][1] >= size
}
