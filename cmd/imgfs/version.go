package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is set at build time:
//
//	go build -ldflags "-X main.version=v0.1.0" ./cmd/imgfs
var version = "dev"

func init() { registerCommand(newVersionCommand) }

func newVersionCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of imgfs",
		Long:  "Print the version of imgfs, the Go version it was built with, the platform, and the VCS revision when known.",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), versionLine())
			return err
		},
	}
}

func versionLine() string {
	line := fmt.Sprintf("imgfs %s (%s %s/%s", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	if rev := vcsRevision(); rev != "" {
		line += ", " + rev
	}
	return line + ")"
}

// vcsRevision is the commit the binary was built from, when go build
// recorded it.
func vcsRevision() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	var rev, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = "+dirty"
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev == "" {
		return ""
	}
	return "commit " + rev + modified
}
