package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/imgfs/imgfs/fetch"
	"github.com/imgfs/imgfs/image"
	"github.com/imgfs/imgfs/index/cache"
	"github.com/imgfs/imgfs/manifest"
)

// How to add a command: in its own file, write a constructor
// func newXxxCommand(a *app) *cobra.Command and register it with
//
//	func init() { registerCommand(newXxxCommand) }
//
// Use a.logger, a.imageOptions(cmd), a.cacheDir() and a.flags, call the
// image library, write to cmd.OutOrStdout(); validate positional arguments with
// exactArgs/rangeArgs so mistakes print the usage hint. Do not set
// PersistentPreRun(E) on a subcommand: it would replace the root's, which
// applies the IMGFS_* environment and builds the logger.

// commandConstructors are the subcommands, registered by init functions so
// that adding a command never edits this file.
var commandConstructors []func(*app) *cobra.Command

func registerCommand(newCommand func(*app) *cobra.Command) {
	commandConstructors = append(commandConstructors, newCommand)
}

// envPrefix prefixes the environment variable of every global flag:
// --cache-dir is IMGFS_CACHE_DIR.
const envPrefix = "IMGFS_"

// envAnnotation marks a command's own flag as also read from IMGFS_<FLAG>
// (global flags always are); see withEnv.
const envAnnotation = "imgfs-env"

// withEnv makes the named flags of fs read their IMGFS_<FLAG> variable too,
// and says so in their usage.
func withEnv(fs *pflag.FlagSet, names ...string) {
	for _, n := range names {
		f := fs.Lookup(n)
		if f == nil {
			panic("withEnv: no flag " + n)
		}
		fs.SetAnnotation(n, envAnnotation, []string{"true"})
		f.Usage += " [" + envName(n) + "]"
	}
}

// app is the state shared by the commands of one invocation.
type app struct {
	stdout, stderr io.Writer
	getenv         func(string) string

	flags    globalFlags
	cluster  clusterFlags
	logger   *slog.Logger // set once the flags are parsed
	logLevel slog.Level   // the logger's level

	// ready is set once flags, environment and logger are set up: errors
	// before that are usage errors.
	ready bool
}

// globalFlags are the persistent flags every command shares.
type globalFlags struct {
	platform       string
	plainHTTP      bool
	insecure       bool
	cacheDir       string
	cacheSize      string
	cacheSizeBytes int64 // parsed cacheSize
	verbose        bool
	debug          bool
}

func newApp(stdout, stderr io.Writer, getenv func(string) string) *app {
	return &app{stdout: stdout, stderr: stderr, getenv: getenv}
}

func newRootCommand(a *app) *cobra.Command {
	root := &cobra.Command{
		Use:   "imgfs",
		Short: "Mount OCI and Docker images lazily, straight from a registry",
		Long: `imgfs resolves an image reference in a registry (Docker Hub, GHCR, Quay, a
local registry...) and serves its merged layers as a read-only file system,
fetching only the bytes that are read. The mount works as a sandbox directory
for singularity/apptainer exec, run and shell.

References are [docker://][host[:port]/]path[:tag][@digest]; Docker Hub is the
default registry (ubuntu means index.docker.io/library/ubuntu:latest). Local
images use skopeo's transport names and are read in place: oci:DIR[:TAG] (an
OCI layout), oci-archive:FILE[:TAG], docker-archive:FILE[:NAME:TAG].
'imgfs serve DIR' serves any image by path (DIR/<registry>/<repo>:<tag>).

Every global flag can also be set in the environment as IMGFS_<FLAG>, e.g.
IMGFS_PLATFORM=linux/arm64 or IMGFS_PLAIN_HTTP=1; a flag on the command line
wins.

Environment read besides IMGFS_<FLAG>:
  APPTAINER_DOCKER_OS, APPTAINER_DOCKER_ARCHITECTURE, then
  SINGULARITY_DOCKER_OS, SINGULARITY_DOCKER_ARCHITECTURE
      the platform when neither --platform nor IMGFS_PLATFORM is set (else
      the host's); either part may be set alone
  IMGFS_USERNAME/IMGFS_PASSWORD, APPTAINER_DOCKER_USERNAME/PASSWORD,
  SINGULARITY_DOCKER_USERNAME/PASSWORD
      credentials for every registry (the first complete pair wins)
  REGISTRY_AUTH_FILE, DOCKER_CONFIG, XDG_RUNTIME_DIR
      credential files: podman's auth.json, docker's config.json (with
      credential helpers)
  XDG_CACHE_HOME, HOME     the default --cache-dir
  HTTPS_PROXY, HTTP_PROXY, NO_PROXY   proxies for registry and storage
      traffic (Go's rules: NO_PROXY lists hosts and domains; requests to
      localhost and loopback addresses never use a proxy)
  IMGFS_REGISTRIES_CONF   as --registries-conf`,
		Example: `  imgfs mount --background docker://python:3.12 ~/py && apptainer exec ~/py python3 -V
  imgfs serve --background /images
  imgfs inspect ubuntu:22.04
  imgfs inspect --platform linux/arm64 docker://alpine:3.20
  imgfs --plain-http inspect 127.0.0.1:5000/tools/app:dev --json
  IMGFS_PLATFORM=linux/arm/v7 imgfs -v inspect busybox`,
		Version:           versionLine(),
		SilenceErrors:     true,
		SilenceUsage:      true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error { return a.setup(cmd) },
		Args:              noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cmd.Help()
		},
	}
	root.SetVersionTemplate("{{.Version}}\n") // the same line as 'imgfs version'
	root.SetHelpTemplate(root.HelpTemplate() + "\n" + exitCodesHelp + "\n")

	pf := root.PersistentFlags()
	pf.StringVar(&a.flags.platform, "platform", "", "platform to pick from a multi-platform image, os/arch[/variant] (default: the host)")
	pf.BoolVar(&a.flags.plainHTTP, "plain-http", false, "talk plain HTTP to the registry (local registries)")
	pf.BoolVar(&a.flags.insecure, "insecure", false, "skip TLS certificate verification")
	pf.StringVar(&a.flags.cacheDir, "cache-dir", defaultCacheDir(a.getenv), "directory of the index and data cache")
	pf.StringVar(&a.flags.cacheSize, "cache-size", sizeString(cache.DefaultDiskBytes), "maximum size of the on-disk cache of decoded data (e.g. 512MiB, 10GiB, 2G)")
	pf.BoolVarP(&a.flags.verbose, "verbose", "v", false, "log registry calls and decisions (level Info)")
	pf.BoolVar(&a.flags.debug, "debug", false, "log everything (level Debug)")
	addClusterFlags(pf, &a.cluster)
	pf.VisitAll(func(f *pflag.Flag) {
		f.Usage += " [" + envName(f.Name) + "]"
	})

	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &usageError{err: err}
	})
	for _, newCommand := range commandConstructors {
		root.AddCommand(newCommand(a))
	}
	return root
}

