package integration

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// MountPoints returns the mount points of /proc/self/mountinfo whose file
// system type starts with "fuse", unescaped (\040 is a space).
func MountPoints() (map[string]string, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	out := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 10 {
			continue
		}
		for i, f := range fields {
			if f == "-" && i+1 < len(fields) {
				out[unescapeMountField(fields[4])] = fields[i+1]
				break
			}
		}
	}
	return out, nil
}

// IsMounted reports whether dir is a mount point (of any type). When
// mountinfo cannot be read it answers true, so callers try to unmount.
func IsMounted(dir string) bool {
	mounts, err := MountPoints()
	if err != nil {
		return true
	}
	_, ok := mounts[dir]
	return ok
}

func unescapeMountField(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// ForceUnmount detaches dir however it can: fusermount3 -uz, then a lazy
// umount(2) (root only). It is the fallback when `imgfs unmount` failed.
func ForceUnmount(dir string) error {
	var errs []error
	if out, err := exec.Command("fusermount3", "-u", "-z", dir).CombinedOutput(); err != nil {
		errs = append(errs, fmt.Errorf("fusermount3 -uz: %v: %s", err, strings.TrimSpace(string(out))))
	}
	if !IsMounted(dir) {
		return nil
	}
	if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
		errs = append(errs, fmt.Errorf("umount -l: %w", err))
	}
	if !IsMounted(dir) {
		return nil
	}
	return fmt.Errorf("%s still mounted: %w", dir, errors.Join(errs...))
}

var serverPIDPattern = regexp.MustCompile(`server pid (\d+)`)

// ServerPID extracts N from the "server pid N" of `imgfs mount --background`.
func ServerPID(output string) (int, error) {
	m := serverPIDPattern.FindStringSubmatch(output)
	if m == nil {
		return 0, fmt.Errorf("no \"server pid N\" in %q", output)
	}
	return strconv.Atoi(m[1])
}

// ProcessAlive reports whether pid exists and is not a zombie.
func ProcessAlive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name, which may hold spaces.
	s := string(data)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z' && s[i+2] != 'X'
	}
	return true
}

// WaitProcessExit polls until pid is gone or the timeout passes.
func WaitProcessExit(pid int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		if !ProcessAlive(pid) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ProcessRSS is the resident set size of pid (VmRSS), in bytes.
func ProcessRSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			fields := strings.Fields(rest) // "12345 kB"
			if len(fields) != 2 || fields[1] != "kB" {
				return 0, fmt.Errorf("VmRSS line %q", sc.Text())
			}
			kb, err := strconv.ParseInt(fields[0], 10, 64)
			return kb << 10, err
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("pid %d: no VmRSS", pid)
}

// ProcessesMentioning lists the live processes whose command line has an
// argument equal to arg (a mount point, say).
func ProcessesMentioning(arg string) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			continue
		}
		for _, a := range strings.Split(string(data), "\x00") {
			if a == arg && ProcessAlive(pid) {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}
