package main

import (
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"text/template"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/imgfs/imgfs/fs"
	"github.com/imgfs/imgfs/image"
	"github.com/imgfs/imgfs/index"
)

func init() { registerCommand(newLsCommand) }

// lsFlags are ls's options.
type lsFlags struct {
	long      bool
	follow    bool // -L
	recursive bool // -R
	dirs      bool // -d
	jsonOut   bool
	format    string
}

func newLsCommand(a *app) *cobra.Command {
	var f lsFlags
	cmd := &cobra.Command{
		Use:   "ls IMAGE [PATH...]",
		Short: "List directories and files of an image without mounting it",
		Long: `List each PATH (default /) of the image's merged root file system, as the
mount would show it: all layers applied, whiteouts removed. Only the layer
indexes are needed: a cached index means no layer data is downloaded, and
building a missing one fetches only what its format requires (see 'imgfs
index').

As ls(1) does: a directory is listed by its entries, anything else by the
path as given; a symbolic link is shown as a link (with -l: "name ->
target"), except that a link to a directory given as PATH without -l or -d
is listed as that directory; -L follows every link and shows what it points
to. Several PATHs are listed one after the other, files first, each
directory under a "PATH:" header; -R lists subdirectories too.

--json prints one JSON array of every entry listed (path, name, type, mode,
perm, uid, gid, size, nlink, mtime, linkname, devmajor, devminor);
--format prints each entry with a Go template over the same fields
({{.Path}}, {{.Name}}, {{.Type}}, {{.Mode}}, {{.Size}}, {{.MTime}}...),
one line per entry.`,
		Example: `  imgfs ls alpine:3.20 /etc
  imgfs ls -l docker://python:3.12 /usr/local/bin/python3
  imgfs ls -lL python:3.12 /usr/local/bin/python3
  imgfs ls -R oci:./layout:v1 /etc/ssl
  imgfs ls --format '{{.Size}} {{.Path}}' debian:12 /etc/os-release /etc/debian_version
  imgfs ls --json alpine /bin`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageErrorf("%s: missing IMAGE", cmd.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.jsonOut && f.format != "" {
				return usageErrorf("--json and --format cannot be used together")
			}
			var tmpl *template.Template
			if f.format != "" {
				var err error
				if tmpl, err = parseFormat(f.format); err != nil {
					return err
				}
			}
			paths := args[1:]
			if len(paths) == 0 {
				paths = []string{"/"}
			}
			img, err := a.openImage(cmd, args[0], func(*image.Options) {})
			if err != nil {
				return err
			}
			defer img.Close()
			l := &lister{out: cmd.OutOrStdout(), errOut: cmd.ErrOrStderr(), tree: img.Tree(), flags: f, tmpl: tmpl}
			return l.run(paths)
		},
	}
	fl := cmd.Flags()
	fl.BoolVarP(&f.long, "long", "l", false, "long format: mode, links, owner, size, time, name (-> target)")
	fl.BoolVarP(&f.follow, "dereference", "L", false, "follow symbolic links: show what they point to")
	fl.BoolVarP(&f.recursive, "recursive", "R", false, "list subdirectories recursively")
	fl.BoolVarP(&f.dirs, "directory", "d", false, "list directories themselves, not their contents")
	fl.BoolVar(&f.jsonOut, "json", false, "print a JSON array of the entries")
	fl.StringVar(&f.format, "format", "", "print each entry with a Go template (see above)")
	return cmd
}

// LsEntry is one listed entry, as --json prints it and --format sees it.
type LsEntry struct {
	Path     string    `json:"path"`     // absolute path in the image (through the links followed)
	Name     string    `json:"name"`     // as listed: the entry's name, or the PATH as given
	Type     string    `json:"type"`     // file, dir, symlink, char, block, fifo
	Mode     string    `json:"mode"`     // as ls -l shows it, e.g. -rwsr-xr-x
	Perm     uint32    `json:"perm"`     // permission bits with setuid, setgid, sticky (07777)
	UID      uint32    `json:"uid"`      //
	GID      uint32    `json:"gid"`      //
	Size     int64     `json:"size"`     // bytes (0 for devices and directories)
	Nlink    uint32    `json:"nlink"`    //
	MTime    time.Time `json:"mtime"`    // to the nanosecond, UTC
	Linkname string    `json:"linkname"` // a symlink's target, "" otherwise
	Devmajor uint32    `json:"devmajor"` // device numbers, 0 otherwise
	Devminor uint32    `json:"devminor"`
}

var entryTypes = map[index.EntryType]string{
	index.TypeReg: "file", index.TypeDir: "dir", index.TypeSymlink: "symlink",
	index.TypeChar: "char", index.TypeBlock: "block", index.TypeFifo: "fifo",
}

func newLsEntry(n *fs.Node, name string) LsEntry {
	return LsEntry{
		Path: n.Path(), Name: name, Type: entryTypes[n.Type()], Mode: modeString(n), Perm: n.Perm(),
		UID: n.UID(), GID: n.GID(), Size: n.Size(), Nlink: n.Nlink(), MTime: n.ModTime().UTC(),
		Linkname: n.Linkname(), Devmajor: n.Devmajor(), Devminor: n.Devminor(),
	}
}

// lister lists the operands of one ls command.
type lister struct {
	out, errOut io.Writer
	tree        *fs.Tree
	flags       lsFlags
	tmpl        *template.Template
	all         []LsEntry // --json: everything listed
	printed     bool      // something was printed (a blank line goes between sections)
	failed      []error
}

// operand is one PATH argument resolved.
type operand struct {
	given string
	node  *fs.Node
}

