package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/imgfs/imgfs/fs"
	"github.com/imgfs/imgfs/index/cache"
	"github.com/imgfs/imgfs/serve"
)

func init() { registerCommand(newServeCommand) }

type serveFlags struct {
	plainHTTPRegistries []string
	tagTTL              time.Duration
	idleTimeout         time.Duration
	local               []string
	memoryCache         string
	fileCopies          string
	readTimeout         time.Duration
	background          bool
	allowOther          string
	logFile             string
	nonEmpty            bool
}

func newServeCommand(a *app) *cobra.Command {
	var f serveFlags
	cmd := &cobra.Command{
		Use:   "serve DIR",
		Short: "Serve any image by path under DIR, opened on first use",
		Long: `Serve images read-only under DIR with one FUSE mount, each opened the first
time its path is looked up (as autofs mounts), so that any node can run any
image with no set-up:

  DIR/<registry>/<repository>@sha256:<hex>   the image with that manifest digest
  DIR/<registry>/<repository>:<tag>          a symbolic link to the digest the tag
                                             resolves to (for this platform)
  DIR/local/<name>                           a local source given with --local
  DIR/.imgfs/images, stats, errors           status: images served and tags
                                             resolved, what each cost, recent errors

Docker Hub is docker.io: DIR/docker.io/library/python:3.12, or
DIR/docker.io/python:3.12. Each image is a sandbox for Apptainer, as a
mount is (see 'imgfs mount'). Images share one span cache and decode
bound: a layer two images share is indexed, fetched and cached once.

A tag is resolved again once --tag-ttl has passed since the last time (the
link then points at the new digest; programs running keep the old image); a
digest path never changes. An image with no open file and no use for
--idle-timeout is released (the next use opens it again). A path that
cannot be opened is "No such file or directory" (or an I/O error), and the
reason is in DIR/.imgfs/errors and the log.

Registries speak HTTPS unless --plain-http (every registry) or
--plain-http-registry HOST (that one, repeatable) says otherwise.
The global flags for clusters apply to every image served as to a mount:
--index-source (index artifacts), --cache-dir-ro, --cache-layers,
--registry-mirror and the mirrors of registries.conf.

SIGINT, SIGTERM and SIGHUP unmount (lazily when programs still use it) and
stop. 'imgfs unmount DIR' does too. contrib/imgfs-serve.service runs it
under systemd.`,
		Example: `  imgfs serve --background /images
  apptainer exec /images/docker.io/library/python:3.12 python3 -V
  cat /images/.imgfs/images
  imgfs unmount /images

  imgfs serve --plain-http-registry 127.0.0.1:5000 --tag-ttl 1m --idle-timeout 2h /images
  imgfs serve --local app=oci:/srv/layouts/app:v1 /images    # /images/local/app`,
		Args: exactArgs("DIR"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.background && os.Getenv(readyFDEnv) == "" {
				return startInBackground(cmd, a, args[0], f.logFile)
			}
			return a.serveForeground(cmd, args[0], f)
		},
	}
	fl := cmd.Flags()
	fl.StringArrayVar(&f.plainHTTPRegistries, "plain-http-registry", nil, "speak plain HTTP to this registry host[:port] (repeatable)")
	durationFlag(fl, &f.tagTTL, "tag-ttl", serve.DefaultTagTTL, "resolve a tag again after this long (e.g. 30s, 5m, 1d; 0: on every lookup)")
	durationFlag(fl, &f.idleTimeout, "idle-timeout", serve.DefaultIdleTimeout, "release an image unused this long, with no file open (0: never)")
	fl.StringArrayVar(&f.local, "local", nil, "serve a local source as DIR/local/NAME: NAME=oci:DIR[:TAG], oci-archive:FILE[:TAG] or docker-archive:FILE (repeatable)")
	fl.StringVar(&f.memoryCache, "memory-cache", sizeString(cache.DefaultMemoryBytes), "decoded data kept in memory, for every image")
	durationFlag(fl, &f.readTimeout, "read-timeout", fs.DefaultReadTimeout, "a read still waiting for the registry after this long fails with EIO (0: never)")
	fl.BoolVar(&f.background, "background", false, "return once DIR is served; the server keeps running")
	fl.StringVar(&f.allowOther, "allow-other", "auto", "let other users use the mount: auto (when permitted), yes, no")
	fl.BoolVar(&f.nonEmpty, "nonempty", false, "mount over a directory that has files (hidden while mounted)")
	fl.StringVar(&f.logFile, "log-file", "", "where the server logs (appended); with --background the default is <cache-dir>/logs/serve-*.log")
	fl.StringVar(&f.fileCopies, "file-copies", sizeString(defaultFileCopies), "whole copies of files of 1 MiB or more read to their end, for every image, which the kernel then reads itself (FUSE passthrough: root, Linux 6.9+); 0: none")
	withEnv(fl, "memory-cache", "read-timeout", "allow-other", "tag-ttl", "idle-timeout", "file-copies")
	return cmd
}

