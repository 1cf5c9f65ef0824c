package main

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// contentKind is the flavour of generated file content. The mix decides how
// well a layer compresses, which is what lazy reads and index builds are
// sensitive to, so each kind aims at the ratio of the real files it mimics.
type contentKind int

const (
	kindText   contentKind = iota // source code, configs, docs: gzip ~3-4x
	kindBinary                    // ELF executables and libraries: gzip ~2x
	kindPyc                       // bytecode: strings and opcodes, gzip ~2.5x
	kindRandom                    // wheels, .gz, images: incompressible
)

// contentGen makes deterministic file content: the same seed gives the same
// bytes on every run and machine, so runs are comparable.
type contentGen struct {
	rng   *rand.Rand
	bytes *rand.ChaCha8 // fast bulk random bytes
	words []string
	zipf  *rand.Zipf // word popularity, as in real code
}

func newContentGen(seed uint64) *contentGen {
	var key [32]byte
	for i := range key {
		key[i] = byte(seed >> (8 * (i % 8)))
	}
	key[31] ^= 0x5a
	g := &contentGen{
		rng:   rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		bytes: rand.NewChaCha8(key),
	}
	g.words = makeVocabulary(g.rng, 3000)
	g.zipf = rand.NewZipf(g.rng, 1.3, 2, uint64(len(g.words)-1))
	return g
}

// pythonWords lead the vocabulary so that the most frequent words are the
// ones real Python code repeats most.
var pythonWords = []string{
	"self", "def", "return", "if", "None", "import", "from", "in", "for", "not",
	"is", "else", "True", "False", "class", "raise", "elif", "and", "or", "try",
	"except", "with", "as", "lambda", "yield", "assert", "pass", "len", "isinstance",
	"str", "int", "dict", "list", "args", "kwargs", "value", "name", "data", "result",
}

// makeVocabulary returns n identifiers: Python keywords first, then
// made-up names from syllables.
func makeVocabulary(rng *rand.Rand, n int) []string {
	syll := []string{"ar", "be", "co", "da", "el", "fo", "ge", "hi", "in", "jo", "ka", "lo", "ma", "ne",
		"or", "pa", "qu", "ra", "se", "ti", "un", "ve", "wa", "xi", "yo", "ze", "_", "get", "set", "arr", "idx"}
	words := append([]string(nil), pythonWords...)
	seen := map[string]bool{}
	for _, w := range words {
		seen[w] = true
	}
	for len(words) < n {
		k := 2 + rng.IntN(4)
		w := ""
		for range k {
			w += syll[rng.IntN(len(syll))]
		}
		if !seen[w] {
			seen[w] = true
			words = append(words, w)
		}
	}
	return words
}

func (g *contentGen) content(kind contentKind, n int) []byte {
	switch kind {
	case kindText:
		return g.text(n)
	case kindBinary:
		return g.binary(n)
	case kindPyc:
		return g.pyc(n)
	default:
		return g.random(n)
	}
}

// separators between words of generated source lines.
var separators = []string{" ", " ", " ", ", ", " = ", "(", ")", ".", ": ", " + ", "[", "]"}

// text is source-like: indented lines of Zipf-distributed words, with the
// odd number or hex string that real files carry, and lines repeated from
// a little earlier (as code repeats itself), which real text compresses on.
func (g *contentGen) text(n int) []byte {
	b := make([]byte, 0, n+256)
	var recent [32][2]int // start and end of recent lines
	lines := 0
	for len(b) < n {
		if lines > 8 && g.rng.IntN(100) < 30 {
			r := recent[g.rng.IntN(min(lines, len(recent)))]
			b = append(b, b[r[0]:r[1]]...)
			continue
		}
		start := len(b)
		for range g.rng.IntN(4) {
			b = append(b, "    "...)
		}
		words := 1 + g.rng.IntN(9)
		for i := range words {
			if i > 0 {
				b = append(b, separators[g.rng.IntN(len(separators))]...)
			}
			if g.rng.IntN(60) == 0 {
				b = fmt.Appendf(b, "%x", g.rng.Uint32())
				continue
			}
			b = append(b, g.words[g.zipf.Uint64()]...)
		}
		b = append(b, '\n')
		recent[lines%len(recent)] = [2]int{start, len(b)}
		lines++
	}
	return b[:n]
}

// binary is ELF-like: 4 KiB blocks of opcode-like bytes (16 distinct
// values), random data, string tables and near-empty tables.
func (g *contentGen) binary(n int) []byte {
	b := make([]byte, n)
	for off := 0; off < n; off += 4096 {
		blk := b[off:min(off+4096, n)]
		switch k := g.rng.IntN(100); {
		case k < 40:
			g.opcodes(blk)
		case k < 55:
			g.bytes.Read(blk)
		case k < 75:
			g.stringTable(blk)
		default: // relocation tables, padding: mostly zeros
			for i := 0; i < len(blk); i += 8 {
				blk[i] = byte(g.rng.IntN(16))
			}
		}
	}
	return b
}

// pyc is bytecode-like: interned names and constants between opcodes.
func (g *contentGen) pyc(n int) []byte {
	b := make([]byte, n)
	for off := 0; off < n; off += 1024 {
		blk := b[off:min(off+1024, n)]
		if g.rng.IntN(2) == 0 {
			g.opcodes(blk)
		} else {
			g.stringTable(blk)
		}
	}
	return b
}

func (g *contentGen) opcodes(blk []byte) {
	for i := 0; i < len(blk); i += 16 {
		v := g.rng.Uint64()
		for j := i; j < min(i+16, len(blk)); j++ {
			blk[j] = opcodeBytes[v&15]
			v >>= 4
		}
	}
}

var opcodeBytes = [16]byte{0x48, 0x89, 0x8b, 0xe8, 0x0f, 0x85, 0x84, 0xc3, 0x00, 0x01, 0xff, 0x24, 0x44, 0x74, 0x31, 0xc0}

func (g *contentGen) stringTable(blk []byte) {
	i := 0
	for i < len(blk) {
		i += copy(blk[i:], g.words[g.zipf.Uint64()])
		if i < len(blk) {
			blk[i] = 0
			i++
		}
	}
}

func (g *contentGen) random(n int) []byte {
	b := make([]byte, n)
	g.bytes.Read(b)
	return b
}

// logUniform picks a size between lo and hi with a log-uniform
// distribution: many small files, a few large ones, as in real images.
func (g *contentGen) logUniform(lo, hi int) int {
	if hi <= lo {
		return lo
	}
	l, h := math.Log(float64(max(lo, 1))), math.Log(float64(hi))
	return int(math.Exp(l + g.rng.Float64()*(h-l)))
}

// word is a vocabulary word for file names.
func (g *contentGen) word() string { return g.words[40+g.rng.IntN(len(g.words)-40)] }
