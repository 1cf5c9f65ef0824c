package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/imgfs/imgfs/fs"
)

func init() { registerCommand(newUnmountCommand) }

func newUnmountCommand(a *app) *cobra.Command {
	var lazy bool
	cmd := &cobra.Command{
		Use:     "unmount DIR",
		Aliases: []string{"umount"},
		Short:   "Unmount an image mounted by imgfs",
		Long: `Unmount DIR: with umount(2) as root, else with fusermount3 -u. The mount
server then exits (printing --stats if it was asked for). A busy mount (a
process has a file open or its working directory inside) is left mounted
and the error says so; --lazy detaches it now and lets it go once unused.`,
		Args: exactArgs("DIR"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return unmount(args[0], lazy)
		},
	}
	cmd.Flags().BoolVar(&lazy, "lazy", false, "detach now even if busy; the mount goes away once no longer used")
	return cmd
}

func unmount(dir string, lazy bool) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if !isFuseMount(abs) {
		return fmt.Errorf("%s is not a FUSE mount", abs)
	}
	if os.Geteuid() == 0 {
		flags := 0
		if lazy {
			flags = syscall.MNT_DETACH
		}
		err := syscall.Unmount(abs, flags)
		if errors.Is(err, syscall.EBUSY) {
			return busyError(abs)
		}
		if err != nil {
			return fmt.Errorf("unmount %s: %w", abs, err)
		}
		return nil
	}
	args := []string{"-u", abs}
	if lazy {
		args = []string{"-u", "-z", abs}
	}
	out, err := exec.Command("fusermount3", args...).CombinedOutput()
	if err != nil {
		if bytes.Contains(out, []byte("busy")) {
			return busyError(abs)
		}
		return fmt.Errorf("fusermount3 -u %s: %s", abs, strings.TrimSpace(string(out)))
	}
	return nil
}

func busyError(dir string) error {
	return fmt.Errorf("%s is busy: a process has a file open or its working directory in it (see: fuser -vm %s); close it, or use --lazy", dir, dir)
}

// isFuseMount reports whether a FUSE file system is mounted at dir; when
// that cannot be told it answers yes and lets the unmount itself answer.
func isFuseMount(dir string) bool {
	fstype, mounted, err := fs.MountedAt(dir)
	return err != nil || mounted && strings.HasPrefix(fstype, "fuse")
}
