package wire

import (
	"strconv"
	"unicode/utf8"
)

// The encoders below append one server object to dst and return the extended slice. They are
// written by hand rather than with encoding/json because the server encodes every object that
// it fans out, and each is built once however many members receive it. Tests hold them to the
// output of encoding/json.

// Message is a chat message as it is broadcast and kept in history.
type Message struct {
	Room string
	Seq  uint64
	User string
	Text string
	TS   int64 // Unix milliseconds
	Ref  string
}

// MessageOverhead is how many bytes a message object has beyond its room, user, text and ref
// when they need no escaping, at most (a 20-digit seq, a 13-digit ts): a buffer of that
// plus their lengths takes AppendMessage without growing.
const MessageOverhead = 112

// AppendMessage appends the message object of m.
func AppendMessage(dst []byte, m *Message) []byte {
	dst = AppendMessageHead(dst, m.Room)
	dst = strconv.AppendUint(dst, m.Seq, 10)
	return AppendMessageTail(dst, m)
}

// MessageStart is how every message object the server writes starts, up to its room's
// value: readers that know the server's order (the bench's fast path) match it as it is.
const MessageStart = `{"type":"message","room":`

// AppendMessageHead appends the part of a message object before its seq. With
// AppendMessageTail it lets a store that assigns the seq (the Redis bridge's Lua script)
// finish an object encoded by the sender: head + seq + tail is AppendMessage's output.
func AppendMessageHead(dst []byte, room string) []byte {
	dst = append(dst, MessageStart...)
	dst = appendString(dst, room)
	return append(dst, `,"seq":`...)
}

// AppendMessageTail appends the part of m's message object after its seq; m.Seq is not read.
func AppendMessageTail(dst []byte, m *Message) []byte {
	dst = append(dst, `,"user":`...)
	dst = appendString(dst, m.User)
	dst = append(dst, `,"text":`...)
	dst = appendString(dst, m.Text)
	dst = append(dst, `,"ts":`...)
	dst = strconv.AppendInt(dst, m.TS, 10)
	dst = appendRef(dst, m.Ref)
	return append(dst, '}')
}

// AppendWelcome appends the welcome object.
func AppendWelcome(dst []byte, node string, l Limits) []byte {
	dst = append(dst, `{"type":"welcome","proto":`...)
	dst = strconv.AppendInt(dst, Proto, 10)
	dst = append(dst, `,"node":`...)
	dst = appendString(dst, node)
	dst = append(dst, `,"limits":{"text":`...)
	dst = strconv.AppendInt(dst, int64(l.Text), 10)
	dst = append(dst, `,"rooms":`...)
	dst = strconv.AppendInt(dst, int64(l.Rooms), 10)
	dst = append(dst, `,"rate":`...)
	dst = strconv.AppendFloat(dst, l.Rate, 'f', -1, 64)
	dst = append(dst, `,"burst":`...)
	dst = strconv.AppendInt(dst, int64(l.Burst), 10)
	return append(dst, "}}"...)
}

// Joined is the reply to a successful join.
type Joined struct {
	Ref       string
	Room      string
	User      string
	Epoch     string
	Seq       uint64
	Recovered bool
	Users     []string
	// History holds encoded message objects (AppendMessage), oldest first.
	History [][]byte
}

// AppendJoined appends the joined object of j.
func AppendJoined(dst []byte, j *Joined) []byte {
	dst = append(dst, `{"type":"joined"`...)
	dst = appendRef(dst, j.Ref)
	dst = append(dst, `,"room":`...)
	dst = appendString(dst, j.Room)
	dst = append(dst, `,"user":`...)
	dst = appendString(dst, j.User)
	dst = append(dst, `,"epoch":`...)
	dst = appendString(dst, j.Epoch)
	dst = append(dst, `,"seq":`...)
	dst = strconv.AppendUint(dst, j.Seq, 10)
	dst = append(dst, `,"recovered":`...)
	dst = strconv.AppendBool(dst, j.Recovered)
	dst = append(dst, `,"users":`...)
	dst = appendStrings(dst, j.Users)
	dst = append(dst, `,"history":`...)
	dst = appendRaw(dst, j.History)
	return append(dst, '}')
}

// AppendLeft appends the left object.
func AppendLeft(dst []byte, ref, room string) []byte {
	dst = append(dst, `{"type":"left"`...)
	dst = appendRef(dst, ref)
	dst = append(dst, `,"room":`...)
	dst = appendString(dst, room)
	return append(dst, '}')
}

// Presence events.
const (
	PresenceJoin  = "join"
	PresenceLeave = "leave"
)

// AppendPresence appends a presence object; event is PresenceJoin or PresenceLeave.
func AppendPresence(dst []byte, room, user, event string) []byte {
	dst = append(dst, `{"type":"presence","room":`...)
	dst = appendString(dst, room)
	dst = append(dst, `,"user":`...)
	dst = appendString(dst, user)
	dst = append(dst, `,"event":`...)
	dst = appendString(dst, event)
	return append(dst, '}')
}

// AppendTyping appends a typing object.
func AppendTyping(dst []byte, room, user string, on bool) []byte {
	dst = append(dst, `{"type":"typing","room":`...)
	dst = appendString(dst, room)
	dst = append(dst, `,"user":`...)
	dst = appendString(dst, user)
	dst = append(dst, `,"on":`...)
	dst = strconv.AppendBool(dst, on)
	return append(dst, '}')
}

// AppendUsers appends the users object.
func AppendUsers(dst []byte, ref, room string, users []string) []byte {
	dst = append(dst, `{"type":"users"`...)
	dst = appendRef(dst, ref)
	dst = append(dst, `,"room":`...)
	dst = appendString(dst, room)
	dst = append(dst, `,"users":`...)
	dst = appendStrings(dst, users)
	return append(dst, '}')
}

// AppendHistory appends the history object; messages are encoded message objects, oldest first.
func AppendHistory(dst []byte, ref, room string, messages [][]byte) []byte {
	dst = append(dst, `{"type":"history"`...)
	dst = appendRef(dst, ref)
	dst = append(dst, `,"room":`...)
	dst = appendString(dst, room)
	dst = append(dst, `,"messages":`...)
	dst = appendRaw(dst, messages)
	return append(dst, '}')
}

// AppendPong appends the pong object.
func AppendPong(dst []byte, ref string) []byte {
	dst = append(dst, `{"type":"pong"`...)
	dst = appendRef(dst, ref)
	return append(dst, '}')
}

// AppendError appends the error object of e, with ref when it is not empty.
func AppendError(dst []byte, ref string, e *Error) []byte {
	dst = append(dst, `{"type":"error"`...)
	dst = appendRef(dst, ref)
	dst = append(dst, `,"code":`...)
	dst = appendString(dst, string(e.Code))
	dst = append(dst, `,"message":`...)
	dst = appendString(dst, e.Message)
	return append(dst, '}')
}

func appendRef(dst []byte, ref string) []byte {
	if ref == "" {
		return dst
	}
	dst = append(dst, `,"ref":`...)
	return appendString(dst, ref)
}

func appendStrings(dst []byte, list []string) []byte {
	dst = append(dst, '[')
	for i, s := range list {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, s)
	}
	return append(dst, ']')
}

func appendRaw(dst []byte, objects [][]byte) []byte {
	dst = append(dst, '[')
	for i, o := range objects {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, o...)
	}
	return append(dst, ']')
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string. It escapes what JSON requires, plus U+2028 and
// U+2029 (JavaScript line terminators), and replaces invalid UTF-8 with U+FFFD, as
// encoding/json does. It never emits a raw newline: frames are split on '\n'.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
