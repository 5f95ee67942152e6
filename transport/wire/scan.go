package wire

import "github.com/shardchat/shardchat/transport/wire/jsonscan"

// The fast path of Decode. Nearly every client object is flat: a few of the keys type, ref,
// room, user and text with string values without escapes, and on with true or false, as
// clients write them. scanFlat reads exactly those, without reflection and without the deep
// call stack of encoding/json (which grows a reader goroutine's stack past 8 KiB: copied on
// the way, and kept). Anything else (escapes, numbers, null, nested values, other keys, keys
// spelled in another case) it leaves to encoding/json, and FuzzDecodePaths holds the two to
// the same answers.

// flatRequest holds the values scanFlat read, for the pointers of rawRequest.
type flatRequest struct {
	typ, ref, room, user, text string
	on                         bool
}

// scanFlat reads a flat client object (see above), its values into f, and answers the fields
// it held as encoding/json would (pointers into f), and whether it could; when it could not,
// both are to be ignored. frame must be valid UTF-8: a string without escapes is then its
// value as it stands.
func scanFlat(frame []byte, f *flatRequest) (raw rawRequest, ok bool) {
	s := jsonscan.Scanner{Line: frame}
	s.Space()
	if !s.Eat('{') {
		return raw, false
	}
	s.Space()
	if s.Eat('}') {
		return raw, s.End() == nil
	}
	for {
		key, okKey := s.Plain()
		if !okKey {
			return raw, false
		}
		s.Space()
		if !s.Eat(':') {
			return raw, false
		}
		s.Space()
		if string(key) == "on" {
			switch {
			case s.Lit("true"):
				f.on = true
			case s.Lit("false"):
				f.on = false
			default:
				return raw, false
			}
			raw.On = &f.on
		} else {
			var value []byte
			var okValue bool
			if string(key) == "text" {
				// The one value that may be long: Quoted reads it a word at a time, where
				// Plain, inlined, reads the short ones faster.
				var escaped bool
				var err error
				value, escaped, _, err = s.Quoted()
				okValue = err == nil && !escaped
			} else {
				value, okValue = s.Plain()
			}
			if !okValue {
				return raw, false
			}
			switch string(key) {
			case "type":
				f.typ, raw.Type = requestType(value), &f.typ
			case "ref":
				f.ref, raw.Ref = string(value), &f.ref
			case "room":
				f.room, raw.Room = string(value), &f.room
			case "user":
				f.user, raw.User = string(value), &f.user
			case "text":
				f.text, raw.Text = string(value), &f.text
			default:
				return raw, false
			}
		}
		s.Space()
		switch {
		case s.Eat(','):
			s.Space()
		case s.Eat('}'):
			return raw, s.End() == nil
		default:
			return raw, false
		}
	}
}

// requestType is value as a string, the constant itself for the types there are, so that
// the common case allocates nothing.
func requestType(value []byte) string {
	for _, t := range [...]string{TypeMessage, TypeTyping, TypeJoin, TypeLeave, TypeUsers, TypeHistory, TypePing} {
		if string(value) == t {
			return t
		}
	}
	return string(value)
}
