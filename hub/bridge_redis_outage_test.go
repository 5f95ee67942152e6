package hub

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/rueidis"

	"github.com/shardchat/shardchat/internal/testprog"
	"github.com/shardchat/shardchat/shard"
	"github.com/shardchat/shardchat/transport/wire"
)

// steadySender publishes 50 messages a second, a busy chat room, until stop is closed, and
// records which were acknowledged and which were refused as unavailable. (A room far busier
// than its history can hold through an outage is reset instead: its members reconnect.)
type steadySender struct {
	acked, refused []string
	other          error
}

// sendSteadily runs a steadySender on a goroutine; the function it returns stops it and
// answers what it recorded.
func sendSteadily(t *testing.T, h *redisHub, m *member, room, user string) (stop func() *steadySender) {
	var s steadySender
	stopping, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		s.run(t, h, m, room, user, stopping)
	}()
	return func() *steadySender {
		close(stopping)
		<-done
		return &s
	}
}

func (s *steadySender) run(t *testing.T, h *redisHub, m *member, room, user string, stop <-chan struct{}) {
	for n := 0; ; n++ {
		select {
		case <-stop:
			return
		case <-time.After(20 * time.Millisecond):
		}
		text := fmt.Sprintf("m%d", n)
		err := h.say(t, m, room, user, text)
		var werr *wire.Error
		switch {
		case err == nil:
			s.acked = append(s.acked, text)
		case errors.As(err, &werr) && werr.Code == wire.CodeUnavailable:
			s.refused = append(s.refused, text)
		default:
			s.other = err
			return
		}
	}
}

// checkDelivered asserts that m got every acknowledged message once, all messages in seq
// order with no gap, and nothing twice.
func checkDelivered(t *testing.T, name string, m *member, s *steadySender) {
	t.Helper()
	last := s.acked[len(s.acked)-1]
	m.waitFor(t, name+" to get the last acknowledged message", func(evs []wire.Event) bool {
		for _, ev := range evs {
			if ev.Type == wire.TypeMessage && ev.Text == last {
				return true
			}
		}
		return false
	})
	seen := map[string]int{}
	var prev uint64
	for _, ev := range m.of(wire.TypeMessage) {
		if prev != 0 && ev.Seq != prev+1 {
			t.Fatalf("%s: seq %d after %d", name, ev.Seq, prev)
		}
		prev = ev.Seq
		seen[ev.Text]++
		if seen[ev.Text] > 1 {
			t.Fatalf("%s got %q twice", name, ev.Text)
		}
	}
	for _, text := range s.acked {
		if seen[text] != 1 {
			t.Fatalf("%s never got the acknowledged message %q", name, text)
		}
	}
}

func TestRedisRestart(t *testing.T) {
	t.Parallel()
	r, a, b := twoHosts(t, nil)
	sender, onA, onB := &member{}, &member{}, &member{}
	a.mustJoin(t, sender, "r", "sender")
	a.mustJoin(t, onA, "r", "on-a")
	b.mustJoin(t, onB, "r", "on-b")

	stopSending := sendSteadily(t, a, sender, "r", "sender")

	time.Sleep(500 * time.Millisecond)
	r.Stop()
	waitUntil(t, "the bridge to notice Redis is gone", func() bool { return a.Ready() != nil })
	time.Sleep(300 * time.Millisecond)
	r.Start()
	waitUntil(t, "the bridges to come back", func() bool { return a.Ready() == nil && b.Ready() == nil })
	time.Sleep(300 * time.Millisecond)
	s := stopSending()

	if s.other != nil {
		t.Fatalf("a sender got an error other than unavailable: %v", s.other)
	}
	if len(s.refused) == 0 || len(s.acked) < 10 {
		t.Fatalf("%d acknowledged and %d refused: the outage was not exercised", len(s.acked), len(s.refused))
	}
	t.Logf("%d messages acknowledged, %d refused while Redis was down", len(s.acked), len(s.refused))
	for name, m := range map[string]*member{"sender": sender, "on-a": onA, "on-b": onB} {
		checkDelivered(t, name, m, s)
	}
}

