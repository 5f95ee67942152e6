package transport

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/shardchat/shardchat/shard"
	"github.com/shardchat/shardchat/transport/wire"
)

func TestWelcome(t *testing.T) {
	t.Parallel()
	env := setupTest(t, Config{Node: "node-1", Rate: 7, Burst: 9, MaxRooms: 3}, shard.Config{})
	c := env.dialNoWelcome()
	ev := c.next()
	want := wire.Limits{Text: wire.MaxText, Rooms: 3, Rate: 7, Burst: 9}
	if ev.Type != wire.TypeWelcome || ev.ProtoVersion != wire.Proto || ev.Node != "node-1" || ev.Limits == nil || *ev.Limits != want {
		t.Fatalf("welcome = %+v limits %+v", ev, ev.Limits)
	}
}

func TestChatInARoom(t *testing.T) {
	t.Parallel()
	env := setupTest(t, Config{}, shard.Config{})
	alice, bob := env.dial(), env.dial()

	j := alice.join("general", "alice")
	if j.Ref != "j-general" || j.User != "alice" || j.Seq != 0 || j.Epoch == "" || j.Recovered || !slices.Equal(j.Users, []string{"alice"}) || len(j.History) != 0 {
		t.Fatalf("alice joined = %+v", j)
	}
	j = bob.join("general", "  bob  ")
	if j.User != "bob" || !slices.Equal(j.Users, []string{"alice", "bob"}) {
		t.Fatalf("bob joined = %+v", j)
	}
	if p := alice.next(); p.Type != wire.TypePresence || p.User != "bob" || p.Event != wire.PresenceJoin || p.Room != "general" {
		t.Fatalf("alice got %+v, want bob's presence join", p)
	}

	alice.send(wire.ClientRequest{Type: wire.TypeMessage, Room: "general", Text: "hello\nworld", Ref: "c-1"})
	echo := alice.next()
	got := bob.next()
	if echo.Type != wire.TypeMessage || echo.Seq != 1 || echo.Ref != "c-1" || echo.User != "alice" || echo.Text != "hello\nworld" || echo.TS == 0 {
		t.Fatalf("echo = %+v", echo)
	}
	if got.Type != wire.TypeMessage || got.Seq != 1 || got.Text != echo.Text || got.TS != echo.TS {
		t.Fatalf("bob got %+v", got)
	}

	bob.send(wire.ClientRequest{Type: wire.TypeUsers, Room: "general", Ref: "u"})
	if u := bob.next(); u.Type != wire.TypeUsers || u.Ref != "u" || !slices.Equal(u.Users, []string{"alice", "bob"}) {
		t.Fatalf("users = %+v", u)
	}
	bob.send(wire.ClientRequest{Type: wire.TypePing, Ref: "p"})
	if p := bob.next(); p.Type != wire.TypePong || p.Ref != "p" {
		t.Fatalf("pong = %+v", p)
	}

	// A later join keeps the connection's name; joining again answers joined again.
	j = bob.join("random", "")
	if j.User != "bob" {
		t.Fatalf("second join user = %q", j.User)
	}
	j = bob.join("general", "bob")
	if j.Seq != 1 || len(j.History) != 1 || !slices.Equal(j.Users, []string{"alice", "bob"}) {
		t.Fatalf("rejoin = %+v", j)
	}

	bob.send(wire.ClientRequest{Type: wire.TypeLeave, Room: "general", Ref: "l"})
	if l := bob.next(); l.Type != wire.TypeLeft || l.Ref != "l" || l.Room != "general" {
		t.Fatalf("left = %+v", l)
	}
	if p := alice.next(); p.Type != wire.TypePresence || p.User != "bob" || p.Event != wire.PresenceLeave {
		t.Fatalf("alice got %+v, want bob's presence leave", p)
	}
	bob.send(wire.ClientRequest{Type: wire.TypeMessage, Room: "general", Text: "still here?", Ref: "m"})
	bob.expectError(wire.CodeNotJoined, "m")
	alice.expectNone(100 * time.Millisecond)

	// A disconnect is a leave for the others.
	_ = bob.conn.Close(websocket.StatusNormalClosure, "")
	carol := env.dial()
	carol.join("random", "carol")
	carol.send(wire.ClientRequest{Type: wire.TypeUsers, Room: "random", Ref: "u"})
	for {
		u := carol.nextOf(wire.TypeUsers)
		if slices.Equal(u.Users, []string{"carol"}) {
			break
		}
		time.Sleep(10 * time.Millisecond) // bob's leave is on its way
		carol.send(wire.ClientRequest{Type: wire.TypeUsers, Room: "random", Ref: "u"})
	}
}

