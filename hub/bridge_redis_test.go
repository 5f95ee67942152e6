package hub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/shardchat/shardchat/internal/testprog"
	"github.com/shardchat/shardchat/shard"
	"github.com/shardchat/shardchat/transport/wire"
)

// member is a shard.Member that decodes and keeps what it is sent.
type member struct {
	mu     sync.Mutex
	events []wire.Event
	kicked wire.CloseCode
}

func (m *member) Send(obj []byte) bool {
	evs, err := wire.DecodeFrame(nil, obj)
	if err != nil {
		panic(err)
	}
	m.mu.Lock()
	m.events = append(m.events, evs...)
	m.mu.Unlock()
	return false
}

func (m *member) SendBestEffort(obj []byte) bool { return m.Send(obj) }
func (m *member) SendLater(obj []byte) bool      { return m.Send(obj) }

func (m *member) Flush() {}

func (m *member) Kick(code wire.CloseCode, _ string) {
	m.mu.Lock()
	m.kicked = code
	m.mu.Unlock()
}

// of returns the events of type typ received so far.
func (m *member) of(typ string) []wire.Event {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []wire.Event
	for _, ev := range m.events {
		if ev.Type == typ {
			out = append(out, ev)
		}
	}
	return out
}

// waitFor polls cond over the member's events for up to 15 seconds.
func (m *member) waitFor(t testing.TB, what string, cond func(evs []wire.Event) bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		m.mu.Lock()
		ok := cond(m.events)
		m.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (m *member) messages(t testing.TB, n int) []wire.Event {
	t.Helper()
	m.waitFor(t, fmt.Sprintf("%d messages", n), func(evs []wire.Event) bool {
		c := 0
		for _, ev := range evs {
			if ev.Type == wire.TypeMessage {
				c++
			}
		}
		return c >= n
	})
	return m.of(wire.TypeMessage)
}

// redisHub is a hub of its own on a shared Redis.
type redisHub struct {
	*Hub
	bridge *RedisBridge
	node   string
}

func newRedisHub(t testing.TB, url, prefix, node string, tweak func(*RedisConfig)) *redisHub {
	t.Helper()
	cfg := RedisConfig{URL: url, Node: node, KeyPrefix: prefix, Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))}
	if tweak != nil {
		tweak(&cfg)
	}
	h, err := New(Config{Shards: 2, NewBridge: NewRedisBridge(cfg), Logger: cfg.Logger})
	if err != nil {
		t.Fatalf("hub %s: %v", node, err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return &redisHub{Hub: h, bridge: h.bridge.(*RedisBridge), node: node}
}

func (h *redisHub) join(t testing.TB, m shard.Member, room, user string, since *wire.Since) error {
	t.Helper()
	return h.Join(context.Background(), shard.Request{Member: m, Room: room, User: user, Since: since, Reply: make(chan error, 1)})
}

func (h *redisHub) mustJoin(t testing.TB, m *member, room, user string) wire.Event {
	t.Helper()
	if err := h.join(t, m, room, user, nil); err != nil {
		t.Fatalf("%s joins %s on %s: %v", user, room, h.node, err)
	}
	joined := m.of(wire.TypeJoined)
	return joined[len(joined)-1]
}

func (h *redisHub) say(t testing.TB, m *member, room, user, text string) error {
	t.Helper()
	return h.Publish(context.Background(), shard.Request{Member: m, Room: room, User: user, Text: text, Ref: text, Reply: make(chan error, 1)})
}

func (h *redisHub) leave(t testing.TB, m *member, room, user string) {
	t.Helper()
	if err := h.Leave(context.Background(), shard.Request{Member: m, Room: room, User: user, Quiet: true, Reply: make(chan error, 1)}); err != nil {
		t.Fatalf("%s leaves %s: %v", user, room, err)
	}
}

// twoHosts starts a Redis and two hubs on it, host-a and host-b, configured by tweak.
func twoHosts(t *testing.T, tweak func(*RedisConfig)) (*testprog.RedisServer, *redisHub, *redisHub) {
	t.Helper()
	r := testprog.Redis(t)
	return r, newRedisHub(t, r.URL(), "t:", "host-a", tweak), newRedisHub(t, r.URL(), "t:", "host-b", tweak)
}

// threeHosts starts a Redis and three hubs on it.
func threeHosts(t *testing.T) (*testprog.RedisServer, []*redisHub) {
	r := testprog.Redis(t)
	hubs := make([]*redisHub, 3)
	for i := range hubs {
		hubs[i] = newRedisHub(t, r.URL(), "t:", fmt.Sprintf("host-%c", 'a'+i), nil)
	}
	return r, hubs
}

// checkOrder asserts that every member got the same n messages with seq 1..n.
func checkOrder(t *testing.T, members map[string]*member, n int) {
	t.Helper()
	var first []string
	var firstName string
	for name, m := range members {
		msgs := m.messages(t, n)
		if len(msgs) != n {
			t.Fatalf("%s got %d messages, want %d", name, len(msgs), n)
		}
		texts := make([]string, n)
		for i, ev := range msgs {
			if ev.Seq != uint64(i+1) {
				t.Fatalf("%s: message %d has seq %d", name, i, ev.Seq)
			}
			texts[i] = ev.Text
		}
		if first == nil {
			first, firstName = texts, name
		} else if !slices.Equal(texts, first) {
			t.Fatalf("%s and %s saw different orders", name, firstName)
		}
	}
}

// TestRedisOrderAcrossHosts: senders on three hosts, more at once on each than a room's
// scripts under way (maxPublishScripts), so that messages wait and go in batches. Every member
// gets every message, seq 1..n, in one order, and each sender's own in the order sent.
func TestRedisOrderAcrossHosts(t *testing.T) {
	t.Parallel()
	_, hubs := threeHosts(t)
	members := map[string]*member{}
	type sender struct {
		h    *redisHub
		m    *member
		user string
	}
	var senders []sender
	for _, h := range hubs {
		for i := range 4 * maxPublishScripts {
			user := fmt.Sprintf("%s-%d", h.node, i)
			m := &member{}
			members[user] = m
			h.mustJoin(t, m, "r", user)
			senders = append(senders, sender{h, m, user})
		}
	}
	const each = 20
	var wg sync.WaitGroup
	for _, s := range senders {
		wg.Go(func() {
			for n := range each {
				if err := s.h.say(t, s.m, "r", s.user, fmt.Sprintf("%s/%d", s.user, n)); err != nil {
					t.Errorf("%s: %v", s.user, err)
					return
				}
			}
		})
	}
	wg.Wait()
	checkOrder(t, members, len(senders)*each)
	scripts, msgs := 0, 0
	for _, h := range hubs {
		var m dto.Metric
		if err := h.bridge.metrics.publishBatchSize.Write(&m); err != nil {
			t.Fatal(err)
		}
		scripts += int(m.GetHistogram().GetSampleCount())
		msgs += int(m.GetHistogram().GetSampleSum())
	}
	if msgs != len(senders)*each || scripts >= msgs {
		t.Errorf("%d scripts ordered %d messages, want %d in fewer scripts", scripts, msgs, len(senders)*each)
	}
	// Each sender's own messages came back to it with their refs, in the order sent.
	for _, s := range senders {
		var mine []string
		for _, ev := range s.m.of(wire.TypeMessage) {
			if ev.User == s.user {
				mine = append(mine, ev.Ref)
			}
		}
		for n, ref := range mine {
			if ref != fmt.Sprintf("%s/%d", s.user, n) {
				t.Fatalf("%s: own message %d came back as %q", s.user, n, ref)
			}
		}
	}
}

func TestRedisPresenceAcrossHosts(t *testing.T) {
	t.Parallel()
	_, hubs := threeHosts(t)
	a, b, c := hubs[0], hubs[1], hubs[2]
	alice, bob := &member{}, &member{}
	a.mustJoin(t, alice, "r", "alice")
	j := b.mustJoin(t, bob, "r", "bob")
	if !slices.Equal(j.Users, []string{"alice", "bob"}) {
		t.Fatalf("bob's joined users = %v", j.Users)
	}
	alice.waitFor(t, "bob's presence join", func(evs []wire.Event) bool {
		return slices.ContainsFunc(evs, func(ev wire.Event) bool {
			return ev.Type == wire.TypePresence && ev.User == "bob" && ev.Event == wire.PresenceJoin
		})
	})

	// A name is unique across hosts; the refused join changes nothing.
	err := c.join(t, &member{}, "r", "alice", nil)
	var werr *wire.Error
	if !errors.As(err, &werr) || werr.Code != wire.CodeNameTaken {
		t.Fatalf("alice on another host: %v, want name_taken", err)
	}
	if err := c.Users(context.Background(), shard.Request{Member: bob, Room: "r", Ref: "u"}); err != nil {
		t.Fatal(err)
	}
	if u := bob.of(wire.TypeUsers); len(u) != 1 || !slices.Equal(u[0].Users, []string{"alice", "bob"}) {
		t.Fatalf("users = %+v", u)
	}

	// Typing crosses hosts and never reaches the typist.
	if err := a.Typing(context.Background(), shard.Request{Member: alice, Room: "r", User: "alice", On: true}); err != nil {
		t.Fatal(err)
	}
	bob.waitFor(t, "alice's typing", func(evs []wire.Event) bool {
		return slices.ContainsFunc(evs, func(ev wire.Event) bool { return ev.Type == wire.TypeTyping && ev.User == "alice" && ev.On })
	})
	// A message after it on the same channel: once alice has it, her typing has come past her.
	if err := a.say(t, alice, "r", "alice", "after typing"); err != nil {
		t.Fatal(err)
	}
	alice.waitFor(t, "her own message after her typing", func(evs []wire.Event) bool {
		return slices.ContainsFunc(evs, func(ev wire.Event) bool { return ev.Type == wire.TypeMessage && ev.Text == "after typing" })
	})
	if len(alice.of(wire.TypeTyping)) != 0 {
		t.Fatal("typing came back to the typist")
	}

	a.leave(t, alice, "r", "alice")
	bob.waitFor(t, "alice's presence leave", func(evs []wire.Event) bool {
		return slices.ContainsFunc(evs, func(ev wire.Event) bool {
			return ev.Type == wire.TypePresence && ev.User == "alice" && ev.Event == wire.PresenceLeave
		})
	})
	// The name is free again, on any host.
	c.mustJoin(t, &member{}, "r", "alice")
}

func TestRedisDeadHostIsPruned(t *testing.T) {
	t.Parallel()
	_, a, b := twoHosts(t, nil)
	alice, bob := &member{}, &member{}
	a.mustJoin(t, alice, "r", "alice")
	b.mustJoin(t, bob, "r", "bob")

	a.bridge.crash() // no goodbye: heartbeats stop, nothing is cleaned up
	start := time.Now()
	bob.waitFor(t, "alice's leave after her host died", func(evs []wire.Event) bool {
		return slices.ContainsFunc(evs, func(ev wire.Event) bool {
			return ev.Type == wire.TypePresence && ev.User == "alice" && ev.Event == wire.PresenceLeave
		})
	})
	took := time.Since(start)
	t.Logf("a dead host's user left after %s", took)
	if took > 6*time.Second {
		t.Fatalf("the leave took %s; the default promise is within 5s", took)
	}
	// Her name is free.
	b.mustJoin(t, &member{}, "r", "alice")
}

func TestRedisRecoveryAcrossHosts(t *testing.T) {
	t.Parallel()
	_, hubs := threeHosts(t)
	a, b := hubs[0], hubs[1]
	sender, reader := &member{}, &member{}
	a.mustJoin(t, sender, "r", "sender")
	j := a.mustJoin(t, reader, "r", "reader")
	for n := range 3 {
		if err := a.say(t, sender, "r", "sender", fmt.Sprint(n)); err != nil {
			t.Fatal(err)
		}
	}
	seen := reader.messages(t, 3)
	a.leave(t, reader, "r", "reader")
	for n := 3; n < 8; n++ {
		if err := a.say(t, sender, "r", "sender", fmt.Sprint(n)); err != nil {
			t.Fatal(err)
		}
	}
	back := &member{}
	if err := b.join(t, back, "r", "reader", &wire.Since{Epoch: j.Epoch, Seq: seen[2].Seq}); err != nil {
		t.Fatal(err)
	}
	got := back.of(wire.TypeJoined)[0]
	if !got.Recovered || len(got.History) != 5 || got.History[0].Seq != 4 || got.History[4].Seq != 8 || got.Seq != 8 || got.Epoch != j.Epoch {
		t.Fatalf("recovered %v, %d messages, seq %d", got.Recovered, len(got.History), got.Seq)
	}
	for i, ev := range got.History {
		if ev.Text != fmt.Sprint(3+i) {
			t.Fatalf("history[%d] = %q", i, ev.Text)
		}
	}
}

// crash stops the bridge the way a killed process would: no goodbye, no cleanup. Close does
// nothing after it.
func (b *RedisBridge) crash() {
	b.closeOnce.Do(func() {
		b.cancel()
		b.subs.stop()
		b.wg.Wait()
		b.client.Close()
	})
}

func TestRedisGracefulCloseAndRoomCounts(t *testing.T) {
	t.Parallel()
	_, a, b := twoHosts(t, nil)
	alice, carol, bob := &member{}, &member{}, &member{}
	a.mustJoin(t, alice, "busy", "alice")
	a.mustJoin(t, carol, "quiet", "carol")
	b.mustJoin(t, bob, "busy", "bob")

	// GET /api/rooms counts members on every host.
	want := []shard.RoomInfo{{Name: "busy", Members: 2}, {Name: "quiet", Members: 1}}
	waitUntil(t, "room counts from both hosts", func() bool {
		rooms, err := b.Rooms(context.Background(), 10)
		return err == nil && slices.Equal(rooms, want)
	})

	// A host that stops says goodbye at once: no waiting for its heartbeat to run out.
	start := time.Now()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	bob.waitFor(t, "alice's leave", func(evs []wire.Event) bool {
		return slices.ContainsFunc(evs, func(ev wire.Event) bool {
			return ev.Type == wire.TypePresence && ev.User == "alice" && ev.Event == wire.PresenceLeave
		})
	})
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("the leave of a host that closed took %s", took)
	}
	waitUntil(t, "room counts without the closed host", func() bool {
		rooms, err := b.Rooms(context.Background(), 10)
		return err == nil && slices.Equal(rooms, []shard.RoomInfo{{Name: "busy", Members: 1}})
	})
}

// TestRedisIdleHostHeartbeats: a host that nobody joins heartbeats and publishes its room
// counts from the start; its shards exist before the bridge's goroutines use them (the race
// detector watches the heartbeat's first reads of the shards).
func TestRedisIdleHostHeartbeats(t *testing.T) {
	t.Parallel()
	r := testprog.Redis(t)
	h := newRedisHub(t, r.URL(), "t:", "host-a", nil)
	time.Sleep(1300 * time.Millisecond) // past the first heartbeat of the loop
	if err := h.Ready(); err != nil {
		t.Fatalf("an idle host is not ready: %v", err)
	}
	if n := testutil.ToFloat64(h.bridge.metrics.errors.WithLabelValues("rooms")); n != 0 {
		t.Fatalf("errors{rooms} = %v", n)
	}
}
