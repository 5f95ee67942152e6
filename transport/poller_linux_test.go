//go:build linux

package transport

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/shardchat/shardchat/shard"
	"github.com/shardchat/shardchat/transport/wire"
)

// TestPollerStopResumesParked: when the poller stops (at shutdown, or if epoll failed), a
// parked session gets a reader back, which waits on a goroutine of its own from then on and
// serves the client as before.
//
// Not parallel: it looks at every session reader's stack.
func TestPollerStopResumesParked(t *testing.T) {
	env := setupTest(t, Config{PingInterval: 50 * time.Millisecond, PingTimeout: 10 * time.Second}, shard.Config{})
	c := env.dial()
	c.join("r", "sleepy")
	sess := env.onlySession(t)
	waitFor(t, func() bool { return sess.parked.Load() && readerStacks(t) == "" })

	env.srv.poller.close()
	waitFor(t, func() bool { return !sess.parked.Load() && readerStacks(t) != "" })
	c.send(wire.ClientRequest{Type: wire.TypeMessage, Room: "r", Text: "awake", Ref: "m"})
	if ev := c.nextOf(wire.TypeMessage); ev.Text != "awake" {
		t.Fatalf("got %+v", ev)
	}
	time.Sleep(50 * time.Millisecond) // the reader is back at the top of its loop
	if sess.parked.Load() || readerStacks(t) == "" {
		t.Fatal("the session parked with its poller stopped")
	}
}

// TestParkedSessionsEnd: every way a parked session can end ends it and takes its member out
// of the room: the client goes, the server closes it (a kick), or the watchdog cuts it (a
// client that answered one ping, and then no more). No reader goroutine is left behind.
//
// Not parallel: it looks at every session reader's stack.
func TestParkedSessionsEnd(t *testing.T) {
	env := setupTest(t, Config{PingInterval: 300 * time.Millisecond, PingTimeout: 300 * time.Millisecond}, shard.Config{})
	watcher := env.dial()
	watcher.join("r", "watcher")
	gone := env.dial()
	gone.join("r", "gone")
	kicked := env.dial()
	kicked.join("r", "kicked")
	conn, _ := muteUntilPing(t, env)
	if _, err := conn.Write([]byte{0x8a, 0x80, 1, 2, 3, 4}); err != nil { // one pong, the last
		t.Fatal(err)
	}
	// The others answer every ping (their library does): all four park.
	waitFor(t, func() bool { return env.parkedSessions() == 4 })

	leaves := func(want string) {
		t.Helper()
		for {
			ev := watcher.nextOf(wire.TypePresence)
			if ev.Event == wire.PresenceLeave {
				if ev.User != want {
					t.Fatalf("want %s to leave, got %+v", want, ev)
				}
				return
			}
		}
	}
	_ = gone.conn.CloseNow()
	leaves("gone")

	kickedSess := env.sessionOf(t, "kicked")
	waitFor(t, kickedSess.parked.Load)
	kickedSess.Kick(wire.ClosePolicy, "kicked")
	kicked.expectClose(wire.ClosePolicy)
	leaves("kicked")

	leaves("mute") // cut by the watchdog, PingTimeout after its second ping
	// The watcher parks again after each of its pongs: a moment with it parked, no reader
	// and the gauge at 1 comes.
	waitFor(t, func() bool {
		return env.sessions() == 1 && readerStacks(t) == "" && testutil.ToFloat64(env.srv.metrics.parked) == 1
	})
}

// TestSocketIOSessionParks: a Socket.IO client that answers the server's Engine.IO pings and
// sends nothing else parks too, is served when it speaks again, and parks again on the
// pongs after that.
//
// Not parallel: it looks at every session reader's stack.
func TestSocketIOSessionParks(t *testing.T) {
	env := setupTest(t, Config{PingInterval: 50 * time.Millisecond, PingTimeout: 10 * time.Second}, shard.Config{})
	c := env.dialSIO(true)
	c.connect()
	sess := env.onlySession(t)
	waitFor(t, func() bool { return sess.parked.Load() && readerStacks(t) == "" })
	c.send(`421["join",{"username":"sio","room":"lobby"}]`)
	var j joinAck
	c.ack("1", &j)
	if !j.OK {
		t.Fatalf("join ack after parking: %+v", j)
	}
	// The join came soon after the connect, so the reader stays; the Engine.IO pongs that
	// follow (a ping every 50 ms) park it again.
	waitFor(t, func() bool { return !sess.parked.Load() || readerStacks(t) != "" })
	waitFor(t, func() bool { return sess.parked.Load() && readerStacks(t) == "" })
}

