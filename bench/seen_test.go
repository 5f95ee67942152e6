package bench

import (
	"bytes"
	"strings"
	"testing"

	"github.com/shardchat/shardchat/transport/wire"
)

func seenLine(room string, seq uint64, text string) []byte {
	return wire.AppendMessage(nil, &wire.Message{Room: room, Seq: seq, User: "u7", Text: text, TS: 1764430001234, Ref: "7.1764430001234000000"})
}

// TestSeenMessages: a line is taken from the kept ones only when it is byte for byte the line
// kept for its room and seq; anything else is read in full.
func TestSeenMessages(t *testing.T) {
	t.Parallel()
	rooms := []string{"bench-x-0", "bench-x-1"}
	if newSeenMessages(rooms, 1, 10) != nil {
		t.Fatal("a cache for rooms of one user each")
	}
	if s := newSeenMessages(make([]string, 1000), 50, 0); s.size*1000 > maxSeenTotal {
		t.Fatalf("%d slots a room for 1,000 rooms: past maxSeenTotal", s.size)
	}
	if newSeenMessages(make([]string, maxSeenTotal/16+1), 2, 10) != nil {
		t.Fatal("a cache for more rooms than maxSeenTotal holds at 16 lines each")
	}
	s := newSeenMessages(rooms, 2, 10) // 16 slots
	kept := seenLine(rooms[0], 5, "hello")
	if s.lookup(0, kept) != nil {
		t.Fatal("a hit before anything was kept")
	}
	m := &seenMessage{seq: 5, line: bytes.Clone(kept), user: 7, sent: 1764430001234000000, refOK: true}
	s.store(0, m)
	if s.lookup(0, kept) != m {
		t.Fatal("the kept line missed")
	}
	for name, line := range map[string][]byte{
		"another text":           seenLine(rooms[0], 5, "hellp"),
		"another seq, same slot": seenLine(rooms[0], 21, "hello"),
		"another room":           seenLine(rooms[1], 5, "hello"),
		"cut short":              kept[:len(kept)-1],
		"a byte more":            append(bytes.Clone(kept), ' '),
		"seq without a comma":    []byte(strings.Replace(string(kept), `"seq":5,`, `"seq":5 ,`, 1)),
		"not a message":          []byte(`{"type":"pong"}`),
	} {
		if s.lookup(0, line) != nil || s.lookup(1, line) != nil {
			t.Errorf("%s: %s taken for the kept line", name, line)
		}
	}
}

// BenchmarkSeenLookup: what a copy of a message already read costs a client, against
// scanObject's fast path in BenchmarkScanObject.
func BenchmarkSeenLookup(b *testing.B) {
	line := seenLine("bench-1a2b-3", 123456, strings.Repeat("x", 64))
	s := newSeenMessages([]string{"bench-1a2b-3"}, 1000, 1<<20)
	s.store(0, &seenMessage{seq: 123456, line: bytes.Clone(line)})
	b.SetBytes(int64(len(line)))
	for b.Loop() {
		if s.lookup(0, line) == nil {
			b.Fatal("missed")
		}
	}
}
