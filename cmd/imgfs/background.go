package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
)

// readyFDEnv names the file descriptor on which a background mount server
// tells the command that started it that the mount is ready.
const readyFDEnv = "IMGFS_MOUNT_READY_FD"

// logPathEnv tells a background server where its log goes (for the state
// file 'imgfs mounts' reads).
const logPathEnv = "IMGFS_MOUNT_LOG_PATH"

// slowStartNotice is how long a background mount may take before the
// command says what it waits for.
const slowStartNotice = 3 * time.Second

// startInBackground runs this same command line again as a detached server
// and waits until it reports the mount ready, or exits: then its last log
// line is the reason.
func startInBackground(cmd *cobra.Command, a *app, dir, logFile string) error {
	what := cmd.Name() // mount or serve
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("background %s: %w", what, err)
	}
	logf, err := openServerLog(a, logFile, what)
	if err != nil {
		return err
	}
	defer logf.Close()
	ready, readyW, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("background %s: %w", what, err)
	}
	defer ready.Close()

	server := exec.Command(exe, os.Args[1:]...)
	server.Env = append(os.Environ(), readyFDEnv+"=3", logPathEnv+"="+logf.Name()) // ExtraFiles[0] is fd 3
	server.ExtraFiles = []*os.File{readyW}
	server.Stdout, server.Stderr = logf, logf
	// Its own session: the terminal's Ctrl-C and hangup are not for it.
	server.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := server.Start(); err != nil {
		readyW.Close()
		return fmt.Errorf("background %s: %w", what, err)
	}
	readyW.Close()

	// Indexing a large image can take a while: say what is being waited for.
	waiting := time.AfterFunc(slowStartNotice, func() {
		fmt.Fprintf(cmd.ErrOrStderr(), "imgfs: waiting for the %s server to be ready (log: %s)\n", what, logf.Name())
	})
	line, _ := bufio.NewReader(ready).ReadString('\n')
	waiting.Stop()
	if strings.TrimSpace(line) == "ok" {
		verb := "mounted"
		if what == "serve" {
			verb = "serving images"
		}
		fmt.Fprintf(cmd.OutOrStdout(), "%s at %s (server pid %d, log %s); unmount with: imgfs unmount %s\n",
			verb, dir, server.Process.Pid, logf.Name(), dir)
		return server.Process.Release()
	}
	server.Wait()
	err = fmt.Errorf("background %s failed: %s", what, lastLogLine(logf.Name()))
	if code := server.ProcessState.ExitCode(); code > 0 {
		return &exitError{err: err, code: code} // the server's classification
	}
	return err
}

func openServerLog(a *app, logFile, what string) (*os.File, error) {
	if logFile != "" {
		return os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	}
	cacheDir, err := a.cacheDir()
	if err != nil {
		return nil, err
	}
	logs := filepath.Join(cacheDir, "logs")
	if err := os.MkdirAll(logs, 0o700); err != nil {
		return nil, fmt.Errorf("background %s: %w", what, err)
	}
	return os.CreateTemp(logs, what+"-*.log")
}

// lastLogLine is the last non-empty line of the server's log: the one-line
// error it printed before exiting.
func lastLogLine(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "the mount server exited (no log: " + err.Error() + ")"
	}
	lines := bytes.Split(bytes.TrimSpace(data), []byte("\n"))
	last := strings.TrimPrefix(string(lines[len(lines)-1]), "imgfs: ")
	if last == "" {
		return "the mount server exited without a message; see " + path
	}
	return last + " (log: " + path + ")"
}

// readyFD is the ready pipe of a background server, if this is one.
func readyFD() (int, bool) {
	fd, err := strconv.Atoi(os.Getenv(readyFDEnv))
	return fd, err == nil && fd > 2
}

// keepReadyFDFromChildren stops programs the server runs (fusermount3) from
// inheriting the ready pipe: a child holding it would keep the starting
// command waiting after the server itself died.
func keepReadyFDFromChildren() {
	if fd, ok := readyFD(); ok {
		syscall.CloseOnExec(fd)
	}
}

// signalReady tells the command that started this background server that
// the mount answers. It does nothing in the foreground.
func signalReady() {
	fd, ok := readyFD()
	if !ok {
		return
	}
	os.Unsetenv(readyFDEnv)
	f := os.NewFile(uintptr(fd), "ready")
	io.WriteString(f, "ok\n")
	f.Close()
}

// logToFile sends the log to path (appended) when one is given, in the
// foreground too; a background server already logs to its file (its
// stdout and stderr). It returns the log's path ("" for stderr) and a
// function that closes it.
func (a *app) logToFile(path string) (string, func(), error) {
	if p := os.Getenv(logPathEnv); p != "" {
		return p, func() {}, nil // a background server: stderr is the log
	}
	if path == "" {
		return "", func() {}, nil
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return "", nil, fmt.Errorf("--log-file: %w", err)
	}
	a.logger = slog.New(slog.NewTextHandler(f, &slog.HandlerOptions{Level: a.logLevel}))
	abs, _ := filepath.Abs(path)
	return abs, func() { f.Close() }, nil
}
