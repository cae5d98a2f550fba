package hint

import "unicode/utf8"

// This file is a small parser for Structured Field Values (RFC 9651), just
// enough for the RateLimit fields: Lists and Dictionaries of Items and Inner
// Lists, with every bare item type recognised so that valid fields parse.
// Parsed values are substrings of the field value, so parsing allocates
// nothing, and every index is checked, so no input panics.

// sfKind is the type of a bare item (RFC 9651 §3.3).
type sfKind uint8

const (
	sfNone sfKind = iota
	sfInteger
	sfDecimal
	sfString
	sfToken
	sfBytes
	sfBoolean
	sfDate
	sfDisplayString
	sfInnerList // not an item: the member is an Inner List, which heed never needs
)

// sfItem is a parsed bare item.
type sfItem struct {
	// str is a Token's text, a String's content between the quotes (escapes
	// still in place, undone by text) or a Byte Sequence's base64.
	str string
	// num is an Integer, a Decimal in thousandths (RFC 9651 Decimals have at
	// most three fractional digits), a Boolean as 0 or 1, or a Date in Unix
	// seconds.
	num  int64
	kind sfKind
	esc  bool // str is a String holding backslash escapes
}

// integer returns the item's value if it is an Integer.
func (v sfItem) integer() (int64, bool) {
	if v.kind != sfInteger {
		return 0, false
	}
	return v.num, true
}

// text returns the characters of a String or Token. It allocates only for a
// String with escapes, which real servers do not send in names.
func (v sfItem) text() string {
	if !v.esc {
		return v.str
	}
	b := make([]byte, 0, len(v.str))
	for i := 0; i < len(v.str); i++ {
		if v.str[i] == '\\' && i+1 < len(v.str) {
			i++
		}
		b = append(b, v.str[i])
	}
	return string(b)
}

// sameText reports whether two Strings or Tokens carry the same characters.
func sameText(a, b sfItem) bool {
	if !a.esc && !b.esc {
		return a.str == b.str
	}
	return a.text() == b.text()
}

// sfMember is one member of a List or Dictionary.
type sfMember struct {
	key    string // Dictionary key; "" in a List
	val    sfItem // kind sfInnerList for an Inner List
	params string // the member's parameters, validated, from the first ';'
}

// param returns the member's parameter named key. When the key repeats, the
// last one wins, as RFC 9651 §4.2.3.2 requires.
func (m *sfMember) param(key string) (v sfItem, ok bool) {
	p := sfParser{s: m.params}
	for p.peek() == ';' {
		p.i++
		p.skipSP()
		k, kok := p.key()
		if !kok {
			return sfItem{}, false // unreachable: params were validated
		}
		x := sfItem{kind: sfBoolean, num: 1} // a bare key means true
		if p.peek() == '=' {
			p.i++
			if !p.bareItem(&x) {
				return sfItem{}, false
			}
		}
		if k == key {
			v, ok = x, true
		}
	}
	return v, ok
}

// intParam returns the member's parameter named key if it is an Integer.
func (m *sfMember) intParam(key string) (int64, bool) {
	v, ok := m.param(key)
	if !ok {
		return 0, false
	}
	return v.integer()
}

// sfScan parses lines, the field lines of one field, as a single List (or a
// Dictionary if dict) and calls fn with each member in order.
//
// Parsing line by line gives what RFC 9651 §4.2 asks (joining the lines
// with commas) without the join's allocation, except at two edges no real
// server reaches: an empty line is tolerated, and a String split across
// lines is rejected rather than rejoined. Any
// syntax error makes the whole field invalid, as §4.2 requires: sfScan then
// returns false, possibly after some calls to fn, and the caller must
// discard what fn saw.
func sfScan(lines []string, dict bool, fn func(sfMember)) bool {
	for _, line := range lines {
		p := sfParser{s: trimOWS(line)}
		for !p.eof() {
			var m sfMember
			if !p.member(&m, dict) {
				return false
			}
			fn(m)
			p.skipOWS()
			if p.eof() {
				break
			}
			if p.s[p.i] != ',' {
				return false
			}
			p.i++
			p.skipOWS()
			if p.eof() {
				return false // trailing comma
			}
		}
	}
	return true
}

