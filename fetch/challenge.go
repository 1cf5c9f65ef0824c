package fetch

import "strings"

// authChallenge is one challenge of a WWW-Authenticate header, e.g.
// Bearer realm="https://auth.example/token",service="registry",scope="repository:a/b:pull".
type authChallenge struct {
	Scheme string
	Params map[string]string // keys lower-cased
}

// parseChallenges parses WWW-Authenticate values (RFC 7235) well enough to
// log them: a scheme followed by comma-separated key=value or key="quoted"
// parameters; a new scheme starts where a token is not followed by '='.
// Garbage yields what could be read, never a panic.
func parseChallenges(values []string) []authChallenge {
	var out []authChallenge
	for _, v := range values {
		p := challengeParser{s: v}
		out = append(out, p.parse()...)
	}
	return out
}

type challengeParser struct {
	s string
	i int
}

func (p *challengeParser) parse() []authChallenge {
	var out []authChallenge
	var cur *authChallenge
	for {
		p.skip(" \t,")
		if p.i >= len(p.s) {
			return out
		}
		tok := p.token()
		if tok == "" { // a character no grammar allows here: skip it
			p.i++
			continue
		}
		p.skip(" \t")
		if p.i < len(p.s) && p.s[p.i] == '=' && cur != nil {
			p.i++
			p.skip(" \t")
			cur.Params[strings.ToLower(tok)] = p.value()
			continue
		}
		out = append(out, authChallenge{Scheme: tok, Params: map[string]string{}})
		cur = &out[len(out)-1]
		// token68 form (e.g. "Basic abc=="): keep it out of Params; it is not
		// a parameter and could be anything.
	}
}

func (p *challengeParser) skip(chars string) {
	for p.i < len(p.s) && strings.IndexByte(chars, p.s[p.i]) >= 0 {
		p.i++
	}
}

func (p *challengeParser) token() string {
	start := p.i
	for p.i < len(p.s) && !strings.ContainsRune(" \t,=\"", rune(p.s[p.i])) {
		p.i++
	}
	return p.s[start:p.i]
}

func (p *challengeParser) value() string {
	if p.i >= len(p.s) || p.s[p.i] != '"' {
		return p.token()
	}
	p.i++ // opening quote
	var b strings.Builder
	for p.i < len(p.s) {
		c := p.s[p.i]
		p.i++
		switch c {
		case '\\':
			if p.i < len(p.s) {
				b.WriteByte(p.s[p.i])
				p.i++
			}
		case '"':
			return b.String()
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
