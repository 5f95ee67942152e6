package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Request is one validated client object. Which fields are set depends on Type.
type Request struct {
	Type string
	Ref  string
	Room string
	// User is the trimmed user name of a join; empty when the join gave none.
	User   string
	Text   string
	On     bool
	Since  *Since
	Before uint64 // 0: newest
	Limit  int    // history: 1..MaxHistoryLimit, DefHistoryLimit when absent
}

// rawRequest is the JSON shape of a client object; pointers tell absent from zero.
type rawRequest struct {
	Type   *string `json:"type"`
	Ref    *string `json:"ref"`
	Room   *string `json:"room"`
	User   *string `json:"user"`
	Text   *string `json:"text"`
	On     *bool   `json:"on"`
	Since  *Since  `json:"since"`
	Before *uint64 `json:"before"`
	Limit  *int    `json:"limit"`
}

// Decode parses and validates one client frame. On failure it returns the Error to send
// back, and the request's ref when it could be read, so the error can carry it.
func Decode(frame []byte) (Request, *Error) { return decode(frame, true) }

// decode is Decode, with the fast path for flat objects (scan.go) or without it.
func decode(frame []byte, fast bool) (Request, *Error) {
	var req Request
	if !utf8.Valid(frame) {
		return req, Errorf(CodeBadRequest, "frame is not valid UTF-8")
	}
	trimmed := bytes.TrimLeft(frame, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return req, Errorf(CodeBadRequest, "frame must be one JSON object")
	}
	var raw rawRequest
	var err error
	var flat flatRequest // what raw's pointers point at, when scanFlat read the frame
	ok := false
	if fast {
		raw, ok = scanFlat(frame, &flat)
	}
	if !ok {
		raw, err = decodeJSON(frame)
	}
	if raw.Ref != nil && len(*raw.Ref) <= MaxRef {
		req.Ref = *raw.Ref
	}
	if err != nil {
		var typeErr *json.UnmarshalTypeError
		if !errors.As(err, &typeErr) || typeErr.Field == "" {
			return req, Errorf(CodeBadRequest, "frame is not a JSON object")
		}
		// encoding/json goes on after a wrong-typed field, so the rest is decoded: a field
		// that this type does not use is ignored, like an unknown one.
		if raw.Type == nil || usesField(*raw.Type, typeErr.Field) {
			return req, Errorf(CodeBadRequest, "field %s must be %s", typeErr.Field, jsonKind(typeErr.Type.Kind().String()))
		}
	}
	return validate(&raw)
}

// Validate checks a request that a compatibility layer (Socket.IO) built, as Decode checks a
// frame: it answers what Decode answers for the frame json.Marshal makes of c, in which an
// empty field is absent.
func (c *ClientRequest) Validate() (Request, *Error) {
	// An empty ref reads as no ref.
	raw := rawRequest{Type: &c.Type, Ref: &c.Ref, On: c.On, Since: c.Since}
	if c.Room != "" {
		raw.Room = &c.Room
	}
	if c.User != "" {
		raw.User = &c.User
	}
	if c.Text != "" {
		raw.Text = &c.Text
	}
	if c.Before != 0 {
		raw.Before = &c.Before
	}
	if c.Limit != 0 {
		raw.Limit = &c.Limit
	}
	return validate(&raw)
}