func TestRedisLostProbe(t *testing.T) {
	t.Parallel()
	fast := func(c *RedisConfig) { c.ProbeInterval, c.ProbeTimeout = 100*time.Millisecond, 600*time.Millisecond }
	r, a, b := twoHosts(t, fast)
	sender, onB := &member{}, &member{}
	a.mustJoin(t, sender, "r", "sender")
	b.mustJoin(t, onB, "r", "on-b")

	waitUntil(t, "host-b's first roster", func() bool { return rostersSettled(b) })
	rosters := testutil.ToFloat64(b.bridge.metrics.rosters)
	stopSending := sendSteadily(t, a, sender, "r", "sender")
	time.Sleep(200 * time.Millisecond)

	// Pause every client: no probe comes back, whatever the connections say.
	if reply, err := r.Command("CLIENT", "PAUSE", "1500", "ALL"); err != nil || reply != "+OK" {
		t.Fatalf("CLIENT PAUSE: %q %v", reply, err)
	}
	var sawDown atomic.Bool
	waitUntil(t, "the lost probe to be noticed", func() bool {
		if b.Ready() != nil {
			sawDown.Store(true)
		}
		// Both: the counter may move a moment before the bridge reports itself down.
		return sawDown.Load() && testutil.ToFloat64(b.bridge.metrics.probeLost) > 0
	})
	waitUntil(t, "the bridge to be up again", func() bool { return b.Ready() == nil && a.Ready() == nil })
	time.Sleep(300 * time.Millisecond)
	s := stopSending()
	if s.other != nil {
		t.Fatalf("a sender got an error other than unavailable: %v", s.other)
	}
	if !sawDown.Load() {
		t.Fatal("/readyz would never have said the bridge was down")
	}
	if testutil.ToFloat64(b.bridge.metrics.resubscribes) == 0 {
		t.Fatal("no subscription was made again")
	}
	// Presence published while the subscription was away never came: the room's roster does.
	waitUntil(t, "host-b to publish the room's roster after subscribing again", func() bool {
		return testutil.ToFloat64(b.bridge.metrics.rosters) > rosters
	})
	checkDelivered(t, "on-b", onB, s)
	checkDelivered(t, "sender", sender, s)
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRedisQueuedReleaseSparesReconnect: a user whose leave could not reach Redis reconnects
// to the same host; the queued release, tried later, must not take the name from the new
// connection (else another host could seat a second bob).
func TestRedisQueuedReleaseSparesReconnect(t *testing.T) {
	t.Parallel()
	r, a, b := twoHosts(t, func(c *RedisConfig) {
		// Retries run only when the test says.
		c.Heartbeat, c.NodeTTL, c.Timeout = time.Hour, time.Hour, 300*time.Millisecond
	})
	old := &member{}
	a.mustJoin(t, old, "r", "bob")

	if _, err := r.Command("CLIENT", "PAUSE", "5000", "WRITE"); err != nil {
		t.Fatal(err)
	}
	a.leave(t, old, "r", "bob") // the shard lets go; the release times out and waits for a retry
	a.bridge.mu.Lock()
	queued := len(a.bridge.retries)
	a.bridge.mu.Unlock()
	if _, err := r.Command("CLIENT", "UNPAUSE"); err != nil {
		t.Fatal(err)
	}
	if queued != 1 {
		t.Fatalf("%d releases queued during the pause, want 1", queued)
	}

	fresh := &member{}
	a.mustJoin(t, fresh, "r", "bob")
	a.bridge.retryFailed()
	err := b.join(t, &member{}, "r", "bob", nil)
	var werr *wire.Error
	if !errors.As(err, &werr) || werr.Code != wire.CodeNameTaken {
		t.Fatalf("a second bob on host-b: %v, want name_taken (the reconnect on host-a holds the name)", err)
	}
	a.bridge.mu.Lock()
	left := len(a.bridge.retries)
	a.bridge.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d releases still queued", left)
	}
}