func (a *app) serveForeground(cmd *cobra.Command, dir string, f serveFlags) error {
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
	applyMountMemoryLimit(a.getenv, memory)
	local := map[string]string{}
	for _, l := range f.local {
		name, ref, err := serve.LocalReference(l)
		if err != nil {
			return usageErrorf("invalid --local: %w", err)
		}
		local[name] = ref
	}
	allowOther, err := a.decideAllowOther(f.allowOther)
	if err != nil {
		return err
	}
	if err := a.prepareMountPoint(dir, f.nonEmpty); err != nil {
		return err
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)

	opts, err := a.imageOptions(cmd)
	if err != nil {
		return err
	}
	opts.MemoryCache, opts.DiskCache, opts.FileCopies = memory, a.flags.cacheSizeBytes, fileCopies
	tagTTL, idle := f.tagTTL, f.idleTimeout
	if tagTTL == 0 {
		tagTTL = -1 // every lookup
	}
	if idle == 0 {
		idle = -1 // never
	}
	srv, err := serve.New(serve.Options{
		Image:               opts,
		PlainHTTPRegistries: f.plainHTTPRegistries,
		TagTTL:              tagTTL,
		IdleTimeout:         idle,
		Local:               local,
		Mount: fs.MountOptions{AllowOther: allowOther, ReadTimeout: readTimeout(f.readTimeout), NonEmpty: f.nonEmpty,
			Logger: a.logger, Debug: a.flags.debug},
		Logger: a.logger,
	})
	if err != nil {
		return err
	}
	defer srv.Close()
	serveCtx, stopServing := context.WithCancel(context.WithoutCancel(cmd.Context()))
	defer stopServing()
	if err := srv.Mount(serveCtx, dir); err != nil {
		return err
	}
	abs, _ := filepath.Abs(dir)
	cacheDir, _ := a.cacheDir()
	defer recordMount(cacheDir, MountInfo{Dir: abs, Kind: "serve", PID: os.Getpid(), Started: time.Now().UTC(), Log: logPath})()
	fmt.Fprintf(cmd.OutOrStdout(), "imgfs: serving images at %s (pid %d); stop with: imgfs unmount %s\n", abs, os.Getpid(), abs)
	a.logger.Info("serving", "dir", abs)
	signalReady()

	m := srv.Mounted()
	stopped := make(chan struct{})
	go func() {
		m.Wait()
		close(stopped)
	}()
	select {
	case <-stopped:
	case sig := <-sigs:
		fmt.Fprintf(cmd.OutOrStdout(), "imgfs: %s: unmounting %s\n", sig, abs)
		if err := m.Unmount(); err != nil {
			// Programs still use images: detach now, so that nothing is
			// left mounted; they keep what they have open until they exit.
			a.logger.Warn("busy: detaching the mount lazily", "err", err)
			if err := unmount(abs, true); err != nil {
				a.logger.Error("lazy unmount failed", "err", err)
			}
		}
		select {
		case <-stopped:
		case <-time.After(10 * time.Second):
			a.logger.Warn("the kernel still holds the detached mount's connection; exiting anyway")
		}
	}
	return nil
}
