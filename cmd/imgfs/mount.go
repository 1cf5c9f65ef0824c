package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/imgfs/imgfs/fs"
	"github.com/imgfs/imgfs/image"
	"github.com/imgfs/imgfs/index/cache"
)

func init() { registerCommand(newMountCommand) }

type mountFlags struct {
	memoryCache string
	readTimeout time.Duration
	prefetch    string
	stats       bool
	background  bool
	allowOther  string
	logFile     string
	nonEmpty    bool
	pushIndex   bool
	fileCopies  string
}

func newMountCommand(a *app) *cobra.Command {
	var f mountFlags
	cmd := &cobra.Command{
		Use:   "mount IMAGE DIR",
		Short: "Mount an image read-only at DIR, fetching data as it is read",
		Long: `Resolve IMAGE, open (or build) the index of each layer and serve the merged
root file system at DIR with FUSE. File data is fetched from the registry
only when read, a span at a time, verified, and kept in a memory cache and a
disk cache under --cache-dir (bounded by --cache-size).

The mount is a ready sandbox for singularity/apptainer exec, run, shell and
inspect: unless the image ships one, a read-only /.singularity.d is added
(environment from the image's Env, a runscript running Entrypoint + Cmd,
labels.json), with stub /dev /proc /sys /tmp /var/tmp /home /root and empty
/etc/hosts and /etc/resolv.conf where the image lacks them.

DIR is created when missing; a DIR that is already a mount point is
refused, and so is one with files in it unless --nonempty.

IMAGE is a registry reference, or a local source read in place:
oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE[:NAME:TAG].

By default imgfs stays in the foreground until DIR is unmounted (Ctrl-C,
SIGTERM, a hangup of its terminal, 'imgfs unmount DIR' or fusermount3 -u
DIR): it unmounts cleanly. Once the mount answers it prints one line,
"imgfs: IMAGE mounted at DIR (pid N); ...". With --background it returns
once the mount answers, or fails with the reason (and the exit status the
server had). Programs should wait for that: a mount started with & is
empty until it is ready. 'imgfs mounts' lists the active mounts.`,
		Example: `  imgfs mount --background docker://python:3.12 ~/py
  apptainer exec ~/py python3 -V
  imgfs unmount ~/py

  imgfs mount --background --plain-http 127.0.0.1:5000/tools/app:dev /mnt/app
  imgfs mount --log-file /var/log/imgfs-app.log oci:./layout:v1 /mnt/app`,
		Args: exactArgs("IMAGE", "DIR"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.background && os.Getenv(readyFDEnv) == "" {
				return startInBackground(cmd, a, args[1], f.logFile)
			}
			return a.mountForeground(cmd, args[0], args[1], f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.memoryCache, "memory-cache", sizeString(cache.DefaultMemoryBytes), "decoded data kept in memory (rereads are then served from the disk cache)")
	durationFlag(fl, &f.readTimeout, "read-timeout", fs.DefaultReadTimeout, "a read of file content still waiting for the registry after this long fails with EIO (0: never)")
	fl.StringVar(&f.prefetch, "prefetch", string(prefetchLandmark), prefetchFlagHelp)
	fl.BoolVar(&f.stats, "stats", false, "print bytes fetched per layer, requests and cache hits on exit")
	fl.BoolVar(&f.background, "background", false, "return once the mount is ready; the server keeps running")
	fl.StringVar(&f.allowOther, "allow-other", "auto", "let other users use the mount: auto (when permitted), yes, no")
	fl.BoolVar(&f.nonEmpty, "nonempty", false, "mount over a directory that has files (hidden while mounted)")
	fl.BoolVar(&f.pushIndex, "push-index", false, "publish layer indexes built by this mount as an index artifact (a failure is a warning)")
	fl.StringVar(&f.fileCopies, "file-copies", sizeString(defaultFileCopies), "whole copies of files of 1 MiB or more read to their end, kept in the cache dir, which the kernel then reads itself (FUSE passthrough: root, Linux 6.9+); 0: none")
	fl.StringVar(&f.logFile, "log-file", "", "where the server logs (appended); with --background the default is <cache-dir>/logs/mount-*.log, in the foreground stderr")
	withEnv(fl, "memory-cache", "read-timeout", "prefetch", "stats", "allow-other", "push-index", "file-copies")
	return cmd
}

func (a *app) mountForeground(cmd *cobra.Command, reference, dir string, f mountFlags) error {
	keepReadyFDFromChildren()
	logPath, closeLog, err := a.logToFile(f.logFile)
	if err != nil {
		return err
	}
	defer closeLog()
	memory, err := sizeFlag("memory-cache", f.memoryCache)
	if err != nil {
		return err
	}
	fileCopies, err := sizeFlag("file-copies", f.fileCopies)
	if err != nil {
		return err
	}
	if limit := applyMountMemoryLimit(a.getenv, memory); limit > 0 {
		a.logger.Debug("Go memory limit set", "bytes", limit)
	}
	stopProfile, err := startCPUProfile(a.getenv)
	if err != nil {
		return err
	}
	defer stopProfile()
	prefetch, err := parsePrefetch(f.prefetch)
	if err != nil {
		return err
	}
	allowOther, err := a.decideAllowOther(f.allowOther)
	if err != nil {
		return err
	}
	// Before the image is opened (that may take a while), as Mount will.
	if err := a.prepareMountPoint(dir, f.nonEmpty); err != nil {
		return err
	}

	// Registered before anything is built, so that no signal falls between
	// the image being opened and the serve loop below.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	// A signal while the image is being opened aborts that (cmd.Context is
	// cancelled by one); once mounted, a signal asks for an unmount, which
	// may fail on a busy mount: the mount then keeps serving, so neither
	// the mount nor its background work may hang on the command's context.
	// Reads carry the context of their FUSE request.
	serveCtx, stopServing := context.WithCancel(context.WithoutCancel(cmd.Context()))
	defer stopServing()
	untilMounted := context.AfterFunc(cmd.Context(), stopServing)
	img, err := a.openImage(cmd, reference, func(o *image.Options) {
		o.Synthesize = true
		o.MemoryCache = memory
		o.DiskCache = a.flags.cacheSizeBytes
		o.FileCopies = fileCopies
	})
	if err != nil {
		return err
	}
	defer img.Close()

	m, err := fs.Mount(serveCtx, dir, img.Tree(), img.ContentReaders(), fs.MountOptions{
		Source:      reference,
		AllowOther:  allowOther,
		ReadTimeout: readTimeout(f.readTimeout),
		NonEmpty:    f.nonEmpty,
		Logger:      a.logger,
		Debug:       a.flags.debug,
		FileCopies:  img.FileCopies(),
	})
	if err != nil {
		return err
	}
	a.logger.Info("mounted", "image", reference, "dir", dir, "digest", img.Manifest.Digest, "files", img.Tree().Len())
	// From here on a signal means "unmount", handled below.
	untilMounted()
	abs, _ := filepath.Abs(dir)
	cacheDir, _ := a.cacheDir()
	defer recordMount(cacheDir, MountInfo{Dir: abs, Kind: "mount", Image: reference, Digest: img.Manifest.Digest.String(),
		PID: os.Getpid(), Started: time.Now().UTC(), Log: logPath})()
	fmt.Fprintf(cmd.OutOrStdout(), "imgfs: %s mounted at %s (pid %d); unmount with: imgfs unmount %s\n", reference, abs, os.Getpid(), abs)
	signalReady()
	if f.pushIndex {
		go func() { _ = pushIndexes(cmd, img, a.logger, true) }()
	}
	if prefetch != prefetchNone {
		go func() {
			img.PrefetchLandmarks(serveCtx)
			if prefetch == prefetchAllFiles {
				if n, err := img.ReadAll(serveCtx); err == nil {
					a.logger.Info("prefetch done", "files", n)
				}
			}
		}()
	}
	serveUntilUnmounted(m, sigs, a.logger)
	stopServing()
	if f.stats {
		printStats(cmd.ErrOrStderr(), img.Stats())
		printRequests(cmd.ErrOrStderr(), m.Requests(), m.HasXattrs())
	}
	return nil
}

// defaultFileCopies is --file-copies' default: a few large files (a
// model, a database, a big shared library set) without filling the disk.
const defaultFileCopies = 2 << 30

// prepareMountPoint creates dir when missing and checks that it can be
// mounted on (mount and serve, before the slow work of opening images).
func (a *app) prepareMountPoint(dir string, nonEmpty bool) error {
	if err := os.Mkdir(dir, 0o755); err == nil {
		a.logger.Info("created the mount point", "dir", dir)
	}
	return fs.CheckMountPoint(dir, nonEmpty)
}

// readTimeout maps the flag (0: never) to fs.MountOptions.ReadTimeout.
func readTimeout(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// mountHandle is what serveUntilUnmounted needs of a mount (*fs.Mounted).
type mountHandle interface {
	Unmount() error
	Wait()
}

// serveUntilUnmounted returns once the mount has ended: unmounted from
// outside, or on a signal. A signal that finds the mount busy leaves it up
// and serving, with a message; the next signal tries again.
func serveUntilUnmounted(m mountHandle, sigs <-chan os.Signal, log *slog.Logger) {
	stopped := make(chan struct{})
	go func() {
		m.Wait()
		close(stopped)
	}()
	for {
		select {
		case <-stopped:
			return
		case sig := <-sigs:
			log.Info("unmounting", "signal", sig.String())
			if err := m.Unmount(); err != nil {
				log.Error("unmount failed; still mounted and serving (signal again to retry, or use 'imgfs unmount --lazy')", "err", err)
				continue
			}
			<-stopped
			return
		}
	}
}

// decideAllowOther applies --allow-other: auto mounts with allow_other when
// permitted and says what it means when not.
func (a *app) decideAllowOther(mode string) (bool, error) {
	ok, why := fs.CanAllowOther()
	switch mode {
	case "auto":
		if !ok {
			a.logger.Warn("mounting without allow_other: only you can use the mount (singularity as another user, or with setuid, cannot)", "reason", why)
		}
		return ok, nil
	case "yes":
		if !ok {
			return false, errors.New("--allow-other=yes: " + why)
		}
		return true, nil
	case "no":
		return false, nil
	}
	return false, usageErrorf("invalid --allow-other %q: want auto, yes or no", mode)
}

// printStats reports what the mount cost on the network and in the cache.
// Per layer: requests and bytes fetched; span lookups, hits (from the
// cache, or shared with a fetch another read started) and misses (spans
// fetched and decoded: hits + misses = lookups).
func printStats(w io.Writer, s image.Stats) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "LAYER\tDIGEST\tFORMAT\tREQUESTS\tFETCHED\tLOOKUPS\tHITS\tSHARED\tMISSES")
	var requests, fetched int64
	for i, l := range s.Layers {
		requests += l.Requests
		fetched += l.Fetched
		r := l.Reads
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\t%d\t%d\t%d\t%d\n", i+1, shortDigest(l.Layer.Digest.String()), l.Layer.Format,
			l.Requests, humanSize(l.Fetched), r.Lookups, r.Hits, r.Shared, r.SpansDecoded)
	}
	fmt.Fprintf(tw, "total\t\t\t%d\t%s\t\t\t\t\n", requests, humanSize(fetched))
	tw.Flush()
	c := s.Cache
	fmt.Fprintf(w, "span cache: %d memory hits, %d disk hits, %d misses; %s in memory, %s on disk\n",
		c.MemoryHits, c.DiskHits, c.Misses, humanSize(c.MemoryBytes), humanSize(c.DiskBytes))
}

// printRequests reports, after the layer table, the FUSE requests the
// kernel sent the mount, by kind, on one line ("fuse requests: lookup 12,
// forget 0, ..., total N"), then how extended attributes were answered.
func printRequests(w io.Writer, r fs.RequestStats, xattrs bool) {
	parts := make([]string, 0, len(r)+1)
	for _, c := range r {
		parts = append(parts, fmt.Sprintf("%s %d", c.Kind, c.N))
	}
	parts = append(parts, fmt.Sprintf("total %d", r.Total()))
	fmt.Fprintf(w, "fuse requests: %s\n", strings.Join(parts, ", "))
	if xattrs {
		fmt.Fprintln(w, "xattrs: the image has some: each getxattr and listxattr is a request, answered from the image")
	} else {
		fmt.Fprintln(w, "xattrs: the image has none: the first getxattr and listxattr were answered ENOSYS; the kernel answers the others itself (EOPNOTSUPP)")
	}
}
