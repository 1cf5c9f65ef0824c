package fs

import (
	"context"
	"fmt"
	"golang.org/x/sys/unix"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// MountOptions configure Mount.
type MountOptions struct {
	FSName  string // default "imgfs": the mount source when Source is empty, and the default Subtype
	Subtype string // the type shows as "fuse.<Subtype>"; default FSName
	Source  string // shown as the source in /proc/mounts, e.g. the image reference

	// AllowOther lets users other than the one mounting use the mount
	// (needed for Apptainer as a non-root user); see CanAllowOther. It
	// implies DefaultPermissions: another user reads through the mount
	// exactly what the image's modes and owners let them read.
	AllowOther bool
	// DefaultPermissions makes the kernel enforce the image's mode bits
	// and owners against each caller, as for a sandbox unpacked by root.
	// Off (and without AllowOther), the one user who may use the mount
	// reads every file and searches every directory, as in a sandbox
	// Apptainer unpacks as that user; writes are refused either way and
	// execution needs an execute bit.
	DefaultPermissions bool
	// NonEmpty allows a mount point that has files (they are hidden while
	// mounted); by default such a directory is refused.
	NonEmpty bool
	// Method is how the kernel mount is made; see MountMethod.
	Method MountMethod

	// ReadTimeout bounds one read of file content: a read still waiting
	// for the registry after this long fails with EIO (the mount stays;
	// a later read asks again). 0: DefaultReadTimeout; negative: none.
	ReadTimeout time.Duration

	EntryTimeout  time.Duration // kernel caching of names and of missing names; 0: 1h
	AttrTimeout   time.Duration // kernel caching of attributes; 0: 1h
	MaxReadSize   int           // largest FUSE read; 0: 1 MiB (the kernel may cap it)
	MaxReadAhead  int           // 0: MaxReadSize (the kernel caps it to its readahead window)
	MaxBackground int           // concurrent async reads (readahead) the kernel may issue; 0: 64

	// KernelReadAheadKB is the kernel's readahead window for this mount,
	// set through /sys/class/bdi (root only). A FUSE mount starts at 128
	// KiB, so a cold sequential read becomes one small request after
	// another; a larger window lets the kernel ask for the next MiBs while
	// the reader consumes these, and the read path fetch and inflate them in
	// parallel. 0: 8 MiB; negative: leave the kernel's default.
	KernelReadAheadKB int

	// FileCopies, when set, keeps whole copies of the files read to their
	// end (MinFileCopySize and larger) and lets the kernel read those
	// itself on later opens (FUSE passthrough: Linux 6.9 and later, as
	// root; elsewhere nothing is copied). A catalog mount ignores it: it
	// takes each image's (ServedImage.FileCopies).
	FileCopies FileCopies

	Debug  bool         // log every FUSE request
	Logger *slog.Logger // nil: slog.Default()
}

// DefaultReadTimeout is MountOptions.ReadTimeout's default: longer than a
// registry needs to answer, shorter than users wait before calling a
// program hung.
const DefaultReadTimeout = 30 * time.Second

// MountMethod says how the kernel mount is made.
type MountMethod int

const (
	// MountAuto: mount(2) as root (no exec, works where fusermount3 is not
	// installed), falling back to fusermount3; fusermount3 otherwise.
	MountAuto MountMethod = iota
	// MountDirect: mount(2) only (needs root).
	MountDirect
	// MountFusermount: the fusermount3 helper, as an unprivileged user
	// mounts, even as root.
	MountFusermount
)

// Mounted is a live mount.
type Mounted struct {
	server   *fuse.Server
	dir      string
	stopped  chan struct{} // closed when the serve loop ends
	requests *requestCounters
	xattrs   bool
	drain    func() // run when the mount has ended, before Wait returns; nil: none

	mu        sync.Mutex
	unmounted bool
}

// Mount freezes t and serves it read-only at dir until Unmount, or until
// ctx is cancelled (then it unmounts). readers holds one ContentReader per
// layer in manifest order (Node.Layer indexes it); synthetic files need
// none. Mount returns once the kernel has the mount.
func Mount(ctx context.Context, dir string, t *Tree, readers []ContentReader, opts MountOptions) (*Mounted, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("mount %s: %w", dir, err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	t.Freeze()
	fsName := opts.FSName
	if fsName == "" {
		fsName = "imgfs"
	}
	source := opts.Source
	if source == "" {
		source = fsName
	}
	subtype := opts.Subtype
	if subtype == "" {
		subtype = fsName
	}
	if err := CheckMountPoint(dir, opts.NonEmpty); err != nil {
		return nil, err
	}
	tfs := newTreeFS(t, readers, imageOptions(opts, log))
	// requestFS sits between the server and the tree: it counts requests,
	// and answers the xattr requests of a tree without xattrs, and
	// OPENDIR, so that the kernel stops sending them.
	mt := &Mounted{dir: dir, stopped: make(chan struct{}), requests: new(requestCounters), xattrs: treeHasXattrs(t)}
	if tfs.pt != nil {
		mt.drain = func() { // copies of files just read are finished, not lost
			tfs.pt.drain()
			tfs.pt.closeFiles()
		}
	}
	rawFS := newRequestFS(tfs, mt.requests, !mt.xattrs)
	if err := mt.serve(ctx, rawFS, fuseMountOptions(ctx, log, opts, source, subtype), opts, log); err != nil {
		return nil, err
	}
	return mt, nil
}

// imageOptions are the treeFS options of an image served with opts.
func imageOptions(opts MountOptions, log *slog.Logger) treeFSOptions {
	readTimeout := orDefault(opts.ReadTimeout, DefaultReadTimeout)
	if opts.ReadTimeout < 0 {
		readTimeout = 0
	}
	return treeFSOptions{
		readTimeout:     readTimeout,
		entryTimeout:    orDefault(opts.EntryTimeout, time.Hour),
		attrTimeout:     orDefault(opts.AttrTimeout, time.Hour),
		negativeTimeout: orDefault(opts.EntryTimeout, time.Hour),
		log:             log,
		copies:          opts.FileCopies,
	}
}

// fuseMountOptions are the kernel mount's options (Mount's and
// MountCatalog's); source and subtype name the mount in /proc/mounts.
func fuseMountOptions(ctx context.Context, log *slog.Logger, opts MountOptions, source, subtype string) *fuse.MountOptions {
	maxRead := opts.MaxReadSize
	if maxRead <= 0 {
		maxRead = 1 << 20
	}
	readAhead := opts.MaxReadAhead
	if readAhead <= 0 {
		readAhead = maxRead
	}
	background := opts.MaxBackground
	if background <= 0 {
		background = 64
	}
	// Never setuid programs or device files of an image on the host: a
	// user-namespace container has its own view anyway.
	mountOpts := []string{"ro", "nosuid", "nodev"}
	if opts.DefaultPermissions || opts.AllowOther {
		mountOpts = append(mountOpts, "default_permissions")
	}
	return &fuse.MountOptions{
		AllowOther:    opts.AllowOther,
		Options:       mountOpts,
		FsName:        source,
		Name:          subtype,
		MaxWrite:      maxRead, // also max_read: the largest READ the kernel sends
		MaxReadAhead:  readAhead,
		MaxBackground: background,
		DirectMount:   opts.Method == MountDirect || opts.Method == MountAuto && os.Geteuid() == 0,
		// A direct mount that fails falls back to fusermount3 unless
		// mount(2) was asked for explicitly.
		DirectMountStrict: opts.Method == MountDirect,
		Debug:             opts.Debug,
		Logger:            slog.NewLogLogger(log.Handler(), fuseLogLevel(ctx, log, opts.Debug)),
		EnableLocks:       false,
		// Every read answers with bytes in memory (dataResult), which
		// a splice cannot speed up. Off, go-fuse never sets up pipes,
		// and never logs the failure a splice of a full 1 MiB reply
		// meets (reply plus header exceed the default 1 MiB pipe).
		DisableSplice: true,
		// Symlinks never change: let the kernel cache their targets.
		EnableSymlinkCaching: true,
	}
}

// serve mounts fsys at m.dir and serves it, until unmounted, or until ctx
// is cancelled (then it unmounts). It returns once the kernel has the
// mount.
func (m *Mounted) serve(ctx context.Context, fsys fuse.RawFileSystem, mo *fuse.MountOptions, opts MountOptions, log *slog.Logger) error {
	server, err := fuse.NewServer(fsys, m.dir, mo)
	if err != nil {
		return fmt.Errorf("mount %s: %w", m.dir, err)
	}
	go server.Serve()
	if err := server.WaitMount(); err != nil {
		return fmt.Errorf("mount %s: %w", m.dir, err)
	}
	m.server = server
	if opts.KernelReadAheadKB >= 0 {
		raiseKernelReadahead(m.dir, orDefaultInt(opts.KernelReadAheadKB, defaultKernelReadAheadKB), log)
	}
	go func() {
		server.Wait()
		if m.drain != nil {
			m.drain()
		}
		close(m.stopped)
	}()
	if ctx.Done() != nil {
		go func() {
			select {
			case <-ctx.Done():
				if err := m.Unmount(); err != nil {
					log.Error("unmount after cancel", "dir", m.dir, "err", err)
				}
			case <-m.stopped:
			}
		}()
	}
	return nil
}

// fuseLogLevel is the level go-fuse's messages are logged at: its request
// trace when Debug is on (at Info if the logger would drop Debug, so that
// Debug always shows something), else its rare warnings and panics.
func fuseLogLevel(ctx context.Context, log *slog.Logger, debug bool) slog.Level {
	switch {
	case !debug:
		return slog.LevelWarn
	case log.Enabled(ctx, slog.LevelDebug):
		return slog.LevelDebug
	}
	return slog.LevelInfo
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// Requests are the FUSE requests the kernel has sent this mount so far, by
// kind. Counting costs an atomic add per request.
func (m *Mounted) Requests() RequestStats { return m.requests.snapshot() }

// HasXattrs reports whether some path of the tree carries an extended
// attribute. When none does, the mount answers the kernel's first GETXATTR
// and LISTXATTR with ENOSYS, after which the kernel answers getxattr(2) and
// listxattr(2) on the mount itself, with EOPNOTSUPP.
func (m *Mounted) HasXattrs() bool { return m.xattrs }

// Wait blocks until the file system is unmounted, by Unmount or from
// outside (fusermount -u, umount).
func (m *Mounted) Wait() { <-m.stopped }

// Unmount unmounts and waits for the server to stop. go-fuse retries a busy
// mount a few times; if it is still busy the error says so and the mount
// stays (call again later). Once unmounted, from here or from outside,
// it is a no-op.
func (m *Mounted) Unmount() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.unmounted {
		return nil
	}
	select {
	case <-m.stopped:
		m.unmounted = true
		return nil
	default:
	}
	if err := m.server.Unmount(); err != nil {
		return fmt.Errorf("unmount %s: %w", m.dir, err)
	}
	m.unmounted = true
	<-m.stopped
	return nil
}

// CanAllowOther reports whether this process may mount with allow_other:
// as root, or when /etc/fuse.conf has user_allow_other. When it may not,
// the message says why and what to do.
func CanAllowOther() (bool, string) {
	if os.Geteuid() == 0 {
		return true, ""
	}
	data, err := os.ReadFile("/etc/fuse.conf")
	if err == nil && fuseConfAllowsOther(string(data)) {
		return true, ""
	}
	return false, "mounting without allow_other: only this user can use the mount (Apptainer run as another user, or in setuid mode, cannot); " +
		"add user_allow_other to /etc/fuse.conf or mount as root to share it"
}

// fuseConfAllowsOther reports whether fuse.conf content enables
// user_allow_other (a line of its own; "#" starts a comment).
func fuseConfAllowsOther(conf string) bool {
	for _, line := range strings.Split(conf, "\n") {
		line, _, _ = strings.Cut(line, "#")
		if strings.TrimSpace(line) == "user_allow_other" {
			return true
		}
	}
	return false
}

const defaultKernelReadAheadKB = 8 << 10

func orDefaultInt(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

// raiseKernelReadahead sets read_ahead_kb of the mount's backing device
// info. It is best effort: without root the file is not writable and the
// kernel default stays.
func raiseKernelReadahead(dir string, kb int, log *slog.Logger) {
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		log.Debug("kernel readahead left as is", "dir", dir, "err", err)
		return
	}
	path := bdiReadAheadPath(st.Dev)
	if err := os.WriteFile(path, []byte(strconv.Itoa(kb)), 0); err != nil {
		log.Debug("kernel readahead left as is", "file", path, "err", err)
		return
	}
	log.Debug("kernel readahead raised", "file", path, "kb", kb)
}

func bdiReadAheadPath(dev uint64) string {
	return fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(dev), unix.Minor(dev))
}
