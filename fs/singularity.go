package fs

import (
	"fmt"
	"log/slog"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// SynthOptions configure Synthesize.
type SynthOptions struct {
	// ModTime stamps every synthesized node. Zero: the image's creation time
	// (config "created") when known, else the zero time (shown as the epoch).
	ModTime time.Time
	// Provenance is where the image came from, for labels.json and
	// /.singularity.d/Singularity.
	Provenance    Provenance
	NoSingularity bool         // do not add /.singularity.d and the root links to it
	NoStubs       bool         // do not add the mount-point directories and /etc files
	Logger        *slog.Logger // nil: slog.Default()
}

// Synthesize adds, read-only and in memory, what 'apptainer build
// --sandbox' of the same image writes, so that the mount can be used as
// `apptainer exec|run|shell|test|inspect|instance start DIR` and Apptainer
// cannot tell it from a native sandbox. Nothing that the image has at a
// path is replaced or changed, and nothing is added under a path component
// that is not a directory in the image (a symlinked /var gets no /var/tmp).
// All synthesized nodes are owned by uid 0, gid 0.
//
// Unless the image has a /.singularity.d of its own (which is then kept
// untouched and nothing is added in it), the paths Apptainer 1.5 writes,
// with the same types, modes and link targets, and scripts of imgfs's own
// that behave as Apptainer's (see singularity_scripts.go):
//
//	/.singularity.d/                               0755 dir
//	/.singularity.d/actions/{exec,run,shell,start,test}
//	                                               0755 the action scripts: source env/*.sh,
//	        then run the command, the runscript (or /bin/sh), a shell, the
//	        startscript, the test (or print "No test found in container, ..."
//	        and succeed); --app (SINGULARITY_APPNAME) selects a SCIF app's
//	/.singularity.d/env/                           0755 dir
//	/.singularity.d/env/01-base.sh                 0755 a comment (nothing to set)
//	/.singularity.d/env/10-docker2singularity.sh   0755 the config's Env, one line per entry:
//	        export K="${K:-"v"}"  (the host's value wins if set)
//	        export PATH="v"       for PATH (the image's always wins)
//	        export K="${K:-}"     for an entry without "="
//	        v has \ " $ and backtick escaped; names that are not valid shell
//	        names are skipped
//	/.singularity.d/env/90-environment.sh          0755 a comment (no %environment)
//	/.singularity.d/env/94-appsbase.sh             0755 empty (no SCIF apps)
//	/.singularity.d/env/95-apps.sh                 0755 the environment of the --app SCIF app
//	/.singularity.d/env/99-base.sh                 0755 appends /.singularity.d/libs to
//	        LD_LIBRARY_PATH, sets PS1="Apptainer> " when PS1 is empty
//	/.singularity.d/env/99-runtimevars.sh          0755 the --env PATH, PREPEND_PATH, APPEND_PATH
//	/.singularity.d/libs/                          0755 dir (where --nv/--rocm bind libraries)
//	/.singularity.d/runscript                      0755 runs ENTRYPOINT+CMD, or ENTRYPOINT+arguments
//	        (arguments in place of CMD), evaluated by the shell as Apptainer does,
//	        or verbatim with SINGULARITY_NO_EVAL (--no-eval); has the line
//	        eval "set ${SINGULARITY_OCI_RUN}" by which Apptainer recognises it and
//	        interprets it itself (no /bin/sh needed)
//	/.singularity.d/startscript                    0755 a comment (instance start runs nothing)
//	/.singularity.d/labels.json                    0644 the config's Labels and the build
//	        labels derivable from the image (see labelsJSON)
//	/.singularity.d/Singularity                    0644 "bootstrap: B\nfrom: F\n\n" (when
//	        the provenance is known)
//	/singularity  -> .singularity.d/runscript      symlinks, where the image has nothing
//	/.exec /.run /.shell /.test -> .singularity.d/actions/{exec,run,shell,test}
//	/environment  -> .singularity.d/env/90-environment.sh
//
// Unless the image has something at that path (of any type):
//
//	/dev /proc /sys /home /root    0755 empty dirs (mount points)
//	/tmp /var/tmp                  1777 empty dirs (/var 0755 too when missing;
//	                               Apptainer makes them 0755, and binds over them)
//	/etc                           0755 dir
//	/etc/hosts /etc/resolv.conf    0644 empty files (bind-mount targets)
//
// The root directory of an image that does not declare it gets the
// synthesized nodes' time (the image's creation time) instead of the
// epoch.
//
// WorkingDir, User, ExposedPorts, Volumes and StopSignal are not
// translated: Apptainer ignores them for directory images too.
func Synthesize(t *Tree, cfg ocispec.Image, opts SynthOptions) error {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	mtime := opts.ModTime
	if mtime.IsZero() && cfg.Created != nil {
		mtime = *cfg.Created
	}
	s := synth{t: t, log: log, mtime: mtime}
	if !opts.NoSingularity {
		if _, ok := t.Lookup(".singularity.d"); ok {
			log.Debug("image ships /.singularity.d; kept as is")
		} else if err := s.singularityDir(cfg, opts.Provenance); err != nil {
			return fmt.Errorf("synthesize /.singularity.d: %w", err)
		}
	}
	if !opts.NoStubs {
		if err := s.stubs(); err != nil {
			return fmt.Errorf("synthesize mount points: %w", err)
		}
	}
	if !mtime.IsZero() {
		if err := t.setImpliedRootTime(mtime); err != nil {
			return err
		}
	}
	return nil
}

type synth struct {
	t     *Tree
	log   *slog.Logger
	mtime time.Time
}

func (s synth) attr(mode uint32) SynthAttr { return SynthAttr{Mode: mode, ModTime: s.mtime} }

// rootLinks are the symlinks Apptainer puts at the root of a sandbox.
var rootLinks = []struct{ path, target string }{
	{"singularity", ".singularity.d/runscript"},
	{".run", ".singularity.d/actions/run"},
	{".exec", ".singularity.d/actions/exec"},
	{".test", ".singularity.d/actions/test"},
	{".shell", ".singularity.d/actions/shell"},
	{"environment", ".singularity.d/env/90-environment.sh"},
}

func (s synth) singularityDir(cfg ocispec.Image, p Provenance) error {
	labels, err := labelsJSON(cfg.Config.Labels, cfg.Architecture, cfg.Created, p)
	if err != nil {
		return fmt.Errorf("labels.json: %w", err)
	}
	dirs := []string{".singularity.d", ".singularity.d/actions", ".singularity.d/env", ".singularity.d/libs"}
	for _, d := range dirs {
		if _, err := s.t.AddDir(d, s.attr(0o755)); err != nil {
			return err
		}
	}
	files := []struct {
		path    string
		mode    uint32
		content string
	}{
		{".singularity.d/actions/exec", 0o755, actionExec},
		{".singularity.d/actions/run", 0o755, actionRun},
		{".singularity.d/actions/shell", 0o755, actionShell},
		{".singularity.d/actions/start", 0o755, actionStart},
		{".singularity.d/actions/test", 0o755, actionTest},
		{".singularity.d/env/01-base.sh", 0o755, baseEnvScript},
		{".singularity.d/env/10-docker2singularity.sh", 0o755, dockerEnvScript(cfg.Config.Env)},
		{".singularity.d/env/90-environment.sh", 0o755, environmentScript},
		{".singularity.d/env/94-appsbase.sh", 0o755, appsBaseScript},
		{".singularity.d/env/95-apps.sh", 0o755, appsScript},
		{".singularity.d/env/99-base.sh", 0o755, base99Script},
		{".singularity.d/env/99-runtimevars.sh", 0o755, runtimeVarsScript},
		{".singularity.d/runscript", 0o755, ociRunscript(cfg.Config.Entrypoint, cfg.Config.Cmd)},
		{".singularity.d/startscript", 0o755, startScript},
		{".singularity.d/labels.json", 0o644, string(labels)},
	}
	if p.Bootstrap != "" {
		files = append(files, struct {
			path    string
			mode    uint32
			content string
		}{".singularity.d/Singularity", 0o644, string(definitionFile(p))})
	}
	for _, f := range files {
		if _, err := s.t.AddFile(f.path, []byte(f.content), s.attr(f.mode)); err != nil {
			return err
		}
	}
	for _, l := range rootLinks {
		if err := s.ensure(l.path, func() error { _, err := s.t.AddSymlink(l.path, l.target, s.attr(0o777)); return err }); err != nil {
			return err
		}
	}
	return nil
}

func (s synth) stubs() error {
	dirs := []struct {
		path string
		mode uint32
	}{
		{"dev", 0o755}, {"proc", 0o755}, {"sys", 0o755},
		{"tmp", 0o1777}, {"var", 0o755}, {"var/tmp", 0o1777},
		{"home", 0o755}, {"root", 0o755}, {"etc", 0o755},
	}
	for _, d := range dirs {
		if err := s.ensure(d.path, func() error { _, err := s.t.AddDir(d.path, s.attr(d.mode)); return err }); err != nil {
			return err
		}
	}
	for _, f := range []string{"etc/hosts", "etc/resolv.conf"} {
		if err := s.ensure(f, func() error { _, err := s.t.AddFile(f, []byte{}, s.attr(0o644)); return err }); err != nil {
			return err
		}
	}
	return nil
}

// ensure runs add when nothing is at p and p's parent is a directory.
func (s synth) ensure(p string, add func() error) error {
	if _, ok := s.t.Lookup(p); ok {
		return nil
	}
	dir, _ := splitPath(p)
	if parent, ok := s.t.Lookup(dir); !ok || !parent.IsDir() {
		s.log.Debug("not synthesizing: parent is not a directory in the image", "path", "/"+p)
		return nil
	}
	return add()
}
