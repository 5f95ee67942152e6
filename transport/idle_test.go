package transport

import (
	"bytes"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/shardchat/shardchat/shard"
	"github.com/shardchat/shardchat/transport/wire"
)

// TestIdleReaderParks: an idle client's session holds no reader goroutine (its reader parks,
// park.go), also after the pongs it sends to the server's pings, which wake a reader that
// takes them off the socket and parks again; and the client's next message is served. Where
// there is no poller, the reader waits for input at the top of its loop instead, not in the
// library's frame reader (where its stack could not shrink).
//
// Not parallel: it looks at every session reader's stack, and wants its own alone.
func TestIdleReaderParks(t *testing.T) {
	if !canPeek {
		t.Skip("no peek on this platform: the reader waits in the library")
	}
	env := setupTest(t, Config{PingInterval: 50 * time.Millisecond, PingTimeout: 10 * time.Second}, shard.Config{})
	c := env.dial() // its reader answers pings
	c.join("r", "idle")
	sess := env.onlySession(t)
	joined := sess.lastRead.Load()
	// The client sends nothing more: only its pongs can move lastRead.
	waitFor(t, func() bool { return sess.lastRead.Load() > joined && sess.pingSent.Load() == 0 })
	firstPong := sess.lastRead.Load()
	waitFor(t, func() bool { return sess.lastRead.Load() > firstPong })

	// A moment after a pong the reader may still be on its way back: look a few times.
	var where string
	settled := func() bool {
		where = readerStacks(t)
		if env.srv.poller != nil {
			return where == "" && sess.parked.Load()
		}
		return strings.Count(where, "(*session).readLoop") == 1 && strings.Contains(where, "(*session).waitInput") &&
			!strings.Contains(where, "websocket.(*Conn).readFrameHeader")
	}
	for deadline := time.Now().Add(5 * time.Second); !settled() && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if !settled() {
		t.Fatalf("after two pongs the reader is not parked (poller %v, parked %v); readers:\n%s", env.srv.poller != nil, sess.parked.Load(), where)
	}
	c.send(wire.ClientRequest{Type: wire.TypeMessage, Room: "r", Text: "still here", Ref: "m"})
	if ev := c.nextOf(wire.TypeMessage); ev.Text != "still here" {
		t.Fatalf("got %+v", ev)
	}
}

// readerStacks returns the stacks of the goroutines running a session's readLoop.
func readerStacks(t *testing.T) string {
	t.Helper()
	var buf bytes.Buffer
	if err := pprof.Lookup("goroutine").WriteTo(&buf, 2); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, g := range strings.Split(buf.String(), "\n\n") {
		if strings.Contains(g, "(*session).readLoop") {
			out = append(out, g)
		}
	}
	return strings.Join(out, "\n\n")
}

// TestWholePong: wholePong claims a whole, final, masked pong with a short length, and
// nothing else: not a part of one, not another frame.
func TestWholePong(t *testing.T) {
	t.Parallel()
	mask := []byte{1, 2, 3, 4}
	pong := func(n int) []byte {
		return append(append([]byte{0x8a, 0x80 | byte(n)}, mask...), make([]byte, n)...)
	}
	for _, tc := range []struct {
		name string
		b    []byte
		want int
	}{
		{"empty pong", pong(0), 6},
		{"pong with payload, then more", append(pong(5), 0x81, 0x80), 11},
		{"longest pong", pong(125), 131},
		{"payload not all here", pong(5)[:9], 0},
		{"mask key not all here", pong(0)[:4], 0},
		{"one byte", []byte{0x8a}, 0},
		{"unmasked", []byte{0x8a, 0x00}, 0},
		{"not final", []byte{0x0a, 0x80, 1, 2, 3, 4}, 0},
		{"a reserved bit", []byte{0xca, 0x80, 1, 2, 3, 4}, 0},
		{"a ping", []byte{0x89, 0x80, 1, 2, 3, 4}, 0},
		{"a text frame", []byte{0x81, 0x80, 1, 2, 3, 4}, 0},
		{"16-bit length", append([]byte{0x8a, 0x80 | 126, 0, 6}, make([]byte, 10)...), 0},
		{"64-bit length", append([]byte{0x8a, 0x80 | 127}, make([]byte, 140)...), 0},
	} {
		if got := wholePong(tc.b); got != tc.want {
			t.Errorf("%s: wholePong(% x) = %d, want %d", tc.name, tc.b, got, tc.want)
		}
	}
}

// FuzzWholePong: whatever a client sends, wholePong claims only a whole pong of b: a final,
// masked pong whose header, mask key and payload are all in b.
func FuzzWholePong(f *testing.F) {
	f.Add([]byte{0x8a, 0x80, 1, 2, 3, 4})
	f.Add([]byte{0x8a, 0x85, 1, 2, 3, 4, 5})
	f.Add([]byte{0x8a, 0xfe, 0, 1})
	f.Add([]byte{0x81, 0x80, 1, 2, 3, 4, 0x8a})
	f.Fuzz(func(t *testing.T, b []byte) {
		n := wholePong(b)
		if n == 0 {
			return
		}
		if n > len(b) || n > maxPong || b[0] != 0x8a || b[1]&0x80 == 0 || n != 6+int(b[1]&0x7f) {
			t.Fatalf("wholePong(% x) = %d", b, n)
		}
	})
}
