package main

import (
	"encoding/json"
	"errors"
	"fmt"
	iofs "io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/imgfs/imgfs/fs"
)

func init() { registerCommand(newMountsCommand) }

// MountInfo is one active mount, as 'imgfs mounts --json' prints it and as
// each mount server records itself in <cache-dir>/mounts/<pid>.json.
type MountInfo struct {
	Dir     string    `json:"dir"`
	Kind    string    `json:"kind"`   // mount, or serve
	Image   string    `json:"image"`  // the reference as given; "" for serve
	Digest  string    `json:"digest"` // the manifest's; "" for serve
	PID     int       `json:"pid"`    // the server; 0 when unknown (a mount of another cache dir or user)
	Started time.Time `json:"started"`
	Log     string    `json:"log"` // the server's log file, if it has one
}

func mountsDir(cacheDir string) string { return filepath.Join(cacheDir, "mounts") }

// recordMount writes the state file of this server's mount and returns the
// function that removes it. Failures only cost 'imgfs mounts' the pid.
func recordMount(cacheDir string, m MountInfo) (remove func()) {
	noop := func() {}
	if cacheDir == "" {
		return noop
	}
	dir := mountsDir(cacheDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return noop
	}
	data, err := json.Marshal(m)
	if err != nil {
		return noop
	}
	p := filepath.Join(dir, strconv.Itoa(m.PID)+".json")
	tmp := p + ".tmp"
	if os.WriteFile(tmp, data, 0o600) != nil || os.Rename(tmp, p) != nil {
		os.Remove(tmp)
		return noop
	}
	return func() { os.Remove(p) }
}

func newMountsCommand(a *app) *cobra.Command {
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "mounts",
		Short: "List active imgfs mounts, with their image and server pid",
		Long: `List the imgfs file systems mounted in this mount namespace (type
fuse.imgfs in /proc/self/mountinfo): the mount point, the image, the pid of
the server and since when it serves, from the state file each server keeps
in <cache-dir>/mounts while it runs. A mount made with another cache dir, or
by another user, is listed with the image the kernel shows and no pid.
State files of servers that are gone are removed.`,
		Example: `  imgfs mounts
  imgfs mounts --json | jq -r '.[].dir'`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cacheDir, _ := a.cacheDir()
			mounts, err := activeMounts(cacheDir)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if jsonOut {
				return printJSON(out, mounts)
			}
			tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "DIR\tKIND\tIMAGE\tPID\tSINCE")
			for _, m := range mounts {
				pid, since, img := "-", "-", m.Image
				if m.PID > 0 {
					pid = strconv.Itoa(m.PID)
				}
				if !m.Started.IsZero() {
					since = m.Started.Local().Format(time.DateTime)
				}
				if img == "" {
					img = "-"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", escapeName(m.Dir), m.Kind, escapeName(img), pid, since)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print a JSON array")
	return cmd
}

// activeMounts joins /proc/self/mountinfo's fuse.imgfs mounts with the
// state files under cacheDir, removing the state of servers that are gone.
func activeMounts(cacheDir string) ([]MountInfo, error) {
	kernel, err := imgfsMounts()
	if err != nil {
		return nil, err
	}
	states := map[string]MountInfo{}
	if cacheDir != "" {
		entries, err := os.ReadDir(mountsDir(cacheDir))
		if err != nil && !errors.Is(err, iofs.ErrNotExist) {
			return nil, err
		}
		for _, e := range entries {
			p := filepath.Join(mountsDir(cacheDir), e.Name())
			if !strings.HasSuffix(e.Name(), ".json") {
				continue
			}
			data, err := os.ReadFile(p)
			var m MountInfo
			if err != nil || json.Unmarshal(data, &m) != nil {
				continue
			}
			if !processAlive(m.PID) {
				os.Remove(p) // its server is gone
				continue
			}
			// A live server whose mount this namespace does not see (run
			// from another mount namespace) is left alone, and not listed.
			states[m.Dir] = m
		}
	}
	out := []MountInfo{}
	for _, dir := range slices.Sorted(func(yield func(string) bool) {
		for d := range kernel {
			if !yield(d) {
				return
			}
		}
	}) {
		m, ok := states[dir]
		if !ok {
			m = MountInfo{Dir: dir, Kind: "mount", Image: kernel[dir]}
			if m.Image == "imgfs-serve" {
				m.Kind, m.Image = "serve", ""
			}
		}
		out = append(out, m)
	}
	return out, nil
}

// imgfsMounts maps the mount points of type fuse.imgfs to their source
// (the image reference the server gave the kernel).
func imgfsMounts() (map[string]string, error) {
	mounts, err := fs.Mounts()
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, m := range mounts {
		if m.Type == "fuse.imgfs" {
			out[m.Dir] = m.Source
		}
	}
	return out, nil
}

// processAlive reports whether pid runs (EPERM: it does, as another user).
func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