// usersOf joins a fresh member to room on h and answers the users its joined event lists.
func usersOf(t *testing.T, h *redisHub, room, user string) []string {
	t.Helper()
	m := &member{}
	joined := h.mustJoin(t, m, room, user)
	h.leave(t, m, room, user)
	return joined.Users
}

// shortLived makes hubs count a host dead after a second.
func shortLived(c *RedisConfig) { c.NodeTTL, c.Heartbeat = time.Second, 100*time.Millisecond }

// TestRedisOutageLongerThanNodeTTL: when Redis is away for longer than a host's time to live,
// every host's heartbeat runs out at once; the first host back must not retire the others,
// whose users are all still there.
func TestRedisOutageLongerThanNodeTTL(t *testing.T) {
	t.Parallel()
	// A TTL of 3s: the hosts need not reconnect within a second of each other, on a busy machine.
	r, a, b := twoHosts(t, func(c *RedisConfig) { c.NodeTTL, c.Heartbeat = 3*time.Second, 100*time.Millisecond })
	a.mustJoin(t, &member{}, "r", "alice")
	b.mustJoin(t, &member{}, "r", "bob")

	r.Stop()
	waitUntil(t, "both bridges to notice Redis is gone", func() bool { return a.Ready() != nil && b.Ready() != nil })
	time.Sleep(3500 * time.Millisecond) // past NodeTTL: every score in Redis is in the past
	r.Start()
	waitUntil(t, "the bridges to come back", func() bool { return a.Ready() == nil && b.Ready() == nil })
	time.Sleep(3500 * time.Millisecond) // past the grace: a host that was really gone would be retired by now

	for _, h := range []*redisHub{a, b} {
		if n := testutil.ToFloat64(h.bridge.metrics.pruned); n != 0 {
			t.Fatalf("%s pruned %v users of live hosts", h.node, n)
		}
	}
	if got := usersOf(t, a, "r", "carol"); !slices.Equal(got, []string{"alice", "bob", "carol"}) {
		t.Fatalf("users after the outage = %v, want alice, bob and carol", got)
	}
}