// setup applies the IMGFS_* environment to global flags not given on the
// command line, checks them and builds the logger.
func (a *app) setup(cmd *cobra.Command) error {
	var envErr error
	applyEnv := func(f *pflag.Flag) {
		if envErr != nil || f.Changed {
			return
		}
		name := envName(f.Name)
		v, ok := lookupEnv(a.getenv, name)
		if !ok {
			return
		}
		if f.Value.Type() == "bool" {
			b, ok := parseBool(v)
			if !ok {
				envErr = usageErrorf("%s=%q: want true or false (1/0, yes/no, on/off)", name, v)
				return
			}
			v = strconv.FormatBool(b)
		}
		// Value.Set leaves Changed false: the value is known to come from
		// the environment (see resolveOptions).
		if err := f.Value.Set(v); err != nil {
			envErr = usageErrorf("%s=%q: %w", name, v, err)
		}
	}
	cmd.Root().PersistentFlags().VisitAll(applyEnv)
	cmd.LocalFlags().VisitAll(func(f *pflag.Flag) {
		if _, ok := f.Annotations[envAnnotation]; ok {
			applyEnv(f)
		}
	})
	if envErr != nil {
		return envErr
	}
	n, err := sizeFlag("cache-size", a.flags.cacheSize)
	if err != nil {
		return err
	}
	a.flags.cacheSizeBytes = n
	if a.flags.platform != "" {
		if _, err := manifest.ParsePlatform(a.flags.platform); err != nil {
			return &usageError{err: err}
		}
	}

	level := slog.LevelWarn
	switch {
	case a.flags.debug:
		level = slog.LevelDebug
	case a.flags.verbose:
		level = slog.LevelInfo
	}
	a.logLevel = level
	a.logger = slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: level}))
	a.ready = true
	return nil
}

func parseBool(s string) (value, ok bool) {
	switch strings.ToLower(s) {
	case "1", "t", "true", "y", "yes", "on":
		return true, true
	case "0", "f", "false", "n", "no", "off":
		return false, true
	}
	return false, false
}

func envName(flag string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

func lookupEnv(getenv func(string) string, name string) (string, bool) {
	v := strings.TrimSpace(getenv(name))
	return v, v != ""
}

// defaultCacheDir is $XDG_CACHE_HOME/imgfs, else ~/.cache/imgfs; "" when
// neither is known (commands that need a cache then ask for --cache-dir).
func defaultCacheDir(getenv func(string) string) string {
	if d := getenv("XDG_CACHE_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "imgfs")
	}
	if home := getenv("HOME"); home != "" {
		return filepath.Join(home, ".cache", "imgfs")
	}
	return ""
}

// cacheDir is the cache directory to use, or an error saying how to set one.
func (a *app) cacheDir() (string, error) {
	if a.flags.cacheDir == "" {
		return "", errors.New("no cache directory: set --cache-dir or IMGFS_CACHE_DIR (HOME and XDG_CACHE_HOME are unset)")
	}
	return a.flags.cacheDir, nil
}

// imageOptions are the image library options the global flags and the
// environment select: registry access, platform, cache dir and logger.
// Commands add what they need (synthesis, caches, progress).
func (a *app) imageOptions(cmd *cobra.Command) (image.Options, error) {
	from := "--platform"
	if f := cmd.Flags().Lookup("platform"); f != nil && !f.Changed {
		from = envName("platform")
	}
	want, wantFrom, err := manifest.WantedPlatform(a.flags.platform, from, a.getenv, nil)
	if err != nil {
		return image.Options{}, &usageError{err: err}
	}
	cacheDir, err := a.cacheDir()
	if err != nil {
		return image.Options{}, err
	}
	opts := image.Options{
		Platform:     want,
		PlatformFrom: wantFrom,
		Registry: fetch.Options{
			PlainHTTP: a.flags.plainHTTP,
			Insecure:  a.flags.insecure,
			UserAgent: "imgfs/" + version,
			Logger:    a.logger,
		},
		CacheDir: cacheDir,
		Logger:   a.logger,
	}
	return opts, a.applyCluster(&opts)
}

// usageError is a mistake in how imgfs was called; it is printed with a
// hint to the command's help.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usageErrorf(format string, args ...any) error {
	return &usageError{err: fmt.Errorf(format, args...)}
}

