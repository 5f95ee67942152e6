package wire

// The fast path of Decode. Nearly every client object is flat: a few of the keys type, ref,
// room, user and text with plain string values, and on with true or false, as clients write
// them. scanFlat reads exactly those, without reflection and without the deep call stack of
// encoding/json (which grows a reader goroutine's stack past 8 KiB: copied on the way, and
// kept). Anything else (escapes, numbers, null, nested values, other keys, keys spelled in
// another case) it leaves to encoding/json, and FuzzDecodePaths holds the two to the same
// answers.

// flatRequest holds the values scanFlat read, for the pointers of rawRequest.
type flatRequest struct {
	typ, ref, room, user, text string
	on                         bool
}

// scanFlat reads a flat client object (see above), its values into f, and answers the fields
// it held as encoding/json would (pointers into f), and whether it could; when it could not,
// both are to be ignored. frame must be valid UTF-8.
func scanFlat(frame []byte, f *flatRequest) (raw rawRequest, ok bool) {
	i := skipSpace(frame, 0)
	if i == len(frame) || frame[i] != '{' {
		return raw, false
	}
	i = skipSpace(frame, i+1)
	if i < len(frame) && frame[i] == '}' {
		return raw, skipSpace(frame, i+1) == len(frame)
	}
	for {
		key, next, okKey := scanPlainString(frame, i)
		if !okKey {
			return raw, false
		}
		i = skipSpace(frame, next)
		if i == len(frame) || frame[i] != ':' {
			return raw, false
		}
		i = skipSpace(frame, i+1)
		if string(key) == "on" {
			switch {
			case hasLiteral(frame, i, "true"):
				f.on, i = true, i+4
			case hasLiteral(frame, i, "false"):
				f.on, i = false, i+5
			default:
				return raw, false
			}
			raw.On = &f.on
		} else {
			value, next, okValue := scanPlainString(frame, i)
			if !okValue {
				return raw, false
			}
			i = next
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
		i = skipSpace(frame, i)
		if i == len(frame) {
			return raw, false
		}
		switch frame[i] {
		case ',':
			i = skipSpace(frame, i+1)
		case '}':
			return raw, skipSpace(frame, i+1) == len(frame)
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

// scanPlainString reads the JSON string that starts at frame[i], when it holds no escape
// and no control character: its bytes, and the index after its closing quote.
func scanPlainString(frame []byte, i int) ([]byte, int, bool) {
	if i == len(frame) || frame[i] != '"' {
		return nil, 0, false
	}
	for j := i + 1; j < len(frame); j++ {
		switch c := frame[j]; {
		case c == '"':
			return frame[i+1 : j], j + 1, true
		case c == '\\' || c < 0x20:
			return nil, 0, false
		}
	}
	return nil, 0, false
}

// hasLiteral reports whether frame holds lit at i, ended by a delimiter or the end.
func hasLiteral(frame []byte, i int, lit string) bool {
	if len(frame)-i < len(lit) || string(frame[i:i+len(lit)]) != lit {
		return false
	}
	end := i + len(lit)
	if end == len(frame) {
		return true
	}
	switch frame[end] {
	case ' ', '\t', '\r', '\n', ',', '}':
		return true
	}
	return false
}

// skipSpace answers the index of the first byte at or after i that is not JSON white space.
func skipSpace(frame []byte, i int) int {
	for i < len(frame) {
		switch frame[i] {
		case ' ', '\t', '\r', '\n':
			i++
		default:
			return i
		}
	}
	return i
}
