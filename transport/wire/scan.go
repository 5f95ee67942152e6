package wire

// The fast path of Decode. Nearly every client object is flat: a few of the keys type, ref,
// room, user and text with plain string values, and on with true or false, as clients write
// them. scanFlat reads exactly those, without reflection and without the deep call stack of
// encoding/json (which grows a reader goroutine's stack past 8 KiB: copied on the way, and
// kept). Anything else (escapes, numbers, null, nested values, other keys, keys spelled in
// another case) it leaves to encoding/json, and FuzzDecodePaths holds the two to the same
// answers.

// flatRequest is what scanFlat read: the fields of a flat client object, and which were there.
type flatRequest struct {
	typ, ref, room, user, text string
	on                         bool
	has                        flatFields
}

// flatFields marks the fields a flat object held.
type flatFields uint8

const (
	hasType flatFields = 1 << iota
	hasRef
	hasRoom
	hasUser
	hasText
	hasOn
)

// raw gives the fields read as rawRequest gives encoding/json's: a pointer for each field
// that was there.
func (f *flatRequest) raw() rawRequest {
	return rawRequest{
		Type: present(f, hasType, &f.typ),
		Ref:  present(f, hasRef, &f.ref),
		Room: present(f, hasRoom, &f.room),
		User: present(f, hasUser, &f.user),
		Text: present(f, hasText, &f.text),
		On:   present(f, hasOn, &f.on),
	}
}

// present is v when f held the field marked field, else nil.
func present[T any](f *flatRequest, field flatFields, v *T) *T {
	if f.has&field == 0 {
		return nil
	}
	return v
}

// scanFlat reads a flat client object (see above) into f and reports whether it could; when
// it could not, f is to be ignored. frame must be valid UTF-8.
func scanFlat(frame []byte, f *flatRequest) bool {
	i := skipSpace(frame, 0)
	if i == len(frame) || frame[i] != '{' {
		return false
	}
	i = skipSpace(frame, i+1)
	if i < len(frame) && frame[i] == '}' {
		return skipSpace(frame, i+1) == len(frame)
	}
	for {
		key, next, ok := scanPlainString(frame, i)
		if !ok {
			return false
		}
		i = skipSpace(frame, next)
		if i == len(frame) || frame[i] != ':' {
			return false
		}
		i = skipSpace(frame, i+1)
		if string(key) == "on" {
			switch {
			case hasLiteral(frame, i, "true"):
				f.on, i = true, i+4
			case hasLiteral(frame, i, "false"):
				f.on, i = false, i+5
			default:
				return false
			}
			f.has |= hasOn
		} else {
			value, next, ok := scanPlainString(frame, i)
			if !ok {
				return false
			}
			i = next
			if string(key) == "type" {
				f.typ = requestType(value)
				f.has |= hasType
			} else if dst, field := f.stringField(key); dst != nil {
				*dst = string(value)
				f.has |= field
			} else {
				return false
			}
		}
		i = skipSpace(frame, i)
		if i == len(frame) {
			return false
		}
		switch frame[i] {
		case ',':
			i = skipSpace(frame, i+1)
		case '}':
			return skipSpace(frame, i+1) == len(frame)
		default:
			return false
		}
	}
}

// stringField is where the value of key goes, and its mark in has; nil for a key that is
// not one of the flat string fields but type.
func (f *flatRequest) stringField(key []byte) (*string, flatFields) {
	switch string(key) {
	case "ref":
		return &f.ref, hasRef
	case "room":
		return &f.room, hasRoom
	case "user":
		return &f.user, hasUser
	case "text":
		return &f.text, hasText
	}
	return nil, 0
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