// exactArgs is cobra.ExactArgs with a message that names what is missing.
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		switch {
		case len(args) < len(names):
			return usageErrorf("%s: missing %s", cmd.CommandPath(), strings.Join(names[len(args):], " "))
		case len(args) > len(names):
			return usageErrorf("%s: unexpected argument %q", cmd.CommandPath(), args[len(names)])
		}
		return nil
	}
}

// rangeArgs accepts the required names and up to len(optional) more.
func rangeArgs(required []string, optional ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		switch {
		case len(args) < len(required):
			return usageErrorf("%s: missing %s", cmd.CommandPath(), strings.Join(required[len(args):], " "))
		case len(args) > len(required)+len(optional):
			return usageErrorf("%s: unexpected argument %q", cmd.CommandPath(), args[len(required)+len(optional)])
		}
		return nil
	}
}

func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		if cmd.HasSubCommands() {
			if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
				return usageErrorf("unknown command %q for %q; did you mean %s?", args[0], cmd.CommandPath(), strings.Join(s, " or "))
			}
			return usageErrorf("unknown command %q for %q", args[0], cmd.CommandPath())
		}
		return usageErrorf("%s: unexpected argument %q", cmd.CommandPath(), args[0])
	}
	return nil
}

// sizeString renders n as parseSize reads it back, in the largest binary
// unit that divides it: flag defaults show as 64MiB, not 67108864.
func sizeString(n int64) string {
	units := []struct {
		name string
		size int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}}
	for _, u := range units {
		if n >= u.size && n%u.size == 0 {
			return fmt.Sprintf("%d%s", n/u.size, u.name)
		}
	}
	return strconv.FormatInt(n, 10)
}

// printJSON writes v as indented JSON, the form of every --json output.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// sizeFlag parses the value of the size flag --name, or says which flag
// is wrong (a usage error).
func sizeFlag(name, value string) (int64, error) {
	n, err := parseSize(value)
	if err != nil {
		return 0, usageErrorf("invalid --%s %q: %w", name, value, err)
	}
	return n, nil
}

// parseSize parses a byte size: a number with an optional unit. KiB, MiB,
// GiB, TiB and the short K, M, G, T are powers of 1024; KB, MB, GB, TB are
// powers of 1000; B or no unit is bytes. Case and a space before the unit
// do not matter.
func parseSize(s string) (int64, error) {
	str := strings.TrimSpace(s)
	i := 0
	for i < len(str) && (str[i] >= '0' && str[i] <= '9' || str[i] == '.') {
		i++
	}
	number, unit := str[:i], strings.ToLower(strings.TrimSpace(str[i:]))
	if number == "" {
		return 0, errors.New("want a number with an optional unit, e.g. 512MiB or 10GiB")
	}
	multipliers := map[string]float64{
		"": 1, "b": 1,
		"k": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mib": 1 << 20,
		"g": 1 << 30, "gib": 1 << 30, "t": 1 << 40, "tib": 1 << 40,
		"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
	}
	mult, ok := multipliers[unit]
	if !ok {
		return 0, fmt.Errorf("unknown unit %q (use B, KiB, MiB, GiB, TiB, or KB, MB, GB, TB)", str[i:])
	}
	f, err := strconv.ParseFloat(number, 64)
	if err != nil {
		return 0, fmt.Errorf("bad number %q", number)
	}
	n := f * mult
	if n >= 1<<63 {
		return 0, errors.New("too large")
	}
	return int64(n), nil
}

// openImage opens reference with the options the flags select, adjusted
// by the command, reporting index builds on stderr.
func (a *app) openImage(cmd *cobra.Command, reference string, adjust func(*image.Options)) (*image.Image, error) {
	opts, err := a.imageOptions(cmd)
	if err != nil {
		return nil, err
	}
	progress := newProgress(cmd.ErrOrStderr())
	opts.Progress = progress
	adjust(&opts)
	img, err := image.Open(cmd.Context(), reference, opts)
	progress.wait()
	return img, err
}
