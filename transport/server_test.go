package transport

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/shardchat/shardchat/shard"
	"github.com/shardchat/shardchat/transport/wire"
)

func TestOrigin(t *testing.T) {
	t.Parallel()
	env := setupTest(t, Config{AllowedOrigins: []string{"*.example.com", "https://app.test"}}, shard.Config{})
	host := env.http.Listener.Addr().String()
	cases := []struct {
		origin string
		ok     bool
	}{
		{"", true},
		{"http://" + host, true},
		{"https://chat.example.com", true},
		{"https://app.test", true},
		{"http://app.test", false},
		{"https://evil.test", false},
		{"https://example.com.evil.test", false},
		{"not a url", false},
	}
	for _, tc := range cases {
		before := testutil.ToFloat64(env.metrics.upgradesRefused.WithLabelValues(refuseOrigin))
		h := http.Header{}
		if tc.origin != "" {
			h.Set("Origin", tc.origin)
		}
		conn, resp, err := websocket.Dial(context.Background(), env.url, &websocket.DialOptions{HTTPHeader: h})
		if tc.ok {
			if err != nil {
				t.Errorf("origin %q refused: %v", tc.origin, err)
				continue
			}
			_ = conn.CloseNow()
			continue
		}
		if err == nil {
			_ = conn.CloseNow()
			t.Errorf("origin %q allowed", tc.origin)
			continue
		}
		if resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Errorf("origin %q: %v, want 403", tc.origin, err)
		}
		if after := testutil.ToFloat64(env.metrics.upgradesRefused.WithLabelValues(refuseOrigin)); after != before+1 {
			t.Errorf("origin %q refusal not counted", tc.origin)
		}
	}
}

func TestMaxConns(t *testing.T) {
	t.Parallel()
	env := setupTest(t, Config{MaxConns: 2}, shard.Config{})
	a := env.dial()
	env.dial()
	_, resp, err := websocket.Dial(context.Background(), env.url, nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("third connection: %v %v, want 503", err, resp)
	}
	if n := testutil.ToFloat64(env.metrics.upgradesRefused.WithLabelValues(refuseMaxConns)); n != 1 {
		t.Fatalf("refused{max_conns} = %v", n)
	}
	_ = a.conn.Close(websocket.StatusNormalClosure, "")
	waitFor(t, func() bool { return env.srv.conns.Load() < 2 })
	env.dial() // a slot is free again
}

func TestPingDropsDeadClients(t *testing.T) {
	t.Parallel()
	env := setupTest(t, Config{PingInterval: 200 * time.Millisecond, PingTimeout: 2 * time.Second}, shard.Config{})
	alive := env.dial()
	alive.join("r", "alive")
	dead := env.dialSilent() // never reads, so never answers a ping
	dead.send(wire.ClientRequest{Type: wire.TypeJoin, Room: "r", User: "dead"})

	// The dead client is dropped and leaves the room; the live one, answering pings
	// while it reads, stays.
	if ev := alive.nextOf(wire.TypePresence); ev.User != "dead" || ev.Event != wire.PresenceJoin {
		t.Fatalf("got %+v", ev)
	}
	if ev := alive.nextOf(wire.TypePresence); ev.User != "dead" || ev.Event != wire.PresenceLeave {
		t.Fatalf("got %+v, want dead's leave", ev)
	}
	// Counted as a ping timeout, not under a close code: no close frame went to it.
	if n := testutil.ToFloat64(env.metrics.pingTimeouts.WithLabelValues("ws")); n != 1 {
		t.Fatalf("ping_timeouts{ws} = %v, want 1", n)
	}
	time.Sleep(300 * time.Millisecond)
	alive.send(wire.ClientRequest{Type: wire.TypePing, Ref: "still"})
	if ev := alive.nextOf(wire.TypePong); ev.Ref != "still" {
		t.Fatalf("pong %+v", ev)
	}
	waitFor(t, func() bool { return testutil.ToFloat64(env.metrics.connections.WithLabelValues("ws")) == 1 })
}