// TestRedisRetiredHostReclaims: a host whose users were taken out of their rooms while it was
// cut off from Redis claims their names back, once its pruner is done; also when the pruning
// failed halfway and left it marked dead.
func TestRedisRetiredHostReclaims(t *testing.T) {
	t.Parallel()
	presence := func(event string, n int) func([]wire.Event) bool {
		return func(evs []wire.Event) bool {
			seen := 0
			for _, ev := range evs {
				if ev.Type == wire.TypePresence && ev.User == "alice" && ev.Event == event {
					seen++
				}
			}
			return seen >= n
		}
	}
	cases := []struct {
		name string
		// retire does to host-a what host-b's pruning does, as if host-a were cut off.
		retire func(t *testing.T, r *testprog.RedisServer, a, b *redisHub)
	}{
		{"pruned", func(t *testing.T, r *testprog.RedisServer, a, b *redisHub) {
			marker := b.bridge.keys.pruning("host-a")
			if _, err := r.Command("SET", marker, "host-b"); err != nil {
				t.Fatal(err)
			}
			if _, err := r.Command("ZREM", a.bridge.keys.nodes(), "host-a"); err != nil {
				t.Fatal(err)
			}
			// host-a heartbeats meanwhile and finds itself gone; it must wait for the
			// pruning to end, or the pruning would take back what it claims.
			time.Sleep(500 * time.Millisecond)
			if err := b.bridge.prune(context.Background(), "host-a"); err != nil {
				t.Fatal(err)
			}
			if _, err := r.Command("DEL", marker); err != nil {
				t.Fatal(err)
			}
		}},
		{"pruning failed halfway", func(t *testing.T, r *testprog.RedisServer, a, b *redisHub) {
			// The name is gone, and host-a is marked dead for a later round to finish.
			if _, err := r.Command("HDEL", a.bridge.keys.users("r"), "alice"); err != nil {
				t.Fatal(err)
			}
			if _, err := r.Command("PUBLISH", a.bridge.keys.channel("r"), presencePayload("alice", false, wire.AppendPresence(nil, "r", "alice", wire.PresenceLeave))); err != nil {
				t.Fatal(err)
			}
			if _, err := r.Command("ZADD", a.bridge.keys.nodes(), "XX", "0", "host-a"); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r, a, b := twoHosts(t, shortLived)
			alice, bob := &member{}, &member{}
			a.mustJoin(t, alice, "r", "alice")
			b.mustJoin(t, bob, "r", "bob")
			// More names than the reclaim has workers, so that it hands them out in turns.
			want := []string{"alice", "bob", "carol"}
			for i := range 2 * reclaimWorkers {
				user := fmt.Sprintf("u%02d", i)
				a.mustJoin(t, &member{}, "r", user)
				want = append(want, user)
			}
			tc.retire(t, r, a, b)
			bob.waitFor(t, "alice's leave when her host was retired", presence(wire.PresenceLeave, 1))
			bob.waitFor(t, "alice's join when her host claimed her name again", presence(wire.PresenceJoin, 1))
			time.Sleep(300 * time.Millisecond) // nothing takes it back
			err := b.join(t, &member{}, "r", "alice", nil)
			var werr *wire.Error
			if !errors.As(err, &werr) || werr.Code != wire.CodeNameTaken {
				t.Fatalf("a second alice on host-b: %v, want name_taken", err)
			}
			// Every name of host-a is back: the last ones may come a moment after alice's.
			slices.Sort(want)
			var got []string
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
				if got = usersOf(t, b, "r", "carol"); slices.Equal(got, want) {
					break
				}
			}
			if !slices.Equal(got, want) {
				t.Fatalf("users after the reclaim = %v, want %v", got, want)
			}
		})
	}
}

// TestRedisRefusedMessageIsNotSent: a message refused as unavailable because Redis answered
// too late must not go out when Redis gets round to it (the client was told it was not sent,
// and may send it again).
func TestRedisRefusedMessageIsNotSent(t *testing.T) {
	t.Parallel()
	r := testprog.Redis(t)
	a := newRedisHub(t, r.URL(), "t:", "host-a", func(c *RedisConfig) { c.Timeout = 300 * time.Millisecond })
	sender, reader := &member{}, &member{}
	a.mustJoin(t, sender, "r", "sender")
	a.mustJoin(t, reader, "r", "reader")
	// Redis knows the script from then on: a late EVALSHA runs, rather than failing as unknown.
	if err := a.say(t, sender, "r", "sender", "warm"); err != nil {
		t.Fatal(err)
	}

	busy := keepBusy(r)
	var refused []string
	last := ""
	for n := 0; ; n++ {
		text := fmt.Sprintf("m%d", n)
		err := a.say(t, sender, "r", "sender", text)
		if err == nil {
			last = text
			break
		}
		var werr *wire.Error
		if !errors.As(err, &werr) || werr.Code != wire.CodeUnavailable {
			t.Fatalf("a message while Redis is busy: %v, want unavailable", err)
		}
		refused = append(refused, text)
	}
	if err := <-busy; err != nil {
		t.Fatalf("the busy script: %v", err)
	}
	if len(refused) == 0 {
		t.Fatal("no message was refused: Redis was never too slow")
	}
	reader.waitFor(t, "the message sent after the wait", func(evs []wire.Event) bool {
		return slices.ContainsFunc(evs, func(ev wire.Event) bool { return ev.Text == last })
	})
	time.Sleep(200 * time.Millisecond) // a late script would have run by now
	for _, ev := range reader.of(wire.TypeMessage) {
		if slices.Contains(refused, ev.Text) {
			t.Fatalf("the refused message %q went out", ev.Text)
		}
	}
}

