// Command imgfs mounts OCI and Docker images lazily from registries.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	code := run(ctx, newApp(os.Stdout, os.Stderr, os.Getenv), os.Args[1:])
	stop()
	os.Exit(code)
}

// run executes one command line and returns the exit status. Errors are
// printed as one line, "imgfs: <error>"; usage errors add a hint to --help.
func run(ctx context.Context, a *app, args []string) int {
	root := newRootCommand(a)
	root.SetArgs(args)
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return 0
	}
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		// Ctrl-C, SIGTERM or a hangup while working (an index build): not
		// an error of the command's own.
		fmt.Fprintln(a.stderr, "imgfs: interrupted")
		return exitInterrupted
	}
	var reported *reportedError
	if !errors.As(err, &reported) {
		printError(a.stderr, err)
	}
	code := exitCodeFor(err)
	if code == exitUsage || !a.ready {
		if cmd == nil {
			cmd = root
		}
		fmt.Fprintf(a.stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
		code = exitUsage
	}
	return code
}

// printError writes err on one line: multi-line messages (cobra's "Did you
// mean this?" suggestions) are folded.
func printError(w io.Writer, err error) {
	fmt.Fprintf(w, "imgfs: %s\n", strings.Join(strings.Fields(err.Error()), " "))
}