// muteUntilPing connects a raw client that joins room r as mute, a client that answers no
// ping by itself, and reads the server's frames up to its first ping (the welcome and the
// joined reply come before it).
func muteUntilPing(t *testing.T, env *testEnv) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, r := rawUpgrade(t, env, appendMaskedFrame(nil, `{"type":"join","room":"r","user":"mute","ref":"j"}`))
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	for {
		op, _, err := nextServerFrame(r)
		if err != nil {
			t.Fatalf("before the first ping: %v", err)
		}
		if op == 0x89 {
			return conn, r
		}
	}
}

// TestPingDoesNotHoldDeliveries: a client that reads but does not answer pings (a slow or
// broken one) still gets its messages while its ping is out: the writer does not wait for the
// pong. Once PingTimeout has passed without one, it is dropped and leaves its room.
func TestPingDoesNotHoldDeliveries(t *testing.T) {
	t.Parallel()
	env := setupTest(t, Config{PingInterval: 100 * time.Millisecond, PingTimeout: time.Second}, shard.Config{})
	alice := env.dial()
	alice.join("r", "alice")
	_, r := muteUntilPing(t, env)
	alice.send(wire.ClientRequest{Type: wire.TypeMessage, Room: "r", Text: "while your ping is out", Ref: "m"})
	for {
		op, payload, err := nextServerFrame(r)
		if err != nil {
			t.Fatalf("the message did not come while the ping was out: %v", err)
		}
		if op == 0x81 && strings.Contains(string(payload), "while your ping is out") {
			break
		}
	}
	if ev := alice.nextOf(wire.TypePresence); ev.User != "mute" || ev.Event != wire.PresenceJoin {
		t.Fatalf("got %+v, want mute's join", ev)
	}
	if ev := alice.nextOf(wire.TypePresence); ev.User != "mute" || ev.Event != wire.PresenceLeave {
		t.Fatalf("got %+v, want mute's leave once its ping timed out", ev)
	}
	for {
		if _, _, err := nextServerFrame(r); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatal("the connection is still open after the ping timeout")
			}
			break // the server dropped the connection
		}
	}
}

// TestOutboxLater: objects sent later ask for a late flush when they start the queue; what
// comes behind them, whoever adds it (another shard, the session's own answers), wakes the
// writer for all; a take starts afresh.
func TestOutboxLater(t *testing.T) {
	t.Parallel()
	o := newOutbox(8)
	obj := []byte("x")
	steps := []struct {
		mode sendMode
		wake bool
		why  string
	}{
		{sendLater, true, "presence into an empty outbox asks for a late flush"},
		{sendLater, false, "more presence rides on the first's late flush"},
		{sendNow, true, "a message behind presence wakes the writer now"},
		{sendNow, false, "the writer is woken already"},
		{sendLater, false, "presence behind a message goes with it"},
	}
	for i, st := range steps {
		if wake := o.add(obj, st.mode); wake != st.wake {
			t.Fatalf("step %d: wake %v: %s", i, wake, st.why)
		}
	}
	o.take(nil)
	if !o.add(obj, sendLater) || !o.add(obj, sendBestEffort) {
		t.Fatal("after a take: presence asks for a late flush, and a typing object behind it wakes the writer")
	}
}

func TestOutbox(t *testing.T) {
	t.Parallel()
	o := newOutbox(4)
	obj := []byte("x")
	for i := range 4 {
		if wake := o.add(obj, sendNow); wake != (i == 0) {
			t.Fatalf("add %d: wake %v; only the first add into an empty outbox wakes", i, wake)
		}
	}
	if o.add(obj, sendBestEffort) {
		t.Fatal("best effort queued into a queue more than half full")
	}
	if !o.add(obj, sendNow) {
		t.Fatal("an add into a full outbox must wake the writer, to close the slow consumer")
	}
	items, overflowed, dropped := o.take(nil)
	if len(items) != 4 || !overflowed || dropped != 1 {
		t.Fatalf("take = %d items, overflowed %v, dropped %d", len(items), overflowed, dropped)
	}
	if o.pending() != true {
		t.Fatal("an overflowed outbox has work for its writer: the 4008")
	}
	o.close()
	if o.pending() {
		t.Fatal("a closed outbox has no work")
	}
	if o.add(obj, sendNow) || o.add(obj, sendBestEffort) || o.add(obj, sendLater) {
		t.Fatal("a closed outbox must swallow adds without waking")
	}
	if items, _, _ := o.take(nil); len(items) != 0 {
		t.Fatal("a closed outbox kept items")
	}
}