// TestRedisRefusedBatchIsNotSent: the same for messages that waited in their room's lane
// while Redis was busy. Two senders take the room's scripts; the others, a moment later,
// queue behind them, and when the first two give up, go as one batch, which the first of
// them runs for the others. None goes out, and the room's lane is free again afterwards.
func TestRedisRefusedBatchIsNotSent(t *testing.T) {
	t.Parallel()
	const timeout = 600 * time.Millisecond
	r := testprog.Redis(t)
	a := newRedisHub(t, r.URL(), "t:", "host-a", func(c *RedisConfig) { c.Timeout = timeout })
	reader := &member{}
	a.mustJoin(t, reader, "r", "reader")
	senders := make([]*member, 4*maxPublishScripts)
	for i := range senders {
		senders[i] = &member{}
		a.mustJoin(t, senders[i], "r", fmt.Sprint("s", i))
	}
	if err := a.say(t, senders[0], "r", "s0", "warm"); err != nil {
		t.Fatal(err)
	}

	busy := keepBusy(r)
	var wg sync.WaitGroup
	errs := make([]error, len(senders))
	send := func(i int) {
		wg.Go(func() { errs[i] = a.say(t, senders[i], "r", fmt.Sprint("s", i), fmt.Sprint("refused", i)) })
	}
	for i := range maxPublishScripts {
		send(i)
	}
	deadline := time.Now().Add(5 * time.Second)
	for a.bridge.lanesOf("r").running("r") < maxPublishScripts {
		if time.Now().After(deadline) {
			t.Fatal("the first senders' scripts did not start")
		}
		time.Sleep(time.Millisecond)
	}
	// Late enough to be waiting still when the first scripts give up.
	time.Sleep(timeout / 3)
	for i := maxPublishScripts; i < len(senders); i++ {
		send(i)
	}
	wg.Wait()
	for i, err := range errs {
		var werr *wire.Error
		if !errors.As(err, &werr) || werr.Code != wire.CodeUnavailable {
			t.Errorf("sender %d while Redis is busy: %v, want unavailable", i, err)
		}
	}
	if err := <-busy; err != nil {
		t.Fatalf("the busy script: %v", err)
	}
	if err := a.say(t, senders[0], "r", "s0", "after"); err != nil {
		t.Fatalf("a message after the wait: %v", err)
	}
	reader.waitFor(t, "the message sent after the wait", func(evs []wire.Event) bool {
		return slices.ContainsFunc(evs, func(ev wire.Event) bool { return ev.Text == "after" })
	})
	time.Sleep(200 * time.Millisecond) // a late script would have run by now
	for _, ev := range reader.of(wire.TypeMessage) {
		if strings.HasPrefix(ev.Text, "refused") {
			t.Fatalf("the refused message %q went out", ev.Text)
		}
	}
	var m dto.Metric
	if err := a.bridge.metrics.publishBatchSize.Write(&m); err != nil {
		t.Fatal(err)
	}
	if m.GetHistogram().GetSampleSum() <= float64(m.GetHistogram().GetSampleCount()) {
		t.Errorf("no script carried more than one message: the lane never queued")
	}
	if n := a.bridge.lanesOf("r").running("r"); n != 0 {
		t.Errorf("the lane still counts %d scripts under way", n)
	}
}

// keepBusy runs a script that keeps Redis busy for a second or two: what comes meanwhile
// waits, then runs. The script's error comes on the channel when it ends.
func keepBusy(r *testprog.RedisServer) <-chan error {
	busy := make(chan error, 1)
	go func() {
		_, err := r.Command("EVAL", `local stop = tonumber(redis.call('TIME')[1]) + 1
while tonumber(redis.call('TIME')[1]) <= stop do end
return 1`, "0")
		busy <- err
	}()
	time.Sleep(100 * time.Millisecond)
	return busy
}