// validate checks the fields of a decoded client object and makes the Request of them.
func validate(raw *rawRequest) (Request, *Error) {
	var req Request
	if raw.Ref != nil {
		if len(*raw.Ref) > MaxRef {
			return req, Errorf(CodeBadRequest, "ref is longer than %d bytes", MaxRef)
		}
		req.Ref = *raw.Ref
	}
	if raw.Type == nil {
		return req, Errorf(CodeBadRequest, "field type is required")
	}
	req.Type = *raw.Type
	switch req.Type {
	case TypePing:
		return req, nil
	case TypeJoin, TypeLeave, TypeMessage, TypeTyping, TypeUsers, TypeHistory:
	default:
		return req, Errorf(CodeUnknownType, "unknown type %.32q", req.Type)
	}

	if raw.Room == nil {
		return req, Errorf(CodeBadRequest, "field room is required")
	}
	if !ValidRoom(*raw.Room) {
		return req, Errorf(CodeInvalidRoom, "room must be 1 to 64 of A-Z a-z 0-9 _ . - and start with a letter or digit")
	}
	req.Room = *raw.Room

	switch req.Type {
	case TypeJoin:
		if raw.User != nil {
			user, ok := NormalizeUser(*raw.User)
			if !ok {
				return req, Errorf(CodeInvalidUser, "user must be 1 to %d characters without control characters", MaxUser)
			}
			req.User = user
		}
		if raw.Since != nil {
			since := *raw.Since
			req.Since = &since
		}
	case TypeMessage:
		if raw.Text == nil {
			return req, Errorf(CodeBadRequest, "field text is required")
		}
		if !ValidText(*raw.Text) {
			return req, Errorf(CodeInvalidText, "text must be 1 to %d bytes and not only white space", MaxText)
		}
		req.Text = *raw.Text
	case TypeTyping:
		if raw.On == nil {
			return req, Errorf(CodeBadRequest, "field on is required")
		}
		req.On = *raw.On
	case TypeHistory:
		if raw.Before != nil {
			if *raw.Before == 0 {
				return req, Errorf(CodeBadRequest, "before must be a seq of at least 1")
			}
			req.Before = *raw.Before
		}
		req.Limit = DefHistoryLimit
		if raw.Limit != nil {
			if *raw.Limit < 1 || *raw.Limit > MaxHistoryLimit {
				return req, Errorf(CodeBadRequest, "limit must be 1 to %d", MaxHistoryLimit)
			}
			req.Limit = *raw.Limit
		}
	}
	return req, nil
}

// decodeJSON decodes frame with encoding/json, apart from decode so that only this path
// allocates its rawRequest on the heap.
func decodeJSON(frame []byte) (rawRequest, error) {
	var raw rawRequest
	err := json.Unmarshal(frame, &raw)
	return raw, err
}

// usesField reports whether objects of type typ read field (or a field inside it, such as
// since.seq).
func usesField(typ, field string) bool {
	if i := strings.IndexByte(field, '.'); i >= 0 {
		field = field[:i]
	}
	switch field {
	case "type", "ref":
		return true
	case "room":
		return typ != TypePing
	case "user", "since":
		return typ == TypeJoin
	case "text":
		return typ == TypeMessage
	case "on":
		return typ == TypeTyping
	case "before", "limit":
		return typ == TypeHistory
	}
	return false
}

// jsonKind names a Go kind the way a JSON client thinks of it.
func jsonKind(kind string) string {
	switch kind {
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "struct", "ptr":
		return "an object"
	case "uint64", "int":
		return "a whole number"
	}
	return "of another type"
}

// ValidRoom reports whether name matches ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$.
func ValidRoom(name string) bool {
	if len(name) == 0 || len(name) > MaxRoom {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case i > 0 && (c == '_' || c == '.' || c == '-'):
		default:
			return false
		}
	}
	return true
}

// NormalizeUser trims surrounding white space from a user name and reports whether the rest
// is 1 to MaxUser characters of valid UTF-8 without control characters.
func NormalizeUser(name string) (string, bool) {
	name = strings.TrimSpace(name)
	if name == "" || !utf8.ValidString(name) || utf8.RuneCountInString(name) > MaxUser {
		return "", false
	}
	for _, r := range name {
		if unicode.IsControl(r) || r == utf8.RuneError {
			return "", false
		}
	}
	return name, true
}

// ValidText reports whether text is valid UTF-8 of 1 to MaxText bytes, not only white space.
func ValidText(text string) bool {
	return len(text) > 0 && len(text) <= MaxText && utf8.ValidString(text) && strings.TrimSpace(text) != ""
}
