// Package jsonscan holds the pieces of shardchat's two hand-written JSON readers: the
// server's fast path for client objects (transport/wire) and the bench's reader of server
// objects (bench). Each reads a line once, in place, allocating nothing, where encoding/json
// would reflect, allocate and grow the reading goroutine's stack; each is fuzzed against
// encoding/json. What they share is here: white space, literals, strings (eight bytes at a
// time), numbers, and stepping over any value.
package jsonscan

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// maxDepth is how deeply Skip lets values nest, as encoding/json does.
const maxDepth = 10000

// ErrUnexpected is wrapped, with what was wanted and where, by every error of a Scanner: the
// line is not JSON, or not the JSON its reader wants there.
var ErrUnexpected = errors.New("unexpected JSON")

// Scanner walks one line of JSON: Pos is the index in Line of the next byte to read. Its
// methods step over what they read. Those that return an error leave Pos where the fault
// is; those that report a bool leave it alone when they report false. A Scanner is a cursor
// for one goroutine; it holds nothing but Line and Pos.
type Scanner struct {
	Line []byte
	Pos  int
}

// Fail returns an error that says what was wanted at Pos.
func (s *Scanner) Fail(want string) error {
	return fmt.Errorf("%w: %s at byte %d", ErrUnexpected, want, s.Pos)
}

// Space steps over JSON white space.
func (s *Scanner) Space() {
	for s.Pos < len(s.Line) {
		switch s.Line[s.Pos] {
		case ' ', '\t', '\n', '\r':
			s.Pos++
		default:
			return
		}
	}
}

// Peek returns the next byte, or 0 at the end of the line.
func (s *Scanner) Peek() byte {
	if s.Pos < len(s.Line) {
		return s.Line[s.Pos]
	}
	return 0
}

// Eat steps over c if it comes next, and reports whether it did.
func (s *Scanner) Eat(c byte) bool {
	if s.Pos < len(s.Line) && s.Line[s.Pos] == c {
		s.Pos++
		return true
	}
	return false
}

// Lit steps over word if it comes next, and reports whether it did. Whatever follows is the
// caller's to check: after a literal value, a delimiter.
func (s *Scanner) Lit(word string) bool {
	if len(s.Line)-s.Pos >= len(word) && string(s.Line[s.Pos:s.Pos+len(word)]) == word {
		s.Pos += len(word)
		return true
	}
	return false
}

// Null steps over null if it comes next, and reports whether it did.
func (s *Scanner) Null() bool { return s.Lit("null") }

// End checks that only white space is left.
func (s *Scanner) End() error {
	s.Space()
	if s.Pos != len(s.Line) {
		return s.Fail("want the end of the line")
	}
	return nil
}

// Plain reads the string that comes next when it holds no escape and no control character,
// and reports whether it could: body is what lies between its quotes. It is the caller's
// byte-at-a-time alternative to Quoted for strings expected to be short, such as keys:
// small enough to be inlined, where Quoted's word at a time pays off only past a few words.
func (s *Scanner) Plain() (body []byte, ok bool) {
	if s.Pos >= len(s.Line) || s.Line[s.Pos] != '"' {
		return nil, false
	}
	for j := s.Pos + 1; j < len(s.Line); j++ {
		switch c := s.Line[j]; {
		case c == '"':
			body, s.Pos = s.Line[s.Pos+1:j], j+1
			return body, true
		case c == '\\' || c < 0x20:
			return nil, false
		}
	}
	return nil, false
}

// Quoted reads the string that comes next. body is what lies between its quotes; escaped
// reports a backslash in it (body is then not the value: the quoted string, from the byte at
// the Pos before the call, is for encoding/json), and ascii that no byte of body is past
// ASCII (else only a check of its UTF-8 stands between body and the value).
func (s *Scanner) Quoted() (body []byte, escaped, ascii bool, err error) {
	if !s.Eat('"') {
		return nil, false, false, s.Fail("want a string")
	}
	// The loops over plain bytes are most of the time spent reading a line: eight bytes at a
	// time while none is special, then a table lookup per byte to find the one that is, with
	// ORs that remember whether any byte was past ASCII. They work on locals, which stay in
	// registers; Pos is set only where escape, Fail or the caller reads it.
	line, i := s.Line, s.Pos
	start := i
	var high byte
	var high8 uint64
	for {
		for i+8 <= len(line) {
			x := binary.LittleEndian.Uint64(line[i:])
			if hasSpecial(x) {
				break
			}
			high8 |= x
			i += 8
		}
		for i < len(line) && !stringSpecial[line[i]] {
			high |= line[i]
			i++
		}
		s.Pos = i
		if i >= len(line) {
			return nil, false, false, s.Fail("unterminated string")
		}
		switch line[i] {
		case '"':
			s.Pos = i + 1
			return line[start:i], escaped, high < 0x80 && high8&highBits == 0, nil
		case '\\':
			escaped = true
			if err := s.escape(); err != nil {
				return nil, false, false, err
			}
			i = s.Pos
		default:
			return nil, false, false, s.Fail("control character in a string")
		}
	}
}