// TestRedisRefusedJoinClaimsNothing: a join refused as unavailable because Redis answered too
// late must not hold the name when Redis gets round to the claim.
func TestRedisRefusedJoinClaimsNothing(t *testing.T) {
	t.Parallel()
	quick := func(c *RedisConfig) { c.Timeout = 300 * time.Millisecond }
	r, a, b := twoHosts(t, quick)
	a.mustJoin(t, &member{}, "r", "warm") // Redis knows the claim script from then on

	busy := keepBusy(r)
	err := a.join(t, &member{}, "r", "bob", nil)
	var werr *wire.Error
	if !errors.As(err, &werr) || werr.Code != wire.CodeUnavailable {
		t.Fatalf("a join while Redis is busy: %v, want unavailable", err)
	}
	if err := <-busy; err != nil {
		t.Fatalf("the busy script: %v", err)
	}
	if err := b.join(t, &member{}, "r", "bob", nil); err != nil {
		t.Fatalf("bob on host-b after host-a's join of bob was refused: %v", err)
	}
}

// gatedMember is a member whose next Send, once armed, holds its shard until open is
// closed: a stand-in for a shard too busy to take events, whose inbox then fills.
type gatedMember struct {
	member
	armed   atomic.Bool
	entered chan struct{}
	open    chan struct{}
}

func (g *gatedMember) Send(obj []byte) bool {
	if g.armed.CompareAndSwap(true, false) {
		close(g.entered)
		<-g.open
	}
	return g.member.Send(obj)
}

// TestRedisLostPresenceIsReread: presence that a host could not hand to its full shard is
// made good. The host reads the room's roster again and publishes it on the room's channel,
// and its members hear the difference: every join and leave they missed, none twice.
func TestRedisLostPresenceIsReread(t *testing.T) {
	t.Parallel()
	r := testprog.Redis(t)
	a := newRedisHub(t, r.URL(), "t:", "host-a", nil)
	b := cramped(t, r, a)

	carol := &member{}
	b.mustJoin(t, carol, "r", "carol")
	bob := &gatedMember{entered: make(chan struct{}), open: make(chan struct{})}
	if err := b.join(t, bob, "r", "bob", nil); err != nil {
		t.Fatal(err)
	}
	alice, dave, eve, frank := &member{}, &member{}, &member{}, &member{}
	for name, m := range map[string]*member{"alice": alice, "dave": dave, "eve": eve, "frank": frank} {
		a.mustJoin(t, m, "r", name)
	}
	waitUntil(t, "carol to hear of host-a's users", func() bool {
		return slices.Equal(usersHeard(t, carol), []string{"alice", "bob", "carol", "dave", "eve", "frank"})
	})
	// Each host's first member asked for a roster; once both are out, and a message sent
	// after them has come back to carol, nothing else asks for one but what is lost below.
	waitUntil(t, "the first members' rosters", func() bool { return rostersSettled(a) && rostersSettled(b) })
	if err := a.say(t, frank, "r", "frank", "barrier"); err != nil {
		t.Fatal(err)
	}
	carol.waitFor(t, "the barrier", func(evs []wire.Event) bool {
		return slices.ContainsFunc(evs, func(ev wire.Event) bool { return ev.Text == "barrier" })
	})
	before := testutil.ToFloat64(b.bridge.metrics.rosters)

	// Stall host-b's shard on bob, and have users leave meanwhile (a leave asks for no
	// roster): the shard's inbox takes one event, host-b drops the rest.
	bob.armed.Store(true)
	if err := a.say(t, alice, "r", "alice", "stall"); err != nil {
		t.Fatal(err)
	}
	<-bob.entered
	for name, m := range map[string]*member{"alice": alice, "dave": dave, "eve": eve} {
		a.leave(t, m, "r", name)
	}
	waitUntil(t, "host-b to drop presence", func() bool { return testutil.ToFloat64(b.bridge.metrics.handoffDropped) >= 2 })
	close(bob.open)

	want := []string{"bob", "carol", "frank"}
	waitUntil(t, "carol's users to be right again", func() bool { return slices.Equal(usersHeard(t, carol), want) })
	if n := testutil.ToFloat64(b.bridge.metrics.rosters); n <= before {
		t.Fatalf("host-b published %v rosters, none since the stall", n)
	}
	// host-a dropped nothing: the roster, which carol's users show was published, changes
	// nothing its members were told. Once a message sent after it has come back to frank,
	// the roster has come past him too.
	if err := a.say(t, frank, "r", "frank", "after the roster"); err != nil {
		t.Fatal(err)
	}
	frank.waitFor(t, "his message after the roster", func(evs []wire.Event) bool {
		return slices.ContainsFunc(evs, func(ev wire.Event) bool { return ev.Text == "after the roster" })
	})
	if got := usersHeard(t, frank); !slices.Equal(got, want) {
		t.Fatalf("frank's users = %v, want %v", got, want)
	}
}