func TestHistory(t *testing.T) {
	t.Parallel()
	env := setupTest(t, Config{Rate: 1000, Burst: 1000}, shard.Config{History: 30})
	a := env.dial()
	a.join("r", "a")
	for i := 1; i <= 40; i++ {
		a.send(wire.ClientRequest{Type: wire.TypeMessage, Room: "r", Text: fmt.Sprint(i)})
		a.nextOf(wire.TypeMessage)
	}
	cases := []struct {
		name          string
		before        uint64
		limit         int
		first, last   uint64
		wantMessages  int
		wantNoHistory bool
	}{
		{name: "newest default", first: 11, last: 40, wantMessages: 30},
		{name: "newest 5", limit: 5, first: 36, last: 40, wantMessages: 5},
		{name: "before 20", before: 20, limit: 5, first: 15, last: 19, wantMessages: 5},
		{name: "before the ring", before: 13, limit: 10, first: 11, last: 12, wantMessages: 2},
		{name: "nothing before", before: 5, limit: 10, wantNoHistory: true},
	}
	for _, tc := range cases {
		a.send(wire.ClientRequest{Type: wire.TypeHistory, Room: "r", Before: tc.before, Limit: tc.limit, Ref: tc.name})
		h := a.nextOf(wire.TypeHistory)
		if h.Ref != tc.name {
			t.Fatalf("%s: ref %q", tc.name, h.Ref)
		}
		if tc.wantNoHistory {
			if len(h.Messages) != 0 {
				t.Fatalf("%s: got %d messages", tc.name, len(h.Messages))
			}
			continue
		}
		if len(h.Messages) != tc.wantMessages || h.Messages[0].Seq != tc.first || h.Messages[len(h.Messages)-1].Seq != tc.last {
			t.Fatalf("%s: %d messages, seq %d..%d", tc.name, len(h.Messages), h.Messages[0].Seq, h.Messages[len(h.Messages)-1].Seq)
		}
		for i, m := range h.Messages {
			if m.Type != wire.TypeMessage || m.Text != fmt.Sprint(m.Seq) || (i > 0 && m.Seq != h.Messages[i-1].Seq+1) {
				t.Fatalf("%s: message %d = %+v", tc.name, i, m)
			}
		}
	}
	// joined carries the newest 50 at most: here the 30 the room keeps.
	b := env.dial()
	if j := b.join("r", "b"); len(j.History) != 30 || j.History[29].Seq != 40 || j.Seq != 40 {
		t.Fatalf("joined history %d, seq %d", len(j.History), j.Seq)
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", wire.MaxText+1)
	cases := []struct {
		name  string
		frame string
		code  wire.Code
		ref   string
	}{
		{"not JSON", `hello`, wire.CodeBadRequest, ""},
		{"not an object", `["join"]`, wire.CodeBadRequest, ""},
		{"JSON null", `null`, wire.CodeBadRequest, ""},
		{"no type", `{"room":"r","ref":"a"}`, wire.CodeBadRequest, "a"},
		{"type not a string", `{"type":1,"ref":"a"}`, wire.CodeBadRequest, "a"},
		{"truncated", `{"type":"ping"`, wire.CodeBadRequest, ""},
		{"ref too long", `{"type":"ping","ref":"` + strings.Repeat("r", 65) + `"}`, wire.CodeBadRequest, ""},
		{"unknown type", `{"type":"dance","ref":"a"}`, wire.CodeUnknownType, "a"},
		{"room missing", `{"type":"join","user":"u","ref":"a"}`, wire.CodeBadRequest, "a"},
		{"room wrong type", `{"type":"join","room":5,"user":"u","ref":"a"}`, wire.CodeBadRequest, "a"},
		{"room with space", `{"type":"join","room":"my room","user":"u","ref":"a"}`, wire.CodeInvalidRoom, "a"},
		{"room starts with dot", `{"type":"join","room":".r","user":"u","ref":"a"}`, wire.CodeInvalidRoom, "a"},
		{"room too long", `{"type":"join","room":"` + strings.Repeat("r", 65) + `","user":"u","ref":"a"}`, wire.CodeInvalidRoom, "a"},
		{"user missing on first join", `{"type":"join","room":"r","ref":"a"}`, wire.CodeInvalidUser, "a"},
		{"user blank", `{"type":"join","room":"r","user":"   ","ref":"a"}`, wire.CodeInvalidUser, "a"},
		{"user control char", `{"type":"join","room":"r","user":"a\u0007b","ref":"a"}`, wire.CodeInvalidUser, "a"},
		{"user too long", `{"type":"join","room":"r","user":"` + strings.Repeat("é", 33) + `","ref":"a"}`, wire.CodeInvalidUser, "a"},
		{"user wrong type", `{"type":"join","room":"r","user":true,"ref":"a"}`, wire.CodeBadRequest, "a"},
		{"since wrong type", `{"type":"join","room":"r","user":"u","since":"x","ref":"a"}`, wire.CodeBadRequest, "a"},
		{"message before join", `{"type":"message","room":"r","text":"hi","ref":"a"}`, wire.CodeNotJoined, "a"},
		{"typing before join", `{"type":"typing","room":"r","on":true,"ref":"a"}`, wire.CodeNotJoined, "a"},
		{"users before join", `{"type":"users","room":"r","ref":"a"}`, wire.CodeNotJoined, "a"},
		{"history before join", `{"type":"history","room":"r","ref":"a"}`, wire.CodeNotJoined, "a"},
		{"leave before join", `{"type":"leave","room":"r","ref":"a"}`, wire.CodeNotJoined, "a"},
		{"text missing", `{"type":"message","room":"r","ref":"a"}`, wire.CodeBadRequest, "a"},
		{"text blank", `{"type":"message","room":"r","text":" \n\t ","ref":"a"}`, wire.CodeInvalidText, "a"},
		{"text empty", `{"type":"message","room":"r","text":"","ref":"a"}`, wire.CodeInvalidText, "a"},
		{"text too long", `{"type":"message","room":"r","text":"` + long + `","ref":"a"}`, wire.CodeInvalidText, "a"},
		{"typing without on", `{"type":"typing","room":"r","ref":"a"}`, wire.CodeBadRequest, "a"},
		{"typing on not bool", `{"type":"typing","room":"r","on":"yes","ref":"a"}`, wire.CodeBadRequest, "a"},
		{"history limit 0", `{"type":"history","room":"r","limit":0,"ref":"a"}`, wire.CodeBadRequest, "a"},
		{"history limit 101", `{"type":"history","room":"r","limit":101,"ref":"a"}`, wire.CodeBadRequest, "a"},
		{"history before negative", `{"type":"history","room":"r","before":-1,"ref":"a"}`, wire.CodeBadRequest, "a"},
	}
	env := setupTest(t, Config{AbuseBurst: 1000}, shard.Config{})
	c := env.dial()
	for _, tc := range cases {
		before := refusedCount(env.metrics, tc.code)
		c.sendRaw(tc.frame)
		ev := c.expectError(tc.code, tc.ref)
		if after := refusedCount(env.metrics, tc.code); after != before+1 {
			t.Errorf("%s: refused{code=%s} went from %v to %v", tc.name, tc.code, before, after)
		}
		t.Logf("%s: %s", tc.name, ev.Message)
	}

	// A binary frame is a protocol error, not a crash.
	ctx := context.Background()
	if err := c.conn.Write(ctx, websocket.MessageBinary, []byte(`{"type":"ping"}`)); err != nil {
		t.Fatal(err)
	}
	c.expectError(wire.CodeBadRequest, "")

	// The connection still works after all of that.
	c.join("r", "u")
	c.sendRaw(`{"type":"join","room":"r2","user":"other","ref":"a"}`)
	c.expectError(wire.CodeInvalidUser, "a")
}

func TestRefusals(t *testing.T) {
	t.Parallel()
	env := setupTest(t, Config{MaxRooms: 2, Rate: 1, Burst: 2}, shard.Config{})
	a, b := env.dial(), env.dial()
	a.join("r1", "alice")
	b.send(wire.ClientRequest{Type: wire.TypeJoin, Room: "r1", User: "alice", Ref: "t"})
	b.expectError(wire.CodeNameTaken, "t")
	b.join("r1", "bob") // the refused join changed nothing: bob may still pick another name

	a.join("r2", "")
	a.send(wire.ClientRequest{Type: wire.TypeJoin, Room: "r3", Ref: "l"})
	a.expectError(wire.CodeRoomLimit, "l")
	a.join("r2", "") // joining a room already joined is not a new room

	for i := range 2 {
		a.send(wire.ClientRequest{Type: wire.TypeMessage, Room: "r1", Text: "hi", Ref: fmt.Sprint(i)})
		if m := a.nextOf(wire.TypeMessage); m.Ref != fmt.Sprint(i) {
			t.Fatalf("echo ref %q", m.Ref)
		}
	}
	a.send(wire.ClientRequest{Type: wire.TypeMessage, Room: "r1", Text: "too fast", Ref: "x"})
	a.expectError(wire.CodeRateLimited, "x")
	// The refused message was not sent: bob sees the two and nothing else.
	for i := range 2 {
		if m := b.nextOf(wire.TypeMessage); m.Ref != fmt.Sprint(i) {
			t.Fatalf("bob got ref %q", m.Ref)
		}
	}
	b.expectNone(100 * time.Millisecond)
}

// TestRequestRateKeepsRef: a request refused by the bound on all of a connection's frames
// is answered with its own ref, like every refusal.
func TestRequestRateKeepsRef(t *testing.T) {
	t.Parallel()
	env := setupTest(t, Config{RequestRate: 0.001, RequestBurst: 2}, shard.Config{})
	c := env.dial()
	for i := range 2 {
		c.send(wire.ClientRequest{Type: wire.TypePing, Ref: fmt.Sprint("p", i)})
		c.nextOf(wire.TypePong)
	}
	c.send(wire.ClientRequest{Type: wire.TypePing, Ref: "p2"})
	c.expectError(wire.CodeRateLimited, "p2")
}

func TestTyping(t *testing.T) {
	t.Parallel()
	env := setupTest(t, Config{}, shard.Config{})
	a, b, c := env.dial(), env.dial(), env.dial()
	a.join("r", "a")
	b.join("r", "b")
	c.join("other", "c")
	a.nextOf(wire.TypePresence)

	a.send(wire.ClientRequest{Type: wire.TypeTyping, Room: "r", On: on(true)})
	if ev := b.next(); ev.Type != wire.TypeTyping || ev.User != "a" || !ev.On || ev.Room != "r" {
		t.Fatalf("b got %+v", ev)
	}
	// Sending a message ends typing for the others, before the message.
	a.send(wire.ClientRequest{Type: wire.TypeMessage, Room: "r", Text: "done", Ref: "m"})
	if ev := b.next(); ev.Type != wire.TypeTyping || ev.On {
		t.Fatalf("b got %+v, want typing off", ev)
	}
	if ev := b.next(); ev.Type != wire.TypeMessage {
		t.Fatalf("b got %+v, want the message", ev)
	}
	// The typist never hears its own typing: its next object is the echo.
	if ev := a.next(); ev.Type != wire.TypeMessage || ev.Ref != "m" {
		t.Fatalf("a got %+v, want its echo", ev)
	}

	// Typing off without typing on is not passed on; a disconnect ends typing.
	b.send(wire.ClientRequest{Type: wire.TypeTyping, Room: "r", On: on(false)})
	b.send(wire.ClientRequest{Type: wire.TypeTyping, Room: "r", On: on(true)})
	if ev := a.next(); ev.Type != wire.TypeTyping || ev.User != "b" || !ev.On {
		t.Fatalf("a got %+v", ev)
	}
	_ = b.conn.CloseNow()
	if ev := a.next(); ev.Type != wire.TypeTyping || ev.User != "b" || ev.On {
		t.Fatalf("a got %+v, want b's typing off", ev)
	}
	if ev := a.next(); ev.Type != wire.TypePresence || ev.Event != wire.PresenceLeave {
		t.Fatalf("a got %+v, want b's presence leave", ev)
	}
	c.expectNone(100 * time.Millisecond) // isolation: nothing of room r reached room other
}

func TestIsolation(t *testing.T) {
	t.Parallel()
	env := setupTest(t, Config{Rate: 1000, Burst: 1000}, shard.Config{})
	const rooms = 8
	clients := make([]*client, rooms)
	for i := range clients {
		clients[i] = env.dial()
		clients[i].join(fmt.Sprintf("room-%d", i), fmt.Sprintf("u%d", i))
	}
	for i, c := range clients {
		for n := range 5 {
			c.send(wire.ClientRequest{Type: wire.TypeMessage, Room: fmt.Sprintf("room-%d", i), Text: fmt.Sprintf("%d/%d", i, n)})
		}
	}
	for i, c := range clients {
		for n := range 5 {
			m := c.next()
			if m.Type != wire.TypeMessage || m.Room != fmt.Sprintf("room-%d", i) || m.Text != fmt.Sprintf("%d/%d", i, n) {
				t.Fatalf("client %d got %+v", i, m)
			}
		}
		c.expectNone(20 * time.Millisecond)
	}
}

func TestOrder(t *testing.T) {
	t.Parallel()
	const senders, each = 20, 50
	env := setupTest(t, Config{Rate: 10000, Burst: 10000}, shard.Config{})
	clients := make([]*client, senders)
	for i := range clients {
		clients[i] = env.dial()
		clients[i].join("busy", fmt.Sprintf("s%d", i))
	}
	start := make(chan struct{})
	done := make(chan struct{})
	for i, c := range clients {
		go func() {
			defer func() { done <- struct{}{} }()
			<-start
			for n := range each {
				b := fmt.Sprintf(`{"type":"message","room":"busy","text":"%d/%d"}`, i, n)
				if err := c.conn.Write(context.Background(), websocket.MessageText, []byte(b)); err != nil {
					t.Errorf("write: %v", err)
					return
				}
			}
		}()
	}
	close(start)
	for range clients {
		<-done
	}
	var first []string
	for i, c := range clients {
		var order []string
		next := map[int]int{}
		for len(order) < senders*each {
			ev := c.next()
			if ev.Type != wire.TypeMessage {
				continue
			}
			if ev.Seq != uint64(len(order)+1) {
				t.Fatalf("client %d: seq %d after %d messages", i, ev.Seq, len(order))
			}
			var s, n int
			fmt.Sscanf(ev.Text, "%d/%d", &s, &n)
			if n != next[s] {
				t.Fatalf("client %d: sender %d's message %d arrived when %d was next", i, s, n, next[s])
			}
			next[s]++
			order = append(order, ev.Text)
		}
		if first == nil {
			first = order
		} else if !slices.Equal(order, first) {
			t.Fatalf("client %d saw another order than client 0", i)
		}
	}
}

func TestRecovery(t *testing.T) {
	t.Parallel()
	env := setupTest(t, Config{Rate: 1000, Burst: 1000}, shard.Config{History: 10})
	sender := env.dial()
	sender.join("r", "sender")
	say := func(n int) {
		for range n {
			sender.send(wire.ClientRequest{Type: wire.TypeMessage, Room: "r", Text: "m"})
			sender.nextOf(wire.TypeMessage)
		}
	}
	// gone waits until the server has taken the last "reader" connection out of the room:
	// until then, a new connection may not take the name.
	gone := func() {
		waitFor(t, func() bool {
			sender.send(wire.ClientRequest{Type: wire.TypeUsers, Room: "r"})
			return !slices.Contains(sender.nextOf(wire.TypeUsers).Users, "reader")
		})
	}
	reader := env.dial()
	j := reader.join("r", "reader")
	say(3)
	var last wire.Event
	for range 3 {
		last = reader.nextOf(wire.TypeMessage)
	}
	_ = reader.conn.CloseNow()
	gone()
	say(4) // seq 4..7, missed

	cases := []struct {
		name      string
		since     wire.Since
		recovered bool
		first     uint64
		n         int
	}{
		{"what was missed", wire.Since{Epoch: j.Epoch, Seq: last.Seq}, true, 4, 4},
		{"nothing missed", wire.Since{Epoch: j.Epoch, Seq: 7}, true, 0, 0},
		{"another epoch", wire.Since{Epoch: "old", Seq: last.Seq}, false, 1, 7},
		{"seq from the future", wire.Since{Epoch: j.Epoch, Seq: 99}, false, 1, 7},
	}
	for _, tc := range cases {
		c := env.dial()
		c.send(wire.ClientRequest{Type: wire.TypeJoin, Room: "r", User: "reader", Since: &tc.since})
		got := c.nextOf(wire.TypeJoined)
		if got.Recovered != tc.recovered || len(got.History) != tc.n || got.Seq != 7 {
			t.Fatalf("%s: recovered %v with %d messages, seq %d", tc.name, got.Recovered, len(got.History), got.Seq)
		}
		for i, m := range got.History {
			if m.Seq != tc.first+uint64(i) {
				t.Fatalf("%s: history[%d].seq = %d", tc.name, i, m.Seq)
			}
		}
		_ = c.conn.Close(websocket.StatusNormalClosure, "")
		c.closeErr()
		gone()
	}

	say(10) // seq 8..17: the ring of 10 no longer holds 5..7
	c := env.dial()
	c.send(wire.ClientRequest{Type: wire.TypeJoin, Room: "r", User: "reader", Since: &wire.Since{Epoch: j.Epoch, Seq: 4}})
	if got := c.nextOf(wire.TypeJoined); got.Recovered || len(got.History) != 10 || got.History[0].Seq != 8 {
		t.Fatalf("past the ring: recovered %v with %d messages", got.Recovered, len(got.History))
	}
}

func TestSlowConsumer(t *testing.T) {
	t.Parallel()
	const queue = 64
	// A write stuck for WriteTimeout is cut before the queue overflows, on a machine slow
	// enough (the race detector, a browser test alongside): give the overflow all the time.
	env := setupTest(t, Config{Rate: 1e6, Burst: 1e6, Queue: queue, WriteTimeout: 5 * time.Minute, PingInterval: 5 * time.Minute}, shard.Config{})
	sender, fast := env.dial(), env.dial()
	sender.join("r", "sender")
	fast.join("r", "fast")
	slow := env.dialSilentSmall()
	slow.send(wire.ClientRequest{Type: wire.TypeJoin, Room: "r", User: "slow"})
	neighbour := env.dial() // in another room: the shards must go on serving it
	neighbour.join("calm", "n")

	text := strings.Repeat("x", wire.MaxText)
	sent := 0
	deadline := time.Now().Add(2 * time.Minute)
	for !env.overflowed() {
		if time.Now().After(deadline) {
			t.Fatal("the silent member never overflowed its queue")
		}
		// Half a queue at a time: the fast member, which reads all along, never has more
		// than that waiting for it, however slow this machine is.
		for range queue / 2 {
			sender.send(wire.ClientRequest{Type: wire.TypeMessage, Room: "r", Text: text})
			sent++
		}
		for range queue / 2 {
			fast.nextOf(wire.TypeMessage)
		}
	}
	// The others are not held up: the fast member got every message, in order, and the
	// neighbour's room answers at once.
	neighbour.send(wire.ClientRequest{Type: wire.TypeMessage, Room: "calm", Text: "hi"})
	neighbour.nextOf(wire.TypeMessage)
	for range 10 {
		sender.send(wire.ClientRequest{Type: wire.TypeMessage, Room: "r", Text: "after"})
		sent++
		if m := fast.nextOf(wire.TypeMessage); m.Seq != uint64(sent) {
			t.Fatalf("fast member got seq %d, want %d", m.Seq, sent)
		}
	}

	slow.startReading()
	slow.expectClose(wire.CloseSlowConsumer)
	if n := testutil.ToFloat64(env.metrics.slowConsumers); n != 1 {
		t.Fatalf("slow consumers = %v", n)
	}
	// The slow member is gone from the room.
	sender.nextOf(wire.TypePresence)
	t.Logf("sent %d messages of %d bytes before the queue of %d overflowed", sent, len(text), queue)
}

// overflowed reports whether any session's outbox overflowed. The counter covers a session
// already closed for it, gone from the server on a slow machine before the test looked.
func (e *testEnv) overflowed() bool {
	if testutil.ToFloat64(e.metrics.slowConsumers) > 0 {
		return true
	}
	e.srv.mu.Lock()
	defer e.srv.mu.Unlock()
	for s := range e.srv.sessions {
		s.out.mu.Lock()
		o := s.out.overflowed
		s.out.mu.Unlock()
		if o {
			return true
		}
	}
	return false
}

func TestCloseCodes(t *testing.T) {
	t.Parallel()
	t.Run("1009 frame too big", func(t *testing.T) {
		t.Parallel()
		env := setupTest(t, Config{}, shard.Config{})
		c := env.dial()
		c.sendRaw(`{"type":"ping","ref":"` + strings.Repeat("x", wire.MaxFrame) + `"}`)
		c.expectClose(wire.CloseTooBig)
		waitFor(t, func() bool { return closedCount(env.metrics, wire.CloseTooBig) == 1 })
	})
	t.Run("1008 abuse", func(t *testing.T) {
		t.Parallel()
		env := setupTest(t, Config{AbuseBurst: 5, AbuseRate: 0.001}, shard.Config{})
		c := env.dial()
		for range 6 {
			c.sendRaw(`nonsense`)
		}
		for range 6 {
			c.expectError(wire.CodeBadRequest, "")
		}
		c.expectClose(wire.ClosePolicy)
		if n := closedCount(env.metrics, wire.ClosePolicy); n != 1 {
			t.Fatalf("closes{1008} = %v", n)
		}
	})
	t.Run("1011 internal error", func(t *testing.T) {
		t.Parallel()
		env := setupTest(t, Config{}, shard.Config{})
		// A broken member panics when the shard sends it joined; by then it holds a seat,
		// so the next join in its room panics too, while greeting it.
		err := env.hub.Join(context.Background(), shard.Request{Member: panicMember{}, Room: "r", User: "bad", Reply: make(chan error, 1)})
		if !errors.Is(err, shard.ErrInternal) {
			t.Fatalf("join of a panicking member: %v, want ErrInternal", err)
		}
		c := env.dial()
		c.send(wire.ClientRequest{Type: wire.TypeJoin, Room: "r", User: "real"})
		c.expectClose(wire.CloseInternal)
		// The shards survived: rooms on every shard still work.
		d := env.dial()
		for i := range 16 {
			d.join(fmt.Sprintf("room%d", i), "d")
			d.send(wire.ClientRequest{Type: wire.TypeMessage, Room: fmt.Sprintf("room%d", i), Text: "ok"})
			d.nextOf(wire.TypeMessage)
		}
		if n := closedCount(env.metrics, wire.CloseInternal); n != 1 {
			t.Fatalf("closes{1011} = %v", n)
		}
	})
	t.Run("1012 shutdown", func(t *testing.T) {
		t.Parallel()
		env := setupTest(t, Config{}, shard.Config{})
		c := env.dial()
		c.join("r", "u")
		c.send(wire.ClientRequest{Type: wire.TypeMessage, Room: "r", Text: "last words", Ref: "l"})
		c.nextOf(wire.TypeMessage)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := env.srv.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		c.expectClose(wire.CloseRestart)
		resp, err := http.Get(env.http.URL + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("/readyz after shutdown = %d", resp.StatusCode)
		}
		_, resp, err = websocket.Dial(context.Background(), env.url, nil)
		if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("dial while draining: %v %v", err, resp)
		}
	})
	t.Run("shutdown cuts a client that ignores the close", func(t *testing.T) {
		t.Parallel()
		env := setupTest(t, Config{}, shard.Config{})
		// A raw client: it upgrades, then never reads and never answers the close handshake.
		raw, err := net.Dial("tcp", strings.TrimPrefix(env.http.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		if _, err := io.WriteString(raw, upgradeRequest("x")); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(raw)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("upgrade: %v %v", resp, err)
		}
		waitFor(t, func() bool { return env.sessions() == 1 })
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		if err := env.srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("shutdown with a silent client: %v, want the drain deadline", err)
		}
		if n := env.sessions(); n != 0 {
			t.Fatalf("%d sessions left after shutdown", n)
		}
		_ = raw.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.Copy(io.Discard, br); err != nil {
			t.Fatalf("the server did not close the connection: %v", err)
		}
	})
	t.Run("1000 normal", func(t *testing.T) {
		t.Parallel()
		env := setupTest(t, Config{}, shard.Config{})
		c, other := env.dial(), env.dial()
		c.join("r", "leaver")
		other.join("r", "stayer")
		if err := c.conn.Close(websocket.StatusNormalClosure, "bye"); err != nil {
			t.Fatalf("normal close handshake: %v", err)
		}
		// The server answered the handshake and took the member out of its room.
		if p := other.nextOf(wire.TypePresence); p.User != "leaver" || p.Event != wire.PresenceLeave {
			t.Fatalf("after a normal close: %+v, want leaver's leave", p)
		}
	})
}

