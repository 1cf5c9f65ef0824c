package fs

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// MountedAt reports what is mounted at dir, from /proc/self/mountinfo: its
// file system type ("fuse.imgfs", "ext4"...) and whether anything is.
func MountedAt(dir string) (fstype string, mounted bool, err error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", false, err
	}
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", false, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		fields := strings.Fields(line)
		// The mount point is field 5; the type follows the " - " separator.
		if len(fields) < 9 || unescapeMountinfo(fields[4]) != abs {
			continue
		}
		for i, f := range fields {
			if f == "-" && i+1 < len(fields) {
				fstype, mounted = fields[i+1], true // a later line (stacked mount) wins
				break
			}
		}
	}
	return fstype, mounted, nil
}

// unescapeMountinfo undoes the octal escapes (\040 for space) of mountinfo.
func unescapeMountinfo(s string) string {
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

// CheckMountPoint refuses a mount point that is missing, not a directory,
// already a mount point (a second server would stack on the first), or not
// empty (its files would be hidden) unless nonEmpty.
func CheckMountPoint(dir string, nonEmpty bool) error {
	info, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("mount point %s does not exist", dir)
	case err != nil:
		return fmt.Errorf("mount point: %w", err)
	case !info.IsDir():
		return fmt.Errorf("mount point %s is not a directory", dir)
	}
	if fstype, mounted, err := MountedAt(dir); err == nil && mounted {
		return fmt.Errorf("%s is already a mount point (%s): unmount it first, or mount elsewhere", dir, fstype)
	}
	if nonEmpty {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("mount point: %w", err)
	}
	defer d.Close()
	if names, err := d.Readdirnames(1); err != io.EOF {
		if err != nil {
			return fmt.Errorf("mount point: %w", err)
		}
		return fmt.Errorf("mount point %s is not empty (it has %s): its files would be hidden by the mount; use an empty directory, or --nonempty", dir, names[0])
	}
	return nil
}