// cramped starts host-b on r beside a: one shard with an inbox of one command, which a
// gatedMember stalls so that host-b must drop what its channels bring meanwhile.
func cramped(t *testing.T, r *testprog.RedisServer, a *redisHub) *redisHub {
	t.Helper()
	cfg := RedisConfig{URL: r.URL(), Node: "host-b", KeyPrefix: "t:", Logger: a.bridge.log}
	hb, err := New(Config{Shards: 1, Shard: shard.Config{Inbox: 1}, NewBridge: NewRedisBridge(cfg), Logger: cfg.Logger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = hb.Close() })
	return &redisHub{Hub: hb, bridge: hb.bridge.(*RedisBridge), node: "host-b"}
}

// rostersSettled reports whether h has published a roster and wants none now.
func rostersSettled(h *redisHub) bool {
	h.bridge.rostersMu.Lock()
	wanted := len(h.bridge.rosters)
	h.bridge.rostersMu.Unlock()
	return wanted == 0 && testutil.ToFloat64(h.bridge.metrics.rosters) >= 1
}

// usersHeard is m's users of its one room: its joined's, then each presence applied. It fails
// the test on presence that changes nothing m was told (a join or leave heard twice).
func usersHeard(t *testing.T, m *member) []string {
	t.Helper()
	joined := m.of(wire.TypeJoined)
	if len(joined) == 0 {
		t.Fatal("not joined")
	}
	users := slices.Clone(joined[0].Users)
	for _, ev := range m.of(wire.TypePresence) {
		i := slices.Index(users, ev.User)
		switch {
		case ev.Event == wire.PresenceJoin && i < 0:
			users = append(users, ev.User)
		case ev.Event == wire.PresenceLeave && i >= 0:
			users = slices.Delete(users, i, i+1)
		default:
			t.Fatalf("heard %s %s, which changes nothing it was told", ev.User, ev.Event)
		}
	}
	slices.Sort(users)
	return users
}

// TestPruneAnnouncesLeaves: pruning a dead host takes its names out of its rooms, and the
// members there hear each leave, once; a name another host holds stays.
func TestPruneAnnouncesLeaves(t *testing.T) {
	t.Parallel()
	r := testprog.Redis(t)
	h := newRedisHub(t, r.URL(), "t:", "host-a", func(c *RedisConfig) { c.Heartbeat = time.Hour })
	b := h.bridge
	ctx := context.Background()
	// host-x held ghost in room r, and died without a word.
	for _, cmd := range []rueidis.Completed{
		b.client.B().Hset().Key(b.keys.users("r")).FieldValue().FieldValue("ghost", "host-x").FieldValue("other", "host-y").Build(),
		b.client.B().Sadd().Key(b.keys.nodeRooms("host-x")).Member("r").Build(),
	} {
		if err := b.client.Do(ctx, cmd).Error(); err != nil {
			t.Fatal(err)
		}
	}
	alice := &member{}
	if j := h.mustJoin(t, alice, "r", "alice"); !slices.Equal(j.Users, []string{"alice", "ghost", "other"}) {
		t.Fatalf("alice joined with %v", j.Users)
	}
	if err := b.prune(ctx, "host-x"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "alice to hear ghost leave", func() bool { return slices.Equal(usersHeard(t, alice), []string{"alice", "other"}) })
	if n := testutil.ToFloat64(b.metrics.pruned); n != 1 {
		t.Fatalf("%v users pruned, want 1", n)
	}
}