// BenchmarkSessionWrite measures a session's writer: objects queued for one member and read
// by a real client, with frames joined up to the frame cap (batch=on) or one object per
// frame (batch=off, the control).
func BenchmarkSessionWrite(b *testing.B) {
	for _, tc := range []struct {
		name     string
		frameCap int
	}{{"batch=on", 0}, {"batch=off", 1}} {
		b.Run(tc.name, func(b *testing.B) {
			env := setupTest(b, Config{FrameCap: tc.frameCap, Queue: 1 << 20}, shard.Config{})
			obj := wire.AppendMessage(nil, &wire.Message{Room: "general", Seq: 1, User: "alice", Text: "hello there, how is everyone doing today?", TS: 1764430001234})
			ctx := context.Background()
			conn, _, err := websocket.Dial(ctx, env.url, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer conn.CloseNow()
			conn.SetReadLimit(-1)
			if _, _, err := conn.Read(ctx); err != nil { // welcome
				b.Fatal(err)
			}
			sess := env.onlySession(b)
			b.SetBytes(int64(len(obj)))
			b.ReportAllocs()
			b.ResetTimer()
			// The producer stays a bounded distance ahead of the reader, as a shard does
			// when the member keeps up.
			var received atomic.Int64
			go func() {
				for i := range b.N {
					for int64(i)-received.Load() > 10000 {
						runtime.Gosched()
					}
					if sess.Send(obj) {
						sess.Flush()
					}
				}
			}()
			for received.Load() < int64(b.N) {
				_, frame, err := conn.Read(ctx)
				if err != nil {
					b.Fatal(err)
				}
				received.Add(int64(1 + bytes.Count(frame, []byte("\n"))))
			}
		})
	}
}

// TestMetricLabelsAreBounded gathers every metric after some traffic and checks that no label
// could hold a room or a user name.
func TestMetricLabelsAreBounded(t *testing.T) {
	t.Parallel()
	env := setupTest(t, Config{}, shard.Config{})
	c := env.dial()
	c.join("secret-room", "secret-user")
	c.send(wire.ClientRequest{Type: wire.TypeMessage, Room: "secret-room", Text: "hi"})
	c.nextOf(wire.TypeMessage)
	c.sendRaw(`nonsense`)
	c.expectError(wire.CodeBadRequest, "")
	families, err := env.srv.cfg.Gatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	allowed := map[string]bool{"code": true, "reason": true, "shard": true, "transport": true}
	seen := 0
	for _, f := range families {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if !allowed[l.GetName()] || strings.Contains(l.GetValue(), "secret") {
					t.Errorf("%s has label %s=%q", f.GetName(), l.GetName(), l.GetValue())
				}
			}
		}
		if strings.HasPrefix(f.GetName(), "shardchat_") {
			seen++
		}
	}
	if seen < 15 {
		t.Fatalf("only %d shardchat_ metric families gathered", seen)
	}
	if n := testutil.ToFloat64(env.metrics.messages.WithLabelValues("ws")); n != 1 {
		t.Fatalf("messages received = %v", n)
	}
}

