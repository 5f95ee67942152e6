package bench

import (
	"bytes"
	"math/bits"
	"strconv"
	"sync/atomic"
)

// The server encodes a message once and sends every member of its room the same bytes, so
// the bench, whose clients share a room, reads the same line once per member: 1,000 times in
// fanout. seenMessages keeps, per room, the lines of recent messages that a client read and
// validated in full (scanObject) with what it read from them; the next client that reads a
// line with the same room and seq compares the whole line with the kept one and, when equal,
// takes what was read from it instead of reading it again. Every line is still checked:
// byte for byte against one that was.

// seenMessage is a message line read in full, with what the reader takes from it.
type seenMessage struct {
	seq   uint64
	line  []byte
	user  int   // the sender, from the ref
	sent  int64 // when it was sent, from the ref (Unix ns)
	refOK bool  // the ref is one the bench wrote
}

// seenRoom is a room's recent messages, by seq modulo its size, and the start of its message
// lines up to the seq's digits.
type seenRoom struct {
	head  []byte
	slots []atomic.Pointer[seenMessage]
}

// seenMessages is every room's seenRoom, made on first use. Safe for concurrent use.
type seenMessages struct {
	rooms []atomic.Pointer[seenRoom]
	names []string
	size  int // slots per room: a power of two
}

// maxSeenSlots bounds the slots of a room, and maxSeenTotal those of all rooms: each keeps a
// line (a few hundred bytes) once its room's messages come.
const (
	maxSeenSlots = 4096
	maxSeenTotal = 1 << 18
)

// newSeenMessages returns the seenMessages of rooms for a run of about messagesPerRoom a
// room (0: unknown), or nil when a room has fewer than two users (nothing would be read
// twice) or there are too many rooms to keep 16 lines each within maxSeenTotal.
func newSeenMessages(rooms []string, usersPerRoom, messagesPerRoom int) *seenMessages {
	if usersPerRoom < 2 || 16*len(rooms) > maxSeenTotal {
		return nil
	}
	size := maxSeenSlots
	if messagesPerRoom > 0 {
		size = min(size, 1<<bits.Len(uint(max(messagesPerRoom, 16)-1)))
	}
	for size > 16 && size*len(rooms) > maxSeenTotal {
		size /= 2
	}
	return &seenMessages{rooms: make([]atomic.Pointer[seenRoom], len(rooms)), names: rooms, size: size}
}

func (s *seenMessages) room(i int) *seenRoom {
	if r := s.rooms[i].Load(); r != nil {
		return r
	}
	r := &seenRoom{
		head:  []byte(serverMessageStart + strconv.Quote(s.names[i]) + `,"seq":`),
		slots: make([]atomic.Pointer[seenMessage], s.size),
	}
	if s.rooms[i].CompareAndSwap(nil, r) {
		return r
	}
	return s.rooms[i].Load()
}

// lookup answers the kept message of room that line is a copy of, or nil (always, for a nil
// s).
func (s *seenMessages) lookup(room int, line []byte) *seenMessage {
	if s == nil {
		return nil
	}
	r := s.room(room)
	if !bytes.HasPrefix(line, r.head) {
		return nil
	}
	rest := line[len(r.head):]
	var seq uint64
	n := 0
	for n < len(rest) && n < 19 && '0' <= rest[n] && rest[n] <= '9' {
		seq = seq*10 + uint64(rest[n]-'0')
		n++
	}
	if n == 0 || n == len(rest) || rest[n] != ',' {
		return nil
	}
	m := r.slots[seq%uint64(len(r.slots))].Load()
	if m == nil || m.seq != seq || !bytes.Equal(m.line, line) {
		return nil
	}
	return m
}

// store keeps m, read in full from a line of room, in its slot (nothing, for a nil s).
func (s *seenMessages) store(room int, m *seenMessage) {
	if s == nil {
		return
	}
	r := s.room(room)
	r.slots[m.seq%uint64(len(r.slots))].Store(m)
}
