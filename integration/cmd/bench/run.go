package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// run executes a command, returning its wall time; stdout goes to out (nil:
// discarded), and stderr is included in the error when it fails.
func run(ctx context.Context, out io.Writer, name string, args ...string) (time.Duration, error) {
	wall, _, err := runCPU(ctx, out, name, args...)
	return wall, err
}

// runCPU is run that also returns the CPU time (user + system) the command
// used: on a machine shared with other work, CPU time says more about the
// cost of a computation than wall time does.
func runCPU(ctx context.Context, out io.Writer, name string, args ...string) (wall, cpu time.Duration, err error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout = out
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	err = cmd.Run()
	wall = time.Since(start)
	if cmd.ProcessState != nil {
		cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	if err != nil {
		return wall, cpu, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, lastLines(stderr.String(), 5))
	}
	return wall, cpu, nil
}

// selfCPU is the CPU time this process has used so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// mounted is a background imgfs mount server.
type mounted struct {
	dir     string
	logPath string
	pid     int
}

var serverPidRE = regexp.MustCompile(`server pid (\d+)`)

// imgfs runs the imgfs binary with the bench's global flags.
func (b *bench) imgfs(ctx context.Context, out io.Writer, cacheDir string, args ...string) (time.Duration, error) {
	full := append([]string{"--plain-http", "--cache-dir", cacheDir}, args...)
	return run(ctx, out, b.imgfsBin, full...)
}

// mount runs `imgfs mount --background` and returns once it has (the time
// measured is the command's: until the mount answers).
func (b *bench) mount(ctx context.Context, ref, cacheDir, name string, extra ...string) (*mounted, time.Duration, error) {
	dir := filepath.Join(b.work, "mnt", name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, 0, err
	}
	m := &mounted{dir: dir, logPath: filepath.Join(b.work, "logs", name+".log")}
	os.MkdirAll(filepath.Dir(m.logPath), 0o755)
	os.Remove(m.logPath)
	var out bytes.Buffer
	args := append([]string{"mount", "--background", "--log-file", m.logPath}, extra...)
	args = append(args, ref, dir)
	d, err := b.imgfs(ctx, &out, cacheDir, args...)
	if err != nil {
		return nil, d, err
	}
	match := serverPidRE.FindSubmatch(out.Bytes())
	if match == nil {
		b.unmountDir(dir)
		return nil, d, fmt.Errorf("mount %s: no server pid in %q", ref, out.String())
	}
	m.pid, _ = strconv.Atoi(string(match[1]))
	b.recordPid(m.pid)
	return m, d, nil
}

// recordPid lists a mount server in WORK/pids so that scripts/bench.sh can
// stop it if this program dies before unmounting.
func (b *bench) recordPid(pid int) {
	f, err := os.OpenFile(filepath.Join(b.work, "pids"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return
	}
	fmt.Fprintln(f, pid)
	f.Close()
}

// unmount unmounts and waits for the server to exit (it prints --stats on
// exit), then returns its log.
func (b *bench) unmount(m *mounted) (string, error) {
	if err := b.unmountDir(m.dir); err != nil {
		return "", err
	}
	deadline := time.Now().Add(30 * time.Second)
	for processAlive(m.pid) {
		if time.Now().After(deadline) {
			syscall.Kill(m.pid, syscall.SIGTERM)
			return "", fmt.Errorf("mount server %d still running 30s after unmount", m.pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
	data, err := os.ReadFile(m.logPath)
	return string(data), err
}

func (b *bench) unmountDir(dir string) error {
	if _, err := run(context.Background(), nil, b.imgfsBin, "unmount", dir); err != nil {
		if _, lerr := run(context.Background(), nil, b.imgfsBin, "unmount", "--lazy", dir); lerr != nil {
			return fmt.Errorf("unmount %s: %w", dir, err)
		}
	}
	return nil
}

// processAlive reports whether pid runs and is not a zombie. The servers
// are not our children (they are re-parented), so they get reaped by init.
func processAlive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// "pid (comm) S ...": the state follows the last ')'.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// memStatus returns VmRSS and VmHWM (peak RSS) of pid in bytes.
func memStatus(pid int) (rss, hwm int64, err error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = v << 10
		case "VmHWM:":
			hwm = v << 10
		}
	}
	return rss, hwm, nil
}

// fetchStats is the total line of `mount --stats`.
type fetchStats struct {
	requests int64
	bytes    int64
	text     string // the whole table, for the report
}

var statsTotalRE = regexp.MustCompile(`(?m)^total\s+(\d+)\s+([0-9.]+)\s*([KMGTPE]iB|B)\s*$`)

// parseStats reads the --stats table the server printed on exit.
func parseStats(log string) (fetchStats, error) {
	m := statsTotalRE.FindStringSubmatch(log)
	if m == nil {
		return fetchStats{}, fmt.Errorf("no --stats total line in the server log: %s", lastLines(log, 3))
	}
	req, _ := strconv.ParseInt(m[1], 10, 64)
	v, _ := strconv.ParseFloat(m[2], 64)
	mult := map[string]float64{"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}[m[3]]
	i := strings.Index(log, "LAYER")
	text := ""
	if i >= 0 {
		text = strings.TrimSpace(log[i:])
	}
	return fetchStats{requests: req, bytes: int64(v * mult), text: text}, nil
}

// median of durations (the lower middle for an even count).
func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[(len(s)-1)/2]
}

func spread(ds []time.Duration) string {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	parts := make([]string, len(s))
	for i, d := range s {
		parts[i] = secs(d)
	}
	return strings.Join(parts, ", ")
}

func secs(d time.Duration) string {
	if d < time.Second {
		return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}

// freshDir removes and recreates dir.
func freshDir(dir string) (string, error) {
	if err := os.RemoveAll(dir); err != nil {
		return "", err
	}
	return dir, os.MkdirAll(dir, 0o755)
}

// readFile reads a whole file with 1 MiB reads (like dd bs=1M) and returns
// the bytes read and the time taken.
func readFile(p string) (int64, time.Duration, error) {
	buf := make([]byte, 1<<20)
	start := time.Now()
	f, err := os.Open(p)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	var n int64
	for {
		k, err := f.Read(buf)
		n += int64(k)
		if err == io.EOF {
			return n, time.Since(start), nil
		}
		if err != nil {
			return n, time.Since(start), fmt.Errorf("read %s: %w", p, err)
		}
	}
}

func mbps(n int64, d time.Duration) float64 { return float64(n) / 1e6 / d.Seconds() }
