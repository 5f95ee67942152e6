package bench

import (
	"bytes"
	"log/slog"
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
	if newSeenMessages(rooms, 1) != nil {
		t.Fatal("a cache for rooms of one user each")
	}
	if s := newSeenMessages(make([]string, 1000), 50); len(s.rooms[0].slots)*1000 > maxSeenTotal {
		t.Fatalf("%d slots a room for 1,000 rooms: past maxSeenTotal", len(s.rooms[0].slots))
	}
	if newSeenMessages(make([]string, maxSeenTotal/minSeenSlots+1), 2) != nil {
		t.Fatal("a cache for more rooms than maxSeenTotal holds at minSeenSlots lines each")
	}
	s := newSeenMessages(rooms, 2)
	size := uint64(len(s.rooms[0].slots))
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
		"another seq, same slot": seenLine(rooms[0], 5+size, "hello"),
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
	// The same bytes kept under another seq, or in another room's slot, are not a copy.
	s.store(0, &seenMessage{seq: 5 + size, line: bytes.Clone(kept)})
	if s.lookup(0, kept) != nil {
		t.Error("a line taken from a slot that holds another seq")
	}
	other := seenLine(rooms[1], 7, "hello")
	s.store(0, &seenMessage{seq: 7, line: bytes.Clone(other)})
	if s.lookup(0, other) != nil {
		t.Error("another room's line taken from this room's slot")
	}
}

// TestHandleLineAllocs: reading a message line costs a client no allocation when nothing is
// kept (rooms of one user), nor when the line is a copy of a kept one.
func TestHandleLineAllocs(t *testing.T) {
	for _, users := range []int{1, 2} {
		wl := Workload{Users: users, Rooms: 1, Messages: 1, TextSize: 16}
		w := newWorker(workerSpec{RunID: "x", URLs: []string{"ws://127.0.0.1:1/ws"}, Workload: wl, Count: users}, slog.New(slog.DiscardHandler))
		c := w.clients[0]
		var lines [][]byte
		for seq := range 1200 {
			lines = append(lines, seenLine(w.roomName(c.room), uint64(seq+1), "hello"))
		}
		var st frameState
		next := 0
		allocs := testing.AllocsPerRun(1000, func() {
			if users == 2 {
				c.handleLine(&st, lines[next]) // read in full, and kept
			}
			c.handleLine(&st, lines[next]) // users 1: read in full; users 2: a copy
			next++
		})
		if users == 1 && allocs != 0 {
			t.Errorf("%v allocations a line read in full with nothing kept, want 0", allocs)
		}
		if users == 2 && allocs != 2 {
			t.Errorf("%v allocations for a line kept and its copy, want 2 (the kept message and its line)", allocs)
		}
		if c.undecodable != 0 || c.stray != 0 || c.track.delivered != int64(next) {
			t.Fatalf("users %d: %d undecodable, %d stray, %d delivered of %d", users, c.undecodable, c.stray, c.track.delivered, next)
		}
	}
}

// BenchmarkSeenLookup: what a copy of a message already read costs a client, against
// scanObject's fast path in BenchmarkScanObject.
func BenchmarkSeenLookup(b *testing.B) {
	line := seenLine("bench-1a2b-3", 123456, strings.Repeat("x", 64))
	s := newSeenMessages([]string{"bench-1a2b-3"}, 1000)
	s.store(0, &seenMessage{seq: 123456, line: bytes.Clone(line)})
	b.SetBytes(int64(len(line)))
	for b.Loop() {
		if s.lookup(0, line) == nil {
			b.Fatal("missed")
		}
	}
}