// sfParser holds a position in a field value. Each method either consumes
// a well-formed construct and reports true, or reports false; callers give
// up on false, so the position after a failure does not matter.
type sfParser struct {
	s string
	i int
}

func (p *sfParser) eof() bool { return p.i >= len(p.s) }

// peek returns the next byte, or 0 at the end; 0 is never valid in a field.
func (p *sfParser) peek() byte {
	if p.i < len(p.s) {
		return p.s[p.i]
	}
	return 0
}

func (p *sfParser) skipSP() {
	for p.i < len(p.s) && p.s[p.i] == ' ' {
		p.i++
	}
}

func (p *sfParser) skipOWS() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
}

// member parses a List member, or a Dictionary member if dict.
func (p *sfParser) member(m *sfMember, dict bool) bool {
	if dict {
		k, ok := p.key()
		if !ok {
			return false
		}
		m.key = k
		if p.peek() != '=' {
			m.val = sfItem{kind: sfBoolean, num: 1} // a bare key means true
			m.params, ok = p.params()
			return ok
		}
		p.i++
	}
	if p.peek() == '(' {
		m.val.kind = sfInnerList
		if !p.innerList() {
			return false
		}
	} else if !p.bareItem(&m.val) {
		return false
	}
	var ok bool
	m.params, ok = p.params()
	return ok
}

// innerList skips an Inner List: heed has no use for one, but a field
// holding one must still parse.
func (p *sfParser) innerList() bool {
	p.i++ // '('
	for {
		p.skipSP()
		if p.eof() {
			return false
		}
		if p.s[p.i] == ')' {
			p.i++
			return true
		}
		var v sfItem
		if !p.bareItem(&v) {
			return false
		}
		if _, ok := p.params(); !ok {
			return false
		}
		if c := p.peek(); c != ' ' && c != ')' {
			return false
		}
	}
}

// params parses parameters and returns their text for sfMember.param.
func (p *sfParser) params() (string, bool) {
	start := p.i
	for p.peek() == ';' {
		p.i++
		p.skipSP()
		if _, ok := p.key(); !ok {
			return "", false
		}
		if p.peek() == '=' {
			p.i++
			var v sfItem
			if !p.bareItem(&v) {
				return "", false
			}
		}
	}
	return p.s[start:p.i], true
}

// key parses a Dictionary or parameter key.
func (p *sfParser) key() (string, bool) {
	start := p.i
	if c := p.peek(); !isLower(c) && c != '*' {
		return "", false
	}
	p.i++
	for p.i < len(p.s) {
		c := p.s[p.i]
		if !isLower(c) && !isDigit(c) && c != '_' && c != '-' && c != '.' && c != '*' {
			break
		}
		p.i++
	}
	return p.s[start:p.i], true
}

func (p *sfParser) bareItem(v *sfItem) bool {
	switch c := p.peek(); {
	case c == '-' || isDigit(c):
		return p.number(v)
	case c == '"':
		return p.str(v)
	case c == '*' || isAlpha(c):
		p.token(v)
		return true
	case c == ':':
		return p.bytes(v)
	case c == '?':
		return p.boolean(v)
	case c == '@':
		p.i++
		if !p.number(v) || v.kind != sfInteger {
			return false
		}
		v.kind = sfDate
		return true
	case c == '%':
		return p.displayString(v)
	}
	return false
}

// number parses an Integer or Decimal (RFC 9651 §4.2.4). The digit limits
// (15 for an Integer; 12 and 3 for a Decimal) keep every value in an int64,
// even a Decimal scaled by 1000.
func (p *sfParser) number(v *sfItem) bool {
	neg := false
	if p.peek() == '-' {
		neg = true
		p.i++
	}
	if !isDigit(p.peek()) {
		return false
	}
	var n int64
	intDigits, fracDigits, dec := 0, 0, false
	for ; p.i < len(p.s); p.i++ {
		c := p.s[p.i]
		switch {
		case isDigit(c):
			n = n*10 + int64(c-'0')
			if dec {
				if fracDigits++; fracDigits > 3 {
					return false
				}
			} else if intDigits++; intDigits > 15 {
				return false
			}
			continue
		case c == '.' && !dec:
			if intDigits > 12 {
				return false
			}
			dec = true
			continue
		}
		break
	}
	if dec {
		if fracDigits == 0 {
			return false
		}
		for ; fracDigits < 3; fracDigits++ {
			n *= 10
		}
		v.kind = sfDecimal
	} else {
		v.kind = sfInteger
	}
	if neg {
		n = -n
	}
	v.num = n
	return true
}

