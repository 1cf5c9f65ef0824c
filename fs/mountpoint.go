package fs

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// MountEntry is a mount of /proc/self/mountinfo.
type MountEntry struct {
	Dir    string // the mount point
	Type   string // "fuse.imgfs", "ext4"...
	Source string // what the file system says it mounts (an image reference for imgfs)
}

// Mounts lists the mounts of /proc/self/mountinfo, in its order (a mount
// stacked on another comes after it).
func Mounts() ([]MountEntry, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	return parseMountinfo(string(data)), nil
}

// parseMountinfo reads mountinfo lines: the mount point is field 5, the
// type and source follow the " - " separator; \ooo escapes are undone.
func parseMountinfo(data string) []MountEntry {
	var out []MountEntry
	for _, line := range strings.Split(data, "\n") {
		fields := strings.Fields(line)
		i := slices.Index(fields, "-")
		if i < 5 || i+2 >= len(fields) {
			continue
		}
		out = append(out, MountEntry{Dir: unescapeMountinfo(fields[4]), Type: fields[i+1], Source: unescapeMountinfo(fields[i+2])})
	}
	return out
}

// MountedAt reports what is mounted at dir, from /proc/self/mountinfo: its
// file system type ("fuse.imgfs", "ext4"...) and whether anything is.
func MountedAt(dir string) (fstype string, mounted bool, err error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", false, err
	}
	mounts, err := Mounts()
	if err != nil {
		return "", false, err
	}
	for _, m := range mounts {
		if m.Dir == abs {
			fstype, mounted = m.Type, true // a later line (stacked mount) wins
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