// TestRedisUnreadablePayloadAsksRoster: a payload on a room's channel that a host cannot read
// may have held presence, so the host has the room's roster published, and its members'
// online list is made good from it; the payload is counted as an error.
func TestRedisUnreadablePayloadAsksRoster(t *testing.T) {
	t.Parallel()
	r, a, _ := twoHosts(t, func(c *RedisConfig) { c.Heartbeat = 100 * time.Millisecond })
	alice := &member{}
	a.mustJoin(t, alice, "r", "alice")
	waitUntil(t, "the first member's roster", func() bool { return rostersSettled(a) })
	rosters := testutil.ToFloat64(a.bridge.metrics.rosters)
	errs := testutil.ToFloat64(a.bridge.metrics.errors.WithLabelValues("payload"))

	if _, err := r.Command("PUBLISH", a.bridge.keys.channel("r"), "Q from a newer host\n{}"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "a roster after the unreadable payload", func() bool {
		return testutil.ToFloat64(a.bridge.metrics.rosters) > rosters
	})
	if n := testutil.ToFloat64(a.bridge.metrics.errors.WithLabelValues("payload")); n != errs+1 {
		t.Errorf("payload errors went from %v to %v, want one more", errs, n)
	}
}

// TestRedisDroppedRosterIsAskedAgain: a roster that a host's full shard could not take is
// published again, so that the members there still hear what it would have told them.
func TestRedisDroppedRosterIsAskedAgain(t *testing.T) {
	t.Parallel()
	r := testprog.Redis(t)
	a := newRedisHub(t, r.URL(), "t:", "host-a", nil)
	b := cramped(t, r, a)

	bob := &gatedMember{entered: make(chan struct{}), open: make(chan struct{})}
	if err := b.join(t, bob, "r", "bob", nil); err != nil {
		t.Fatal(err)
	}
	alice := &member{}
	a.mustJoin(t, alice, "r", "alice")
	waitUntil(t, "the first members' rosters", func() bool { return rostersSettled(a) && rostersSettled(b) })
	rosters := testutil.ToFloat64(b.bridge.metrics.rosters)
	dropped := testutil.ToFloat64(b.bridge.metrics.handoffDropped)

	// Stall host-b's shard on bob; the next message fills its inbox of one, and a roster
	// after it on the channel finds the inbox full.
	bob.armed.Store(true)
	if err := a.say(t, alice, "r", "alice", "stall"); err != nil {
		t.Fatal(err)
	}
	<-bob.entered
	if err := a.say(t, alice, "r", "alice", "fill"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Command("PUBLISH", b.bridge.keys.channel("r"), "R 2\nalice\nbob"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "host-b to drop the roster", func() bool {
		return testutil.ToFloat64(b.bridge.metrics.handoffDropped) > dropped
	})
	close(bob.open)
	waitUntil(t, "host-b to publish the roster again", func() bool {
		return testutil.ToFloat64(b.bridge.metrics.rosters) > rosters
	})
	if n := testutil.ToFloat64(b.bridge.metrics.handoffDropped); n != dropped+1 {
		t.Errorf("host-b dropped %v hand-offs, want the roster alone", n-dropped)
	}
}