// str parses a String (RFC 9651 §4.2.5).
func (p *sfParser) str(v *sfItem) bool {
	p.i++ // opening '"'
	start, esc := p.i, false
	for p.i < len(p.s) {
		c := p.s[p.i]
		p.i++
		switch {
		case c == '\\':
			if n := p.peek(); n != '"' && n != '\\' {
				return false
			}
			p.i++
			esc = true
		case c == '"':
			*v = sfItem{kind: sfString, str: p.s[start : p.i-1], esc: esc}
			return true
		case c < 0x20 || c > 0x7e:
			return false
		}
	}
	return false // unterminated
}

// token parses a Token (RFC 9651 §4.2.6); the caller has seen its first byte.
func (p *sfParser) token(v *sfItem) {
	start := p.i
	p.i++
	for p.i < len(p.s) {
		if c := p.s[p.i]; !isTchar(c) && c != ':' && c != '/' {
			break
		}
		p.i++
	}
	*v = sfItem{kind: sfToken, str: p.s[start:p.i]}
}

// bytes parses a Byte Sequence (RFC 9651 §4.2.7) without decoding it.
func (p *sfParser) bytes(v *sfItem) bool {
	p.i++ // opening ':'
	start := p.i
	for p.i < len(p.s) {
		c := p.s[p.i]
		if c == ':' {
			*v = sfItem{kind: sfBytes, str: p.s[start:p.i]}
			p.i++
			return true
		}
		if !isAlpha(c) && !isDigit(c) && c != '+' && c != '/' && c != '=' {
			return false
		}
		p.i++
	}
	return false
}

// boolean parses a Boolean (RFC 9651 §4.2.8).
func (p *sfParser) boolean(v *sfItem) bool {
	p.i++ // '?'
	switch p.peek() {
	case '0':
		*v = sfItem{kind: sfBoolean}
	case '1':
		*v = sfItem{kind: sfBoolean, num: 1}
	default:
		return false
	}
	p.i++
	return true
}

// displayString checks a Display String (RFC 9651 §4.2.10): ASCII with
// lowercase %-escapes that must decode to valid UTF-8. It checks the UTF-8
// one rune at a time, so that nothing is decoded into a buffer.
func (p *sfParser) displayString(v *sfItem) bool {
	p.i++ // '%'
	if p.peek() != '"' {
		return false
	}
	p.i++
	start := p.i
	var r [utf8.UTFMax]byte // the bytes of a rune being decoded
	n := 0
	for p.i < len(p.s) {
		c := p.s[p.i]
		p.i++
		switch {
		case c == '"':
			if n != 0 {
				return false // truncated rune
			}
			*v = sfItem{kind: sfDisplayString, str: p.s[start : p.i-1]}
			return true
		case c == '%':
			if p.i+2 > len(p.s) {
				return false
			}
			hi, ok1 := lowerHex(p.s[p.i])
			lo, ok2 := lowerHex(p.s[p.i+1])
			if !ok1 || !ok2 {
				return false
			}
			p.i += 2
			r[n] = hi<<4 | lo
			n++
			// FullRune is true by four bytes at the latest, so n stays
			// within r.
			if utf8.FullRune(r[:n]) {
				if ru, size := utf8.DecodeRune(r[:n]); ru == utf8.RuneError && size <= 1 {
					return false
				}
				n = 0
			}
		case c < 0x20 || c > 0x7e:
			return false
		case n != 0:
			return false // a plain byte inside an escaped rune
		}
	}
	return false
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
func isLower(c byte) bool { return 'a' <= c && c <= 'z' }
func isAlpha(c byte) bool { return isLower(c) || 'A' <= c && c <= 'Z' }

// isTchar reports whether c is a tchar of RFC 9110 §5.6.2.
func isTchar(c byte) bool {
	if isAlpha(c) || isDigit(c) {
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

func lowerHex(c byte) (byte, bool) {
	switch {
	case isDigit(c):
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// trimOWS removes optional whitespace (space and horizontal tab, RFC 9110
// §5.6.3) from both ends of s.
func trimOWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}
