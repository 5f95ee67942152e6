package transport

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/shardchat/shardchat/shard"
	"github.com/shardchat/shardchat/transport/sio"
	"github.com/shardchat/shardchat/transport/wire"
)

// sioClient speaks Engine.IO 4 and Socket.IO 5 frames over a real WebSocket.
type sioClient struct {
	t      testing.TB
	conn   *websocket.Conn
	frames chan string
	done   chan error
	pong   bool // answer pings
}

func (e *testEnv) sioURL(query string) string {
	return strings.TrimSuffix(e.url, "/ws") + "/socket.io/?EIO=4&transport=websocket" + query
}

func (e *testEnv) dialSIO(pong bool) *sioClient {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, e.sioURL(""), nil)
	if err != nil {
		e.t.Fatalf("dial socket.io: %v", err)
	}
	c := &sioClient{t: e.t, conn: conn, frames: make(chan string, 10000), done: make(chan error, 1), pong: pong}
	go func() {
		for {
			_, b, err := conn.Read(context.Background())
			if err != nil {
				c.done <- err
				close(c.frames)
				return
			}
			if c.pong && string(b) == "2" {
				_ = conn.Write(context.Background(), websocket.MessageText, []byte("3"))
				continue
			}
			c.frames <- string(b)
		}
	}()
	e.t.Cleanup(func() {
		_ = conn.CloseNow()
		for range c.frames {
		}
	})
	open := c.next()
	var o sio.Open
	if !strings.HasPrefix(open, "0") || json.Unmarshal([]byte(open[1:]), &o) != nil || o.SID == "" || len(o.Upgrades) != 0 || o.PingTimeout == 0 || o.MaxPayload != wire.MaxFrame {
		e.t.Fatalf("open packet %q", open)
	}
	return c
}