// panicMember is a broken Member: the shard must survive it.
type panicMember struct{}

func (panicMember) Send([]byte) bool            { panic("broken member") }
func (panicMember) SendBestEffort([]byte) bool  { panic("broken member") }
func (panicMember) SendLater([]byte) bool       { panic("broken member") }
func (panicMember) Flush()                      {}
func (panicMember) Kick(wire.CloseCode, string) {}

// sessions counts the server's live sessions.
func (e *testEnv) sessions() int {
	e.srv.mu.Lock()
	defer e.srv.mu.Unlock()
	return len(e.srv.sessions)
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestAnswerGoesBehindPresence: the session's own answers (a pong here) wake the writer for
// presence that waits for the shard's late flush, which comes first; with a PresenceDelay of
// an hour, nothing else would write it.
func TestAnswerGoesBehindPresence(t *testing.T) {
	t.Parallel()
	env := setupTest(t, Config{}, shard.Config{PresenceDelay: time.Hour})
	alice, bob := env.dial(), env.dial()
	alice.join("r", "alice")
	waitWriterRetired(t, env.sessionOf(t, "alice"))
	bob.join("r", "bob")
	alice.send(wire.ClientRequest{Type: wire.TypePing, Ref: "p"})
	if p := alice.next(); p.Type != wire.TypePresence || p.User != "bob" {
		t.Fatalf("first after the ping: %+v, want bob's presence", p)
	}
	if p := alice.next(); p.Type != wire.TypePong || p.Ref != "p" {
		t.Fatalf("then %+v, want the pong", p)
	}
}

// TestMessageGoesBehindPresenceOfAnotherShard: a member's presence waiting for one shard's
// late flush does not hold a message that another shard sends it: its outbox wakes the
// writer for both, the presence first. With a PresenceDelay of an hour, nothing else would.
func TestMessageGoesBehindPresenceOfAnotherShard(t *testing.T) {
	t.Parallel()
	env := setupTest(t, Config{}, shard.Config{PresenceDelay: time.Hour})
	r1, r2 := "r0", ""
	for i := 1; r2 == ""; i++ {
		if room := fmt.Sprint("r", i); env.hub.Shard(room) != env.hub.Shard(r1) {
			r2 = room
		}
	}
	alice, bob, carol := env.dial(), env.dial(), env.dial()
	carol.join(r2, "carol")
	alice.join(r1, "alice")
	alice.join(r2, "alice")
	waitWriterRetired(t, env.sessionOf(t, "alice"))
	bob.join(r1, "bob") // presence for alice, on r1's shard: waits
	carol.send(wire.ClientRequest{Type: wire.TypeMessage, Room: r2, Text: "hi"})
	if p := alice.next(); p.Type != wire.TypePresence || p.User != "bob" {
		t.Fatalf("first: %+v, want bob's presence", p)
	}
	if m := alice.next(); m.Type != wire.TypeMessage || m.Text != "hi" {
		t.Fatalf("then %+v, want carol's message", m)
	}
}
