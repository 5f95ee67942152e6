package bench

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
)

// object is what the bench reads of one server object: its type and the few fields that the
// accounting needs. The byte slices alias the scanned line, or the object's scratch buffer for
// a string that had to be unescaped; they are valid until the next scan into the same object.
//
// A field that is absent or null is left empty (seq: hasSeq false).
type object struct {
	typ    []byte
	room   []byte
	ref    []byte
	code   []byte
	seq    uint64
	hasSeq bool

	scratch []byte // unescaped strings (rare: the server escapes nothing in these fields)
}

// maxDepth is how deeply skipped values may nest, as in encoding/json.
const maxDepth = 10000

// errSyntax is returned, wrapped with the offset, for a line that is not one JSON object or
// whose fields of interest have the wrong JSON type.
var errSyntax = errors.New("not a protocol object")

// scanObject reads the top-level fields type, room, ref, code (strings) and seq (an unsigned
// integer) of one JSON object, and checks that the whole line is valid JSON. It is the bench's
// hot path: a full decode with encoding/json for each of a million deliveries a second would
// cost the client more than the server spends on them, so it reads the line once, allocates
// nothing for the objects the server sends, and skips the other fields (text among them).
//
// Keys match exactly (encoding/json matches struct fields case-insensitively; the protocol's
// keys are lower case), the last of duplicate keys wins, and strings are unescaped the way
// encoding/json does it, invalid UTF-8 included.
func scanObject(line []byte, o *object) error {
	if scanMessage(line, o) {
		return nil
	}
	*o = object{scratch: o.scratch[:0]}
	s := scanner{b: line}
	s.ws()
	if !s.eat('{') {
		return s.fail("want an object")
	}
	s.ws()
	if s.eat('}') {
		return s.end()
	}
	for {
		s.ws()
		key, simple, err := s.str()
		if err != nil {
			return err
		}
		if !simple {
			key = o.unescape(key)
		}
		s.ws()
		if !s.eat(':') {
			return s.fail("want ':'")
		}
		s.ws()
		if err := o.value(&s, key); err != nil {
			return err
		}
		s.ws()
		if s.eat(',') {
			continue
		}
		if s.eat('}') {
			return s.end()
		}
		return s.fail("want ',' or '}'")
	}
}

// serverMessageStart starts a message object as the server writes it (wire.AppendMessage).
const serverMessageStart = `{"type":"message","room":`

// scanMessage is scanObject's fast path for a message object written as the server writes it
// (keys in its order, no white space, no escapes in room and ref): nearly every line the bench
// reads. It checks the keys as literals instead of scanning and matching each, and validates
// the values as scanObject does. It reports false, having set nothing in o, for any other
// line; scanObject then reads it the long way and reaches the same result or error.
func scanMessage(line []byte, o *object) bool {
	if len(line) < len(serverMessageStart) || string(line[:len(serverMessageStart)]) != serverMessageStart {
		return false
	}
	s := scanner{b: line, i: len(serverMessageStart)}
	room, simple, err := s.str()
	if err != nil || !simple || !s.lit(`,"seq":`) {
		return false
	}
	seq, err := s.uint()
	if err != nil || !s.lit(`,"user":`) {
		return false
	}
	if _, _, err := s.str(); err != nil || !s.lit(`,"text":`) {
		return false
	}
	if _, _, err := s.str(); err != nil || !s.lit(`,"ts":`) {
		return false
	}
	if err := s.number(); err != nil {
		return false
	}
	var ref []byte
	if s.lit(`,"ref":`) {
		if ref, simple, err = s.str(); err != nil || !simple {
			return false
		}
	}
	if !s.eat('}') || s.i != len(line) {
		return false
	}
	const typeAt = len(`{"type":"`)
	*o = object{typ: line[typeAt : typeAt+len("message")], room: room, ref: ref, seq: seq, hasSeq: true, scratch: o.scratch[:0]}
	return true
}

// value reads the value of key into o, or skips it when the bench does not need it.
func (o *object) value(s *scanner, key []byte) error {
	var dst *[]byte
	switch string(key) { // no allocation: the compiler compares in place
	case "type":
		dst = &o.typ
	case "room":
		dst = &o.room
	case "ref":
		dst = &o.ref
	case "code":
		dst = &o.code
	case "seq":
		if s.null() {
			o.seq, o.hasSeq = 0, false
			return nil
		}
		seq, err := s.uint()
		if err != nil {
			return err
		}
		o.seq, o.hasSeq = seq, true
		return nil
	default:
		return s.skip(0)
	}
	if s.null() {
		*dst = nil
		return nil
	}
	if s.peek() != '"' {
		return s.fail("want a string")
	}
	v, simple, err := s.str()
	if err != nil {
		return err
	}
	if !simple {
		v = o.unescape(v)
	}
	*dst = v
	return nil
}

// unescape decodes a quoted JSON string that has escapes or non-ASCII bytes, as encoding/json
// would, into the scratch buffer. quoted was validated by the scanner.
func (o *object) unescape(quoted []byte) []byte {
	var v string
	if err := json.Unmarshal(quoted, &v); err != nil {
		return nil // unreachable: the scanner validated the string
	}
	start := len(o.scratch)
	o.scratch = append(o.scratch, v...)
	return o.scratch[start:len(o.scratch):len(o.scratch)]
}

