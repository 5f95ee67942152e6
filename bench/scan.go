package bench

import (
	"encoding/json"

	"github.com/shardchat/shardchat/transport/wire"
	"github.com/shardchat/shardchat/transport/wire/jsonscan"
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

// scanObject reads the top-level fields type, room, ref, code (strings) and seq (an unsigned
// integer) of one JSON object, and checks that the whole line is valid JSON. It is the bench's
// hot path: a full decode with encoding/json for each of a million deliveries a second would
// cost the client more than the server spends on them, so it reads the line once, allocates
// nothing for the objects the server sends, and skips the other fields (text among them).
//
// Keys match exactly (encoding/json matches struct fields case-insensitively; the protocol's
// keys are lower case), the last of duplicate keys wins, and strings are unescaped the way
// encoding/json does it, invalid UTF-8 included.
//
// A line it cannot read gets an error that wraps jsonscan.ErrUnexpected.
func scanObject(line []byte, o *object) error {
	if scanMessage(line, o) {
		return nil
	}
	*o = object{scratch: o.scratch[:0]}
	s := jsonscan.Scanner{Line: line}
	s.Space()
	if !s.Eat('{') {
		return s.Fail("want an object")
	}
	s.Space()
	if s.Eat('}') {
		return s.End()
	}
	for {
		s.Space()
		key, err := o.str(&s)
		if err != nil {
			return err
		}
		s.Space()
		if !s.Eat(':') {
			return s.Fail("want ':'")
		}
		s.Space()
		if err := o.value(&s, key); err != nil {
			return err
		}
		s.Space()
		if s.Eat(',') {
			continue
		}
		if s.Eat('}') {
			return s.End()
		}
		return s.Fail("want ',' or '}'")
	}
}

// scanMessage is scanObject's fast path for a message object written as the server writes it
// (keys in its order, no white space, no escapes in room and ref): nearly every line the bench
// reads. It checks the keys as literals instead of scanning and matching each, and validates
// the values as scanObject does. It reports false, having set nothing in o, for any other
// line; scanObject then reads it the long way and reaches the same result or error.
func scanMessage(line []byte, o *object) bool {
	if len(line) < len(wire.MessageStart) || string(line[:len(wire.MessageStart)]) != wire.MessageStart {
		return false
	}
	s := jsonscan.Scanner{Line: line, Pos: len(wire.MessageStart)}
	room, escaped, ascii, err := s.Quoted()
	if err != nil || escaped || !ascii || !s.Lit(`,"seq":`) {
		return false
	}
	seq, err := s.Uint()
	if err != nil || !s.Lit(`,"user":`) {
		return false
	}
	if _, _, _, err := s.Quoted(); err != nil || !s.Lit(`,"text":`) {
		return false
	}
	if _, _, _, err := s.Quoted(); err != nil || !s.Lit(`,"ts":`) {
		return false
	}
	if err := s.Number(); err != nil {
		return false
	}
	var ref []byte
	if s.Lit(`,"ref":`) {
		if ref, escaped, ascii, err = s.Quoted(); err != nil || escaped || !ascii {
			return false
		}
	}
	if !s.Eat('}') || s.Pos != len(line) {
		return false
	}
	const typeAt = len(`{"type":"`)
	*o = object{typ: line[typeAt : typeAt+len("message")], room: room, ref: ref, seq: seq, hasSeq: true, scratch: o.scratch[:0]}
	return true
}

// value reads the value of key into o, or skips it when the bench does not need it.
func (o *object) value(s *jsonscan.Scanner, key []byte) error {
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
		if s.Null() {
			o.seq, o.hasSeq = 0, false
			return nil
		}
		seq, err := s.Uint()
		if err != nil {
			return err
		}
		o.seq, o.hasSeq = seq, true
		return nil
	default:
		return s.Skip()
	}
	if s.Null() {
		*dst = nil
		return nil
	}
	if s.Peek() != '"' {
		return s.Fail("want a string")
	}
	v, err := o.str(s)
	if err != nil {
		return err
	}
	*dst = v
	return nil
}

// str reads the string that comes next: its value as encoding/json reads it, in place when
// it has no escape and is all ASCII (the server's are), else unescaped into the scratch
// buffer.
func (o *object) str(s *jsonscan.Scanner) ([]byte, error) {
	open := s.Pos
	body, escaped, ascii, err := s.Quoted()
	if err != nil || !escaped && ascii {
		return body, err
	}
	return o.unescape(s.Line[open:s.Pos]), nil
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