func (c *sioClient) send(frame string) {
	c.t.Helper()
	if err := c.conn.Write(context.Background(), websocket.MessageText, []byte(frame)); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

func (c *sioClient) next() string {
	c.t.Helper()
	select {
	case f, ok := <-c.frames:
		if !ok {
			c.t.Fatalf("connection ended: %v", <-c.done)
		}
		return f
	case <-time.After(10 * time.Second):
		c.t.Fatal("no frame within 10s")
	}
	return ""
}

// nextWith returns the next frame that starts with prefix, skipping others.
func (c *sioClient) nextWith(prefix string) string {
	c.t.Helper()
	for {
		if f := c.next(); strings.HasPrefix(f, prefix) {
			return f
		}
	}
}

// ack waits for the acknowledgement of id and decodes its first argument.
func (c *sioClient) ack(id string, v any) {
	c.t.Helper()
	f := c.nextWith("43" + id + "[")
	var args []json.RawMessage
	if err := json.Unmarshal([]byte(strings.TrimPrefix(f, "43"+id)), &args); err != nil || len(args) != 1 {
		c.t.Fatalf("ack %q: %v", f, err)
	}
	if err := json.Unmarshal(args[0], v); err != nil {
		c.t.Fatal(err)
	}
}

// event waits for event name and decodes its argument.
func (c *sioClient) event(name string, v any) {
	c.t.Helper()
	f := c.nextWith(`42["` + name + `",`)
	var args []json.RawMessage
	if err := json.Unmarshal([]byte(f[2:]), &args); err != nil || len(args) != 2 {
		c.t.Fatalf("event %q: %v", f, err)
	}
	if err := json.Unmarshal(args[1], v); err != nil {
		c.t.Fatal(err)
	}
}

func (c *sioClient) connect() {
	c.t.Helper()
	c.send("40")
	if f := c.next(); !strings.HasPrefix(f, `40{"sid":`) {
		c.t.Fatalf("connect answered %q", f)
	}
}

type joinAck struct {
	OK      bool         `json:"ok"`
	Code    wire.Code    `json:"code"`
	Message string       `json:"message"`
	Users   []string     `json:"users"`
	History []sioMessage `json:"history"`
	Seq     uint64       `json:"seq"`
}

func TestSocketIOChat(t *testing.T) {
	t.Parallel()
	env := setupTest(t, Config{}, shard.Config{})
	native := env.dial()
	native.join("lobby", "nat")
	bob := env.dialSIO(true)
	bob.connect()

	bob.send(`421["join",{"username":"bob","room":"lobby"}]`)
	var j joinAck
	bob.ack("1", &j)
	if !j.OK || strings.Join(j.Users, ",") != "bob,nat" {
		t.Fatalf("join ack %+v", j)
	}
	var users struct {
		Room  string   `json:"room"`
		Users []string `json:"users"`
	}
	bob.event("users", &users)
	if p := native.nextOf(wire.TypePresence); p.User != "bob" || p.Event != wire.PresenceJoin {
		t.Fatalf("native client got %+v", p)
	}

	// socket.io to native, with an ack carrying the seq.
	bob.send(`422["message","hello from socket.io"]`)
	var m struct {
		OK  bool   `json:"ok"`
		Seq uint64 `json:"seq"`
	}
	bob.ack("2", &m)
	if !m.OK || m.Seq != 1 {
		t.Fatalf("message ack %+v", m)
	}
	if got := native.nextOf(wire.TypeMessage); got.Text != "hello from socket.io" || got.User != "bob" || got.Seq != 1 {
		t.Fatalf("native got %+v", got)
	}

	// native to socket.io.
	native.send(wire.ClientRequest{Type: wire.TypeMessage, Room: "lobby", Text: "hi bob"})
	var msg sioMessage
	for msg.Text != "hi bob" {
		bob.event("message", &msg)
	}
	if msg.Username != "nat" || msg.Room != "lobby" || msg.Seq != 2 || msg.Time == 0 {
		t.Fatalf("socket.io got %+v", msg)
	}

	// Typing both ways.
	native.send(wire.ClientRequest{Type: wire.TypeTyping, Room: "lobby", On: on(true)})
	var typing struct {
		Room     string `json:"room"`
		Username string `json:"username"`
		IsTyping bool   `json:"isTyping"`
	}
	bob.event("typing", &typing)
	if typing.Username != "nat" || !typing.IsTyping {
		t.Fatalf("typing %+v", typing)
	}
	bob.send(`42["typing",true]`)
	if ev := native.nextOf(wire.TypeTyping); ev.User != "bob" || !ev.On {
		t.Fatalf("native typing %+v", ev)
	}

	// Presence changes come with the whole list.
	carol := env.dial()
	carol.join("lobby", "carol")
	var joined struct {
		Room     string `json:"room"`
		Username string `json:"username"`
	}
	bob.event("joined", &joined)
	bob.event("users", &users)
	if joined.Username != "carol" || strings.Join(users.Users, ",") != "bob,carol,nat" {
		t.Fatalf("joined %+v, users %+v", joined, users)
	}

	// Refusals: an ack with the error, or an error event without one.
	bob.send(`423["join",{"username":"bob","room":"bad room"}]`)
	bob.ack("3", &j)
	if j.OK || j.Code != wire.CodeInvalidRoom || j.Message == "" {
		t.Fatalf("invalid room ack %+v", j)
	}
	bob.send(`42["dance"]`)
	var e struct {
		Code wire.Code `json:"code"`
	}
	bob.event("error", &e)
	if e.Code != wire.CodeUnknownType {
		t.Fatalf("error event %+v", e)
	}
	if n := testutil.ToFloat64(env.metrics.refused.WithLabelValues(string(wire.CodeInvalidRoom), "socketio")); n != 1 {
		t.Fatalf("refused{invalid_room, socketio} = %v", n)
	}
	if n := testutil.ToFloat64(env.metrics.connections.WithLabelValues("socketio")); n != 1 {
		t.Fatalf("connections{socketio} = %v", n)
	}

	bob.send(`424["leave",{"room":"lobby"}]`)
	var ok struct{ OK bool }
	bob.ack("4", &ok)
	for {
		if p := native.nextOf(wire.TypePresence); p.User == "bob" {
			if p.Event != wire.PresenceLeave {
				t.Fatalf("native got %+v", p)
			}
			break
		}
	}
}

func TestSocketIORefusals(t *testing.T) {
	t.Parallel()
	env := setupTest(t, Config{}, shard.Config{})
	base := strings.TrimSuffix(env.http.URL, "/") + "/socket.io/"
	for _, tc := range []struct {
		query string
		code  int
	}{
		{"?EIO=4&transport=polling", 0},
		{"?EIO=3&transport=websocket", 5},
		{"?EIO=4&transport=websocket&sid=abc", 1},
		{"?EIO=4&transport=websocket", 3}, // a plain GET, not an upgrade
	} {
		resp, err := http.Get(base + tc.query)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var e sio.HandshakeError
		if resp.StatusCode != http.StatusBadRequest || json.Unmarshal(body, &e) != nil || e.Code != tc.code || e.Message == "" {
			t.Errorf("%s: %d %s, want 400 with code %d", tc.query, resp.StatusCode, body, tc.code)
		}
	}

	c := env.dialSIO(true)
	c.send(`42["join",{"username":"x","room":"r"}]`) // before CONNECT
	if f := c.next(); !strings.HasPrefix(f, "44") {
		t.Fatalf("an event before CONNECT: %q", f)
	}
	c.send("40/admin,")
	if f := c.next(); !strings.HasPrefix(f, `44/admin,{"message":`) {
		t.Fatalf("another namespace: %q", f)
	}
	c.connect()
	c.send(`451-["message",{"_placeholder":true,"num":0}]`)
	var e struct {
		Code    wire.Code `json:"code"`
		Message string    `json:"message"`
	}
	c.event("error", &e)
	if e.Code != wire.CodeBadRequest || !strings.Contains(e.Message, "binary") {
		t.Fatalf("binary packet: %+v", e)
	}
	c.send(`42["message","nobody hears"]`) // no room joined yet
	c.event("error", &e)
	if e.Code != wire.CodeNotJoined {
		t.Fatalf("message before join: %+v", e)
	}
	// The session survived all of it.
	c.send(`427["join",{"username":"x","room":"r"}]`)
	var j joinAck
	c.ack("7", &j)
	if !j.OK {
		t.Fatalf("join after refusals: %+v", j)
	}
}

func TestSocketIOPingTimeout(t *testing.T) {
	t.Parallel()
	// A timeout of a second: the clients that answer must not miss it on a loaded machine.
	env := setupTest(t, Config{PingInterval: 100 * time.Millisecond, PingTimeout: time.Second}, shard.Config{})
	alive := env.dialSIO(true)
	alive.connect()
	silent := env.dialSIO(false) // gets pings, never answers
	silent.connect()
	chatty := env.dialSIO(false) // never answers a ping either, but talks
	chatty.connect()
	chatty.send(`428["join",{"username":"c","room":"c"}]`)
	var first joinAck
	chatty.ack("8", &first)
	if !first.OK {
		t.Fatalf("the client that talks, joining: %+v", first)
	}
	stopTalking := make(chan struct{})
	talked := make(chan struct{})
	go func() {
		defer close(talked)
		for {
			select {
			case <-stopTalking:
				return
			case <-time.After(50 * time.Millisecond):
			}
			frame := []byte(`42["typing",true]`) // in its room, alone: a sign of life, nothing more
			if chatty.conn.Write(context.Background(), websocket.MessageText, frame) != nil {
				return
			}
		}
	}()
	start := time.Now()
	for {
		if _, ok := <-silent.frames; !ok {
			break
		}
	}
	took := time.Since(start)
	time.Sleep(1200 * time.Millisecond) // past a timeout of chatty's own pings too
	close(stopTalking)
	<-talked
	// Any packet answers a ping, as a pong would: the client that talks stays.
	chatty.send(`429["join",{"username":"c","room":"r"}]`)
	var cj joinAck
	chatty.ack("9", &cj)
	if !cj.OK {
		t.Fatalf("the client that talks: %+v", cj)
	}
	if took < time.Second {
		t.Fatalf("closed after %s, before pingTimeout", took)
	}
	// Counted as a ping timeout, as on /ws, and not as a close for abuse: the client is gone.
	if n := testutil.ToFloat64(env.metrics.pingTimeouts.WithLabelValues("socketio")); n != 1 {
		t.Fatalf("ping_timeouts{socketio} = %v, want 1", n)
	}
	if n := testutil.ToFloat64(env.metrics.closes.WithLabelValues("1008", "socketio")); n != 0 {
		t.Fatalf("closes{1008, socketio} = %v, want 0", n)
	}
	// The client that answers stays.
	alive.send(`421["join",{"username":"a","room":"r"}]`)
	var j joinAck
	alive.ack("1", &j)
	if !j.OK {
		t.Fatalf("the answering client: %+v", j)
	}
}

func TestSocketIOAuth(t *testing.T) {
	t.Parallel()
	env := setupTest(t, Config{Auth: verifier(t)}, shard.Config{})
	c := env.dialSIO(true) // no token at the upgrade: it may come with CONNECT
	c.send(`40{"token":"not a token"}`)
	if f := c.next(); !strings.HasPrefix(f, `44{"message":`) {
		t.Fatalf("a bad token: %q, want CONNECT_ERROR", f)
	}
	if n := testutil.ToFloat64(env.metrics.upgradesRefused.WithLabelValues("token_malformed")); n != 1 {
		t.Fatalf("refused{token_malformed} = %v", n)
	}
	c.send(`40{"token":"` + token(t, "alice", []string{"team-*"}, time.Hour) + `"}`)
	if f := c.next(); !strings.HasPrefix(f, `40{"sid":`) {
		t.Fatalf("a good token: %q", f)
	}
	c.send(`421["join",{"room":"team-a"}]`)
	var j joinAck
	c.ack("1", &j)
	if !j.OK || strings.Join(j.Users, ",") != "alice" {
		t.Fatalf("join with the token's name: %+v", j)
	}
	c.send(`422["join",{"room":"general"}]`)
	c.ack("2", &j)
	if j.OK || j.Code != wire.CodeUnauthorized {
		t.Fatalf("a room outside the token: %+v", j)
	}
}

// TestDerivedOncePerObject: a message fanned out to many Socket.IO members is converted once.
func TestDerivedOncePerObject(t *testing.T) {
	t.Parallel()
	c := newDerivedCache()
	converted := 0
	convert := func(obj []byte) (*derived, error) {
		converted++
		return convertBroadcast(obj)
	}
	msg := wire.AppendMessage(nil, &wire.Message{Room: "r", Seq: 7, User: "u", Text: "hi", TS: 1})
	first, err := c.get(msg, convert)
	if err != nil {
		t.Fatal(err)
	}
	for range 1000 {
		d, _ := c.get(msg, convert)
		if d != first {
			t.Fatal("a second member got another conversion")
		}
	}
	if converted != 1 || string(first.frame) != `42["message",{"room":"r","seq":7,"username":"u","text":"hi","time":1}]` {
		t.Fatalf("converted %d times into %s", converted, first.frame)
	}
	// An equal object elsewhere in memory is another object (another message).
	copyOf := append([]byte(nil), msg...)
	if d, _ := c.get(copyOf, convert); d == first || converted != 2 {
		t.Fatal("a different object was served from the cache")
	}
}

// TestDerivedCacheUnused: until a Socket.IO member converts something, the cache is one
// allocation (of 33 KB), not its stripes' maps too (157 KB more); not parallel, for
// AllocsPerRun.
func TestDerivedCacheUnused(t *testing.T) {
	var c *derivedCache // kept, so that the cache is made on the heap as a server's is
	if allocs := testing.AllocsPerRun(10, func() { c = newDerivedCache() }); allocs != 1 || c == nil {
		t.Errorf("an unused cache costs %v allocations, want 1", allocs)
	}
}

// TestPresenceUsersOncePerEvent: the users event that follows a join or a leave is worked
// out and encoded once for all the Socket.IO members of the room, and no member's list is
// changed under another.
func TestPresenceUsersOncePerEvent(t *testing.T) {
	t.Parallel()
	cache := newDerivedCache()
	start := []string{"alice", "carol"}
	members := make([]*socketIO, 100)
	for i := range members {
		members[i] = newSocketIO(fmt.Sprint("sid", i), cache)
		members[i].rooms["r"] = start
	}
	steps := []struct {
		user string
		join bool
		want []string
	}{
		{"bob", true, []string{"alice", "bob", "carol"}},
		{"alice", false, []string{"bob", "carol"}},
		{"zoe", false, []string{"bob", "carol"}}, // not there: no change
	}
	for _, st := range steps {
		event := wire.PresenceLeave
		if st.join {
			event = wire.PresenceJoin
		}
		d, err := cache.get(wire.AppendPresence(nil, "r", st.user, event), convertBroadcast)
		if err != nil {
			t.Fatal(err)
		}
		var first []byte
		for i, m := range members {
			frame, ok := m.usersAfter(d)
			if !ok {
				t.Fatalf("member %d: not in the room", i)
			}
			if i == 0 {
				first = frame
			} else if &frame[0] != &first[0] {
				t.Fatalf("%s %v: member %d got a users event of its own", st.user, st.join, i)
			}
			if got := m.rooms["r"]; !slices.Equal(got, st.want) {
				t.Fatalf("%s %v: member %d has %v, want %v", st.user, st.join, i, got, st.want)
			}
		}
		want := usersEvent("r", st.want)
		if string(first) != string(want) {
			t.Fatalf("users event %s, want %s", first, want)
		}
	}
	if !slices.Equal(start, []string{"alice", "carol"}) {
		t.Fatalf("the first list was changed in place: %v", start)
	}
	// A member that left the room gets no users event.
	delete(members[0].rooms, "r")
	d, _ := cache.get(wire.AppendPresence(nil, "r", "dan", wire.PresenceJoin), convertBroadcast)
	if _, ok := members[0].usersAfter(d); ok {
		t.Fatal("a member that left the room got its users")
	}
}

// BenchmarkSocketIOPresence: one join or leave fanned out to a room of Socket.IO members,
// each of which gets the event and the room's new users list.
func BenchmarkSocketIOPresence(b *testing.B) {
	for _, members := range []int{10, 100, 1000} {
		b.Run(fmt.Sprint("members=", members), func(b *testing.B) {
			env := setupTest(b, Config{Queue: 1 << 30}, shard.Config{})
			users := make([]string, members)
			for i := range users {
				users[i] = fmt.Sprintf("user-%05d", i)
			}
			sessions := make([]*session, members)
			for i := range sessions {
				p := newSocketIO("sid", env.srv.derived)
				p.rooms["r"] = users
				sessions[i] = newSession(env.srv, uint64(i), nil, "test", p)
			}
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				event := wire.PresenceJoin
				if i%2 == 1 {
					event = wire.PresenceLeave
				}
				obj := wire.AppendPresence(nil, "r", "zzz-newcomer", event)
				for _, s := range sessions { // one fan-out of one presence object
					s.Send(obj)
				}
				for _, s := range sessions {
					s.out.take(nil)
				}
			}
		})
	}
}