// Word-at-a-time masks: each byte's lowest bit, each byte's highest bit.
const (
	lowBits  = 0x0101010101010101
	highBits = 0x8080808080808080
)

// hasSpecial reports whether any of the eight bytes of x is special in a string (see
// stringSpecial): a quote, a backslash, or below 0x20. For the word as a whole,
// (v-lowBits)&^v&highBits is non-zero exactly when a byte of v is zero, and
// (x-n*lowBits)&^x&highBits exactly when a byte of x is below n (n ≤ 0x80): the lowest byte
// that borrows is a true match (bytes above it may be flagged falsely, which does not matter
// here).
func hasSpecial(x uint64) bool {
	quote := x ^ ('"' * lowBits)
	backslash := x ^ ('\\' * lowBits)
	control := (x - 0x20*lowBits) &^ x
	return ((quote-lowBits)&^quote|(backslash-lowBits)&^backslash|control)&highBits != 0
}

// stringSpecial marks the bytes that end a run of plain string bytes: the quote, the
// backslash, and the control characters JSON forbids in strings.
var stringSpecial = func() (t [256]bool) {
	for c := range 0x20 {
		t[c] = true
	}
	t['"'], t['\\'] = true, true
	return t
}()

// escape checks one escape sequence at Pos (the backslash) and steps over it.
func (s *Scanner) escape() error {
	s.Pos++
	if s.Pos >= len(s.Line) {
		return s.Fail("unterminated escape")
	}
	switch s.Line[s.Pos] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		s.Pos++
		return nil
	case 'u':
		if len(s.Line)-s.Pos < 5 {
			return s.Fail("short \\u escape")
		}
		for _, h := range s.Line[s.Pos+1 : s.Pos+5] {
			if !isHex(h) {
				return s.Fail("bad \\u escape")
			}
		}
		s.Pos += 5
		return nil
	}
	return s.Fail("bad escape")
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// Uint reads a number that must be an unsigned integer that fits 64 bits, as encoding/json
// requires of a uint64 field.
func (s *Scanner) Uint() (uint64, error) {
	start := s.Pos
	if err := s.Number(); err != nil {
		return 0, err
	}
	var v uint64
	for _, c := range s.Line[start:s.Pos] {
		if c < '0' || c > '9' {
			return 0, s.Fail("want an unsigned integer")
		}
		d := uint64(c - '0')
		if v > (1<<64-1-d)/10 {
			return 0, s.Fail("integer overflows 64 bits")
		}
		v = v*10 + d
	}
	return v, nil
}

// Number steps over a JSON number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *Scanner) Number() error {
	s.Eat('-')
	switch c := s.Peek(); {
	case c == '0':
		s.Pos++
	case '1' <= c && c <= '9':
		s.digits()
	default:
		return s.Fail("want a number")
	}
	if s.Eat('.') {
		if s.digits() == 0 {
			return s.Fail("want digits after '.'")
		}
	}
	if c := s.Peek(); c == 'e' || c == 'E' {
		s.Pos++
		if c := s.Peek(); c == '+' || c == '-' {
			s.Pos++
		}
		if s.digits() == 0 {
			return s.Fail("want digits in the exponent")
		}
	}
	return nil
}

func (s *Scanner) digits() int {
	start := s.Pos
	for s.Pos < len(s.Line) && '0' <= s.Line[s.Pos] && s.Line[s.Pos] <= '9' {
		s.Pos++
	}
	return s.Pos - start
}

// Skip steps over any JSON value, checking it.
func (s *Scanner) Skip() error { return s.skip(0) }

// skip is Skip for a value nested depth deep already.
func (s *Scanner) skip(depth int) error {
	switch c := s.Peek(); {
	case c == '"':
		_, _, _, err := s.Quoted()
		return err
	case c == '{', c == '[':
		if depth >= maxDepth {
			return s.Fail("nested too deeply")
		}
		return s.container(depth + 1)
	case c == '-' || '0' <= c && c <= '9':
		return s.Number()
	case s.Lit("true"), s.Lit("false"), s.Null():
		return nil
	}
	return s.Fail("want a value")
}

// container steps over an object or an array.
func (s *Scanner) container(depth int) error {
	closer := byte(']')
	object := s.Line[s.Pos] == '{'
	if object {
		closer = '}'
	}
	s.Pos++
	s.Space()
	if s.Eat(closer) {
		return nil
	}
	for {
		s.Space()
		if object {
			if _, _, _, err := s.Quoted(); err != nil {
				return err
			}
			s.Space()
			if !s.Eat(':') {
				return s.Fail("want ':'")
			}
			s.Space()
		}
		if err := s.skip(depth); err != nil {
			return err
		}
		s.Space()
		if s.Eat(',') {
			continue
		}
		if s.Eat(closer) {
			return nil
		}
		return s.Fail("want ',' or a closing bracket")
	}
}
