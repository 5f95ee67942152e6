package bench

import (
	"bytes"
	"math/bits"
	"sync/atomic"

	"github.com/shardchat/shardchat/transport/wire"
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

// seenRoom is a room's recent messages, by seq modulo their number, and the start of its
// message lines up to the seq's digits.
type seenRoom struct {
	head  []byte
	slots []atomic.Pointer[seenMessage]
	mask  uint64 // len(slots) - 1: a seq's slot is seq & mask
}

// seenMessages is every room's seenRoom. Safe for concurrent use.
type seenMessages struct {
	rooms []seenRoom
}

// maxSeenSlots bounds the slots of a room, and maxSeenTotal those of all rooms: 8 bytes each,
// and once messages have filled them, a kept line and its seenMessage each, a few hundred
// bytes: at most about 64 MiB over all rooms.
const (
	maxSeenSlots = 4096
	minSeenSlots = 16
	maxSeenTotal = 1 << 18
)

// newSeenMessages returns the seenMessages of rooms, or nil when a room has fewer than two
// users (nothing would be read twice) or there are too many rooms to keep minSeenSlots lines
// each within maxSeenTotal.
func newSeenMessages(rooms []string, usersPerRoom int) *seenMessages {
	if usersPerRoom < 2 || minSeenSlots*len(rooms) > maxSeenTotal {
		return nil
	}
	size := min(maxSeenSlots, 1<<(bits.Len(uint(maxSeenTotal/len(rooms)))-1)) // a power of two
	s := &seenMessages{rooms: make([]seenRoom, len(rooms))}
	for i, name := range rooms {
		s.rooms[i] = seenRoom{head: wire.AppendMessageHead(nil, name), slots: make([]atomic.Pointer[seenMessage], size), mask: uint64(size - 1)}
	}
	return s
}

// lookup answers the kept message of room that line is a copy of, or nil (always, for a nil
// s).
func (s *seenMessages) lookup(room int, line []byte) *seenMessage {
	if s == nil {
		return nil
	}
	r := &s.rooms[room]
	if !bytes.HasPrefix(line, r.head) {
		return nil
	}
	// The seq only finds the slot: a line is taken only when it equals, byte for byte, one
	// that was read in full, which is all that makes the answer right.
	digits := line[len(r.head):]
	end := bytes.IndexByte(digits, ',')
	if end < 0 {
		return nil
	}
	seq, ok := parseDigits(digits[:end])
	if !ok {
		return nil
	}
	m := r.slots[uint64(seq)&r.mask].Load()
	if m == nil || m.seq != uint64(seq) || !bytes.Equal(m.line, line) {
		return nil
	}
	return m
}

// store keeps m, read in full from a line of room, in its slot (nothing, for a nil s).
func (s *seenMessages) store(room int, m *seenMessage) {
	if s == nil {
		return
	}
	r := &s.rooms[room]
	r.slots[m.seq&r.mask].Store(m)
}
