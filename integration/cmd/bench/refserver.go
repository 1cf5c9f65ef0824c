package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// refServerArg, as the first argument, makes the bench binary a reference
// mount server instead (see serveRef): the FUSE mounts that give P4 and
// P4d their scale run in a process of their own, as imgfs's server does,
// not in the bench's with its large heap and collector.
const refServerArg = "ref-server"

// A reference mount serves one file, "file", at its root, as:
const (
	refRAM         = "ram"         // bytes in RAM through imgfs's own FUSE layer (fs.Mount)
	refPassthrough = "passthrough" // a local file the kernel reads itself (FUSE passthrough)
)

// serveRef is the reference server's main: it mounts, prints "ready",
// serves until its stdin closes, unmounts and prints how many READs reached
// it ("reads N"), which tells whether passthrough was in effect.
func serveRef(args []string) error {
	fl := flag.NewFlagSet(refServerArg, flag.ContinueOnError)
	kind := fl.String("kind", refRAM, "ram or passthrough")
	dir := fl.String("dir", "", "mount point")
	size := fl.Int64("size", 0, "ram: file size")
	file := fl.String("file", "", "passthrough: the local file")
	if err := fl.Parse(args); err != nil {
		return err
	}
	var reads atomic.Int64
	var unmount func() error
	var err error
	switch *kind {
	case refRAM:
		unmount, err = mountRAM(*dir, *size, &reads)
	case refPassthrough:
		unmount, err = mountPassthrough(*dir, *file, &reads)
	default:
		err = fmt.Errorf("unknown kind %q", *kind)
	}
	if err != nil {
		return err
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	if err := unmount(); err != nil {
		return err
	}
	fmt.Println("reads", reads.Load())
	return nil
}

var errNoPassthrough = errors.New("FUSE passthrough not in effect (needs root and Linux 6.9 or later): READs reached the server")

// refMount is a running reference server.
type refMount struct {
	dir   string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Scanner
}

// startRef starts a reference server of kind on a fresh mount point and
// returns once it serves.
func (b *bench) startRef(kind string, args ...string) (*refMount, error) {
	dir := filepath.Join(b.work, "mnt", "ref-"+kind)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, append([]string{refServerArg, "-kind", kind, "-dir", dir}, args...)...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("reference server: %w", err)
	}
	b.recordPid(cmd.Process.Pid)
	r := &refMount{dir: dir, cmd: cmd, stdin: stdin, out: bufio.NewScanner(stdout)}
	if !r.out.Scan() || r.out.Text() != "ready" {
		stdin.Close()
		cmd.Wait()
		return nil, fmt.Errorf("reference server (%s) did not start", kind)
	}
	return r, nil
}

// stop unmounts and returns how many READs reached the server.
func (r *refMount) stop() (int64, error) {
	r.stdin.Close()
	var reads int64 = -1
	for r.out.Scan() {
		if v, ok := strings.CutPrefix(r.out.Text(), "reads "); ok {
			reads, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	done := make(chan error, 1)
	go func() { done <- r.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return reads, fmt.Errorf("reference server: %w", err)
		}
	case <-time.After(30 * time.Second):
		r.cmd.Process.Kill()
		return reads, fmt.Errorf("reference server still running 30s after its stdin closed")
	}
	return reads, nil
}

// refPass is what refRead measured.
type refPass struct {
	cold, warm           time.Duration // the first pass, and the second if asked
	serverCPU, readerCPU time.Duration // of the first pass
	reads                int64         // READs that reached the server
}

// refRead times the first 1 MiB-read pass of the file through a fresh
// reference mount of kind, and, if warm, a second one.
func (b *bench) refRead(kind string, size int64, warm bool, args ...string) (refPass, error) {
	var rp refPass
	r, err := b.startRef(kind, args...)
	if err != nil {
		return rp, err
	}
	p := filepath.Join(r.dir, "file")
	cpu := processCPU(r.cmd.Process.Pid)
	n, cold, readerCPU, err := readFileCPU(p)
	rp.cold, rp.readerCPU, rp.serverCPU = cold, readerCPU, processCPU(r.cmd.Process.Pid)-cpu
	if err == nil && warm && n == size {
		n, rp.warm, err = readFile(p)
	}
	reads, serr := r.stop()
	rp.reads = reads
	if err == nil {
		err = serr
	}
	if err == nil && n != size {
		err = fmt.Errorf("reference mount (%s): read %d bytes, want %d", kind, n, size)
	}
	return rp, err
}
