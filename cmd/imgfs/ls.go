package main

import (
	"fmt"
	"io"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/imgfs/imgfs/fs"
	"github.com/imgfs/imgfs/image"
	"github.com/imgfs/imgfs/index"
)

func init() { registerCommand(newLsCommand) }

func newLsCommand(a *app) *cobra.Command {
	var long bool
	cmd := &cobra.Command{
		Use:   "ls IMAGE [PATH]",
		Short: "List a directory of an image without mounting it",
		Long: `List PATH (default /) in the image's merged root file system, as the mount
would show it: all layers applied, whiteouts removed. Only the layer indexes
are needed: a cached index means no layer data is downloaded, and building a
missing one fetches only what its format requires (see 'imgfs index').`,
		Example: `  imgfs ls alpine:3.20 /etc
  imgfs ls -l docker://python:3.12 /usr/local/bin`,
		Args: rangeArgs([]string{"IMAGE"}, "PATH"),
		RunE: func(cmd *cobra.Command, args []string) error {
			p := "/"
			if len(args) == 2 {
				p = args[1]
			}
			img, err := a.openImage(cmd, args[0], func(*image.Options) {})
			if err != nil {
				return err
			}
			defer img.Close()
			return listPath(cmd.OutOrStdout(), img.Tree(), p, long)
		},
	}
	cmd.Flags().BoolVarP(&long, "long", "l", false, "long format: mode, links, owner, size, time, name")
	return cmd
}

func listPath(out io.Writer, t *fs.Tree, p string, long bool) error {
	node, err := image.Lookup(t, p, true)
	if err != nil {
		return err
	}
	nodes := []*fs.Node{node}
	if node.IsDir() {
		nodes = node.Children()
	}
	if !long {
		for _, n := range nodes {
			fmt.Fprintln(out, escapeName(n.Name()))
		}
		return nil
	}
	for _, n := range nodes {
		name := escapeName(n.Name())
		if n.Type() == index.TypeSymlink {
			name += " -> " + escapeName(n.Linkname())
		}
		size := fmt.Sprint(n.Size())
		if n.Type() == index.TypeChar || n.Type() == index.TypeBlock {
			size = fmt.Sprintf("%d, %d", n.Devmajor(), n.Devminor())
		}
		fmt.Fprintf(out, "%s %3d %5d %5d %12s %s %s\n", modeString(n), n.Nlink(), n.UID(), n.GID(), size,
			n.ModTime().UTC().Format(time.DateTime), name)
	}
	return nil
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
