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
	ModTime       time.Time
	NoSingularity bool         // do not add /.singularity.d
	NoStubs       bool         // do not add the mount-point directories and /etc files
	Logger        *slog.Logger // nil: slog.Default()
}

// Synthesize adds, read-only and in memory, what Singularity/Apptainer
// expects of a container directory, so the mount can be used as
// `apptainer exec|run|shell|inspect DIR`. Nothing that the image has at a
// path is replaced or changed, and nothing is added under a path component
// that is not a directory in the image (a symlinked /var gets no /var/tmp).
// All synthesized nodes are owned by uid 0, gid 0.
//
// Unless the image has a /.singularity.d of its own (which is then kept
// untouched and nothing is added in it):
//
//	/.singularity.d/                               0755 dir
//	/.singularity.d/env/                           0755 dir
//	/.singularity.d/env/01-base.sh                 0755 "#!/bin/sh" and a comment
//	/.singularity.d/env/10-docker2singularity.sh   0755 the config's Env:
//	        export K="${K:-"v"}"  per variable (the host's value wins if set)
//	        export PATH="v"       for PATH (the image's always wins)
//	        export K="${K:-}"     for an entry without "="
//	        v has \ " $ and backtick escaped; names that are not valid shell
//	        names are skipped; for a repeated name the last value is kept
//	/.singularity.d/env/90-environment.sh          0755 "#!/bin/sh" and a comment
//	/.singularity.d/env/99-base.sh                 0755 appends /.singularity.d/libs to
//	        LD_LIBRARY_PATH, sets PS1="Apptainer> "
//	/.singularity.d/libs/                          0755 dir (where --nv/--rocm bind libraries)
//	/.singularity.d/runscript                      0755 Apptainer's OCI runscript:
//	        OCI_ENTRYPOINT='"e1" "e2"' and OCI_CMD='"c1"' (the config's Entrypoint and
//	        Cmd as double-quoted words, single-quoted; '' when absent), then the
//	        logic that runs ENTRYPOINT+CMD, or ENTRYPOINT+arguments, or the
//	        arguments in place of CMD, ending in the line
//	        eval "set ${SINGULARITY_OCI_RUN}" (Apptainer then interprets the
//	        script itself, no /bin/sh needed), with the SINGULARITY_NO_EVAL
//	        (--no-eval) variant that passes words verbatim
//	/.singularity.d/labels.json                    0644 the config's Labels as a JSON
//	        object of strings ("{}" when none)
//
// Unless the image has something at that path (of any type):
//
//	/dev /proc /sys /home /root    0755 empty dirs (mount points)
//	/tmp /var/tmp                  1777 empty dirs (/var 0755 too when missing)
//	/etc                           0755 dir
//	/etc/hosts /etc/resolv.conf    0644 empty files (bind-mount targets)
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
		} else if err := s.singularityDir(cfg.Config); err != nil {
			return fmt.Errorf("synthesize /.singularity.d: %w", err)
		}
	}
	if !opts.NoStubs {
		if err := s.stubs(); err != nil {
			return fmt.Errorf("synthesize mount points: %w", err)
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

func (s synth) singularityDir(cfg ocispec.ImageConfig) error {
	labels, err := labelsJSON(cfg.Labels)
	if err != nil {
		return fmt.Errorf("labels.json: %w", err)
	}
	dirs := []string{".singularity.d", ".singularity.d/env", ".singularity.d/libs"}
	for _, d := range dirs {
		if _, err := s.t.AddDir(d, s.attr(0o755)); err != nil {
			return err
		}
	}
	files := []struct {
		path    string
		mode    uint32
		content []byte
	}{
		{".singularity.d/env/01-base.sh", 0o755, []byte(baseEnvScript)},
		{".singularity.d/env/10-docker2singularity.sh", 0o755, []byte(dockerEnvScript(cfg.Env))},
		{".singularity.d/env/90-environment.sh", 0o755, []byte(environmentScript)},
		{".singularity.d/env/99-base.sh", 0o755, []byte(base99Script)},
		{".singularity.d/runscript", 0o755, []byte(ociRunscript(cfg.Entrypoint, cfg.Cmd))},
		{".singularity.d/labels.json", 0o644, labels},
	}
	for _, f := range files {
		if _, err := s.t.AddFile(f.path, f.content, s.attr(f.mode)); err != nil {
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