func TestRoomsAPI(t *testing.T) {
	t.Parallel()
	env := setupTest(t, Config{}, shard.Config{})
	for i, room := range []string{"quiet", "busy", "busy", "busy", "mid", "mid"} {
		env.dial().join(room, fmt.Sprint("u", i))
	}
	left := env.dial()
	left.join("gone", "x")
	left.send(wire.ClientRequest{Type: wire.TypeLeave, Room: "gone"})
	left.nextOf(wire.TypeLeft)

	resp, err := http.Get(env.http.URL + "/api/rooms")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got roomsResponse
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("decode: %v (%s)", err, resp.Header.Get("Content-Type"))
	}
	want := []shard.RoomInfo{{Name: "busy", Members: 3}, {Name: "mid", Members: 2}, {Name: "quiet", Members: 1}}
	if !slices.Equal(got.Rooms, want) {
		t.Fatalf("rooms = %+v, want %+v", got.Rooms, want)
	}
}

func TestStaticCaching(t *testing.T) {
	t.Parallel()
	env := setupTest(t, Config{Static: fstest.MapFS{
		"index.html": {Data: []byte("<!doctype html><title>x</title>")},
		"app.js":     {Data: []byte("console.log(1)")},
	}}, shard.Config{})
	get := func(path, etag string) *http.Response {
		req, _ := http.NewRequest(http.MethodGet, env.http.URL+path, nil)
		if etag != "" {
			req.Header.Set("If-None-Match", etag)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	for _, path := range []string{"/", "/app.js"} {
		resp := get(path, "")
		etag := resp.Header.Get("ETag")
		if resp.StatusCode != http.StatusOK || etag == "" || resp.Header.Get("Cache-Control") != "no-cache" {
			t.Fatalf("%s: %d, ETag %q, Cache-Control %q", path, resp.StatusCode, etag, resp.Header.Get("Cache-Control"))
		}
		if resp := get(path, etag); resp.StatusCode != http.StatusNotModified {
			t.Fatalf("%s with its ETag: %d, want 304", path, resp.StatusCode)
		}
		if resp := get(path, `"stale"`); resp.StatusCode != http.StatusOK {
			t.Fatalf("%s with a stale ETag: %d, want 200", path, resp.StatusCode)
		}
	}
}

// TestStuckWriteIsCut: a client that stops reading, with a queue too large to overflow, is cut
// once a write to it has been stuck for WriteTimeout; the others go on.
func TestStuckWriteIsCut(t *testing.T) {
	t.Parallel()
	env := setupTest(t, Config{WriteTimeout: 300 * time.Millisecond, Queue: 1 << 20, Rate: 1e6, Burst: 1e6}, shard.Config{})
	sender := env.dial()
	sender.join("r", "sender")
	silent := env.dialSilentSmall()
	silent.send(wire.ClientRequest{Type: wire.TypeJoin, Room: "r", User: "silent"})
	sender.nextOf(wire.TypePresence)
	stuck := env.sessionOf(t, "silent")
	// Small buffers on both ends of the silent client's socket: the server's send buffer would
	// otherwise grow to tcp_wmem's maximum (4 MiB here, more elsewhere) before a write blocks.
	if err := stuck.raw.(*net.TCPConn).SetWriteBuffer(4096); err != nil {
		t.Fatal(err)
	}
	text := strings.Repeat("x", wire.MaxText)
	// Until a write to the silent client blocks, and no more: the sender reads every echo too,
	// and one that falls behind for WriteTimeout (a slow reader under -race) would be cut.
	blocked := func() bool {
		for range 20 {
			since := stuck.writingSince.Load()
			if since == 0 {
				return false
			}
			if time.Since(time.Unix(0, since)) > 50*time.Millisecond {
				return true
			}
			time.Sleep(5 * time.Millisecond)
		}
		return false
	}
	for i := 0; !blocked(); i++ {
		if i == 4000 {
			t.Fatal("4,000 messages and no write to the silent client blocked")
		}
		sender.send(wire.ClientRequest{Type: wire.TypeMessage, Room: "r", Text: text})
	}
	for {
		if ev := sender.next(); ev.Type == wire.TypePresence && ev.User == "silent" && ev.Event == wire.PresenceLeave {
			break
		}
	}
	if n := testutil.ToFloat64(env.metrics.slowConsumers); n != 0 {
		t.Fatalf("cut as a slow consumer (%v), not by the write timeout", n)
	}
}