// scanner walks one line of JSON.
type scanner struct {
	b []byte
	i int
}

func (s *scanner) fail(what string) error {
	return fmt.Errorf("%w: %s at byte %d", errSyntax, what, s.i)
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *scanner) peek() byte {
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

func (s *scanner) eat(c byte) bool {
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// end checks that only white space follows the object.
func (s *scanner) end() error {
	s.ws()
	if s.i != len(s.b) {
		return s.fail("want the end of the line")
	}
	return nil
}

func (s *scanner) lit(word string) bool {
	if len(s.b)-s.i >= len(word) && string(s.b[s.i:s.i+len(word)]) == word {
		s.i += len(word)
		return true
	}
	return false
}

func (s *scanner) null() bool { return s.lit("null") }

// str reads a string at s.i. When simple (no escapes, ASCII only) it returns the contents
// between the quotes; otherwise the whole quoted string, for unescape.
func (s *scanner) str() ([]byte, bool, error) {
	if !s.eat('"') {
		return nil, false, s.fail("want a string")
	}
	start := s.i
	simple := true
	for {
		// The loops over plain bytes are most of the bench's decoding time: eight bytes at a
		// time while none is special, then a table lookup per byte to find the one that is,
		// with ORs that remember whether any byte was past ASCII.
		var high byte
		b, i := s.b, s.i
		var high8 uint64
		for i+8 <= len(b) {
			x := binary.LittleEndian.Uint64(b[i:])
			if hasSpecial(x) {
				break
			}
			high8 |= x
			i += 8
		}
		for i < len(b) && !stringSpecial[b[i]] {
			high |= b[i]
			i++
		}
		s.i = i
		if high >= 0x80 || high8&highBits != 0 {
			simple = false
		}
		if s.i >= len(s.b) {
			return nil, false, s.fail("unterminated string")
		}
		switch c := s.b[s.i]; {
		case c == '"':
			s.i++
			if simple {
				return s.b[start : s.i-1], true, nil
			}
			return s.b[start-1 : s.i], false, nil
		case c == '\\':
			simple = false
			if err := s.escape(); err != nil {
				return nil, false, err
			}
		default:
			return nil, false, s.fail("control character in a string")
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

// escape checks one escape sequence at s.i (the backslash) and steps over it.
func (s *scanner) escape() error {
	s.i++
	if s.i >= len(s.b) {
		return s.fail("unterminated escape")
	}
	switch s.b[s.i] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		s.i++
		return nil
	case 'u':
		if len(s.b)-s.i < 5 {
			return s.fail("short \\u escape")
		}
		for _, h := range s.b[s.i+1 : s.i+5] {
			if !isHex(h) {
				return s.fail("bad \\u escape")
			}
		}
		s.i += 5
		return nil
	}
	return s.fail("bad escape")
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// uint reads a JSON number that must be an unsigned integer that fits 64 bits, as
// encoding/json requires of a uint64 field.
func (s *scanner) uint() (uint64, error) {
	start := s.i
	if err := s.number(); err != nil {
		return 0, err
	}
	digits := s.b[start:s.i]
	var v uint64
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, s.fail("want an unsigned integer")
		}
		d := uint64(c - '0')
		if v > (1<<64-1-d)/10 {
			return 0, s.fail("integer overflows 64 bits")
		}
		v = v*10 + d
	}
	return v, nil
}

// number steps over a JSON number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *scanner) number() error {
	s.eat('-')
	switch c := s.peek(); {
	case c == '0':
		s.i++
	case '1' <= c && c <= '9':
		s.digits()
	default:
		return s.fail("want a number")
	}
	if s.eat('.') {
		if s.digits() == 0 {
			return s.fail("want digits after '.'")
		}
	}
	if c := s.peek(); c == 'e' || c == 'E' {
		s.i++
		if c := s.peek(); c == '+' || c == '-' {
			s.i++
		}
		if s.digits() == 0 {
			return s.fail("want digits in the exponent")
		}
	}
	return nil
}

func (s *scanner) digits() int {
	start := s.i
	for s.i < len(s.b) && '0' <= s.b[s.i] && s.b[s.i] <= '9' {
		s.i++
	}
	return s.i - start
}

// skip steps over any JSON value, checking it.
func (s *scanner) skip(depth int) error {
	switch c := s.peek(); {
	case c == '"':
		_, _, err := s.str()
		return err
	case c == '{', c == '[':
		if depth >= maxDepth {
			return s.fail("nested too deeply")
		}
		return s.container(depth + 1)
	case c == '-' || '0' <= c && c <= '9':
		return s.number()
	case s.lit("true"), s.lit("false"), s.null():
		return nil
	}
	return s.fail("want a value")
}

// container steps over an object or an array.
func (s *scanner) container(depth int) error {
	closer := byte(']')
	object := s.b[s.i] == '{'
	if object {
		closer = '}'
	}
	s.i++
	s.ws()
	if s.eat(closer) {
		return nil
	}
	for {
		s.ws()
		if object {
			if _, _, err := s.str(); err != nil {
				return err
			}
			s.ws()
			if !s.eat(':') {
				return s.fail("want ':'")
			}
			s.ws()
		}
		if err := s.skip(depth); err != nil {
			return err
		}
		s.ws()
		if s.eat(',') {
			continue
		}
		if s.eat(closer) {
			return nil
		}
		return s.fail("want ',' or a closing bracket")
	}
}