func (l *lister) run(paths []string) error {
	var files, dirs []operand
	for _, p := range paths {
		n, err := image.Lookup(l.tree, p, l.flags.follow)
		if err == nil && n.Type() == index.TypeSymlink && !l.flags.long && !l.flags.dirs {
			// ls(1) lists a command-line link to a directory as the directory.
			if target, terr := image.Lookup(l.tree, p, true); terr == nil && target.IsDir() {
				n = target
			}
		}
		if err != nil {
			l.fail(err)
			continue
		}
		if n.IsDir() && !l.flags.dirs {
			dirs = append(dirs, operand{p, n})
		} else {
			files = append(files, operand{p, n})
		}
	}
	if len(files) > 0 {
		var entries []LsEntry
		for _, o := range files {
			entries = append(entries, newLsEntry(o.node, o.given))
		}
		l.section("", entries)
	}
	headers := len(paths) > 1 || l.flags.recursive
	for _, d := range dirs {
		l.listDir(d.given, d.node, headers)
	}
	if l.flags.jsonOut {
		if l.all == nil {
			l.all = []LsEntry{}
		}
		if err := printJSON(l.out, l.all); err != nil {
			return err
		}
	}
	if len(l.failed) == 0 {
		return nil
	}
	// Each failure was printed on its line; the exit code is the first's.
	return &reportedError{err: errors.Join(l.failed...), code: exitCodeFor(l.failed[0])}
}

// fail reports one path that cannot be listed, on its own line, and goes on.
func (l *lister) fail(err error) {
	printError(l.errOut, err)
	l.failed = append(l.failed, err)
}

func (l *lister) listDir(shown string, dir *fs.Node, header bool) {
	var entries []LsEntry
	for _, c := range dir.Children() {
		n := c
		if l.flags.follow && c.Type() == index.TypeSymlink {
			if target, err := image.Lookup(l.tree, c.Path(), true); err == nil {
				n = target
			}
		}
		e := newLsEntry(n, c.Name())
		e.Path = c.Path()
		entries = append(entries, e)
	}
	if header {
		l.section(shown+":", entries)
	} else {
		l.section("", entries)
	}
	if !l.flags.recursive {
		return
	}
	for _, c := range dir.Children() {
		if c.IsDir() { // never through links: no loops
			l.listDir(path.Join(shown, c.Name()), c, true)
		}
	}
}

// section prints a group of entries, under a header when one is given.
func (l *lister) section(header string, entries []LsEntry) {
	if l.flags.jsonOut {
		l.all = append(l.all, entries...)
		return
	}
	if l.tmpl != nil {
		for _, e := range entries {
			if err := executeFormat(l.out, l.tmpl, e); err != nil {
				l.fail(err)
				return
			}
		}
		return
	}
	if l.printed && (header != "" || len(entries) > 0) {
		fmt.Fprintln(l.out)
	}
	if header != "" {
		fmt.Fprintln(l.out, escapeName(header))
	}
	l.printed = true
	if !l.flags.long {
		for _, e := range entries {
			fmt.Fprintln(l.out, escapeName(e.Name))
		}
		return
	}
	for _, e := range entries {
		name := escapeName(e.Name)
		if e.Type == "symlink" {
			name += " -> " + escapeName(e.Linkname)
		}
		size := fmt.Sprint(e.Size)
		if e.Type == "char" || e.Type == "block" {
			size = fmt.Sprintf("%d, %d", e.Devmajor, e.Devminor)
		}
		fmt.Fprintf(l.out, "%s %3d %5d %5d %12s %s %s\n", e.Mode, e.Nlink, e.UID, e.GID, size,
			e.MTime.Format(time.DateTime), name)
	}
}

// modeString renders a node's type and permissions as ls -l does,
// including setuid/setgid (s, S) and sticky (t, T).
func modeString(n *fs.Node) string {
	typeChar := map[index.EntryType]byte{
		index.TypeDir: 'd', index.TypeSymlink: 'l', index.TypeChar: 'c',
		index.TypeBlock: 'b', index.TypeFifo: 'p',
	}[n.Type()]
	if typeChar == 0 {
		typeChar = '-'
	}
	perm := n.Perm()
	var b strings.Builder
	b.WriteByte(typeChar)
	const rwx = "rwx"
	for i := 0; i < 9; i++ {
		if perm&(1<<(8-i)) != 0 {
			b.WriteByte(rwx[i%3])
		} else {
			b.WriteByte('-')
		}
	}
	s := []byte(b.String())
	special := func(pos int, bit uint32, set, unset byte) {
		if perm&bit == 0 {
			return
		}
		if s[pos] == 'x' {
			s[pos] = set
		} else {
			s[pos] = unset
		}
	}
	special(3, 04000, 's', 'S')
	special(6, 02000, 's', 'S')
	special(9, 01000, 't', 'T')
	return string(s)
}

// escapeName shows a name from an image safely on a terminal, as ls -b
// does: names with control characters, invalid UTF-8 or backslashes get C
// escapes (\n, \t, \\, \ooo), so that no name can move the cursor, change
// colours or fake another line. Other names are shown as they are.
func escapeName(name string) string {
	plain := utf8.ValidString(name)
	for _, r := range name {
		if !plain || r == '\\' || !unicode.IsPrint(r) && r != ' ' {
			plain = false
			break
		}
	}
	if plain {
		return name
	}
	var b strings.Builder
	for i := 0; i < len(name); {
		r, size := utf8.DecodeRuneInString(name[i:])
		switch {
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == utf8.RuneError && size <= 1, !unicode.IsPrint(r) && r != ' ':
			for _, c := range []byte(name[i : i+size]) {
				fmt.Fprintf(&b, "\\%03o", c)
			}
		default:
			b.WriteString(name[i : i+size])
		}
		i += size
	}
	return b.String()
}