// parkedSessions counts the sessions whose reader is parked.
func (e *testEnv) parkedSessions() int {
	e.srv.mu.Lock()
	defer e.srv.mu.Unlock()
	n := 0
	for s := range e.srv.sessions {
		if s.parked.Load() {
			n++
		}
	}
	return n
}

// TestParkingUnderChurn: many clients whose readers park and wake over and over (a message
// now and then, pongs in between) get every message of their room in order, and when they
// all go, every session ends: no reader left, no session counted as parked.
//
// Not parallel: it looks at every session reader's stack.
func TestParkingUnderChurn(t *testing.T) {
	env := setupTest(t, Config{PingInterval: 20 * time.Millisecond, PingTimeout: 5 * time.Second}, shard.Config{})
	const clients, rooms, rounds = 60, 3, 5
	cs := make([]*client, clients)
	for i := range cs {
		cs[i] = env.dial()
		cs[i].join(fmt.Sprint("r", i%rooms), fmt.Sprint("u", i))
	}
	for round := range rounds {
		for i, c := range cs {
			c.send(wire.ClientRequest{Type: wire.TypeMessage, Room: fmt.Sprint("r", i%rooms), Text: fmt.Sprintf("%d/%d", i, round), Ref: fmt.Sprint(round)})
		}
		// Silent after their message, every client is pinged and parks after its pong (a
		// pong that came in one read with the message too); the next round's messages wake
		// them.
		waitFor(t, func() bool { return env.parkedSessions() == clients })
	}
	for i, c := range cs {
		var last uint64
		for n := range clients / rooms * rounds {
			ev := c.nextOf(wire.TypeMessage)
			if n > 0 && ev.Seq != last+1 {
				t.Fatalf("client %d: seq %d after %d", i, ev.Seq, last)
			}
			last = ev.Seq
		}
	}
	for _, c := range cs {
		_ = c.conn.CloseNow()
	}
	waitFor(t, func() bool {
		return env.sessions() == 0 && readerStacks(t) == "" && testutil.ToFloat64(env.srv.metrics.parked) == 0
	})
}

// TestPongBehindAFrameParks: a pong that came right behind a frame, read into the library's
// buffer with it, is taken off there too, and the session parks; left to the library, it
// would be read deep in its frame reader, which would then wait there for the next frame.
//
// Not parallel: it looks at every session reader's stack.
func TestPongBehindAFrameParks(t *testing.T) {
	env := setupTest(t, Config{}, shard.Config{})
	watcher := env.dial()
	watcher.join("r", "watcher")
	conn, r := rawUpgrade(t, env, nil)
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := conn.Write(appendMaskedFrame(nil, `{"type":"join","room":"r","user":"raw","ref":"j"}`)); err != nil {
		t.Fatal(err)
	}
	for {
		_, payload, err := nextServerFrame(r)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(payload), `"joined"`) {
			break
		}
	}
	sess := env.sessionOf(t, "raw")
	waitFor(t, sess.parked.Load) // after its first frame
	msgAndPong := append(appendMaskedFrame(nil, `{"type":"message","room":"r","text":"hi","ref":"m"}`), 0x8a, 0x80, 1, 2, 3, 4)
	if _, err := conn.Write(msgAndPong); err != nil {
		t.Fatal(err)
	}
	if ev := watcher.nextOf(wire.TypeMessage); ev.Text != "hi" {
		t.Fatalf("got %+v", ev)
	}
	waitFor(t, func() bool {
		return sess.parked.Load() && !strings.Contains(readerStacks(t), "readFrameHeader")
	})
}
