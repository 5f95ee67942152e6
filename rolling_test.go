package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/shardchat/shardchat/internal/testprog"
	"github.com/shardchat/shardchat/transport/wire"
)

// TestRollingRestart is a deploy as operators run it: two hosts on one Redis behind nginx
// (deploy/nginx.conf), clients chatting through nginx, and each host in turn gets SIGTERM,
// drains, exits 0 and is started again. The clients of a draining host get 1012, reconnect
// through nginx to the other host and join again with since. Nothing acknowledged may be lost:
// every client sees every message once and in order, and no error other than the 1012 close.
func TestRollingRestart(t *testing.T) {
	redis := testprog.Redis(t)
	portA, portB := testprog.FreePort(t), testprog.FreePort(t)
	if portA == portB {
		t.Fatalf("FreePort gave port %d twice", portA)
	}
	// --history 1000: recovery must cover what a client misses while it reconnects (at 60
	// messages a second, 100 would leave less than two seconds on a loaded machine).
	host := func(node string, port int) *serverProcess {
		return startServe(t, "--redis-url", redis.URL(), "--node", node, "--history", "1000",
			"--addr", "127.0.0.1:"+strconv.Itoa(port))
	}
	a, b := host("host-a", portA), host("host-b", portB)
	frontPort := testprog.FreePort(t)
	testprog.Nginx(t, nginxConf(t, frontPort, a.addr, b.addr))
	front := "ws://127.0.0.1:" + strconv.Itoa(frontPort) + "/ws"
	testprog.WaitTCP(t, "127.0.0.1:"+strconv.Itoa(frontPort))

	const n = 6
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	// The clients call t.Errorf, which must not happen after the test returns.
	defer wg.Wait()
	defer cancel()
	var sending atomic.Bool
	clients := make([]*rollingClient, n)
	for i := range clients {
		clients[i] = &rollingClient{t: t, id: i, user: fmt.Sprintf("user%d", i), url: front, sent: map[string]int{}}
		wg.Add(1)
		go func() { defer wg.Done(); clients[i].run(ctx, &sending) }()
	}
	waitFor(t, 30*time.Second, "every client joined", func() bool {
		for _, c := range clients {
			if c.snapshot().joins == 0 {
				return false
			}
		}
		return true
	})
	perNode := map[string]int{}
	for _, c := range clients {
		perNode[c.snapshot().node]++
	}
	if perNode["host-a"] == 0 || perNode["host-b"] == 0 {
		t.Fatalf("clients per host %v; nginx should have spread them over both", perNode)
	}
	t.Logf("clients per host: %v", perNode)

	sending.Store(true)
	chatSome(t, clients, 5)

	restarts := []struct {
		proc          **serverProcess
		node, newNode string
		port          int
	}{
		{&a, "host-a", "host-a2", portA},
		{&b, "host-b", "host-b2", portB},
	}
	wantReconnects := 0
	for _, r := range restarts {
		for _, c := range clients {
			if c.snapshot().node == r.node {
				wantReconnects++
			}
		}
		start := time.Now()
		if err := (*r.proc).stop(t); err != nil {
			t.Errorf("%s after SIGTERM: %v, want exit 0", r.node, err)
		}
		t.Logf("%s drained and exited in %v", r.node, time.Since(start).Round(time.Millisecond))
		waitFor(t, 60*time.Second, "the clients of "+r.node+" are back", func() bool {
			got := 0
			for _, c := range clients {
				s := c.snapshot()
				if !s.connected || s.node == r.node {
					return false
				}
				got += s.reconnects
			}
			return got == wantReconnects
		})
		*r.proc = host(r.newNode, r.port)
		waitNginxRoutesTo(t, front, r.newNode)
		chatSome(t, clients, 5)
	}
	sending.Store(false)

	// Everything sent on an open connection comes back; then every client is at one seq.
	// The old processes have exited, so nothing sent before a 1012 can still be ordered.
	var last uint64
	waitFor(t, 30*time.Second, "every echo back and every client at the same seq", func() bool {
		last = clients[0].snapshot().last
		for _, c := range clients {
			if s := c.snapshot(); s.pending > 0 || s.last != last {
				return false
			}
		}
		return true
	})
	cancel()
	wg.Wait()
	if t.Failed() {
		return
	}

	// One order everywhere: every client saw seq 1..last, the same message at each seq, and
	// each message once.
	want := clients[0].log
	refs := map[string]bool{}
	for _, ev := range want {
		if refs[ev.Ref] {
			t.Errorf("message %s ordered twice", ev.Ref)
		}
		refs[ev.Ref] = true
	}
	for _, c := range clients {
		if uint64(len(c.log)) != last || last == 0 || c.log[0].Seq != 1 {
			t.Fatalf("%s saw %d messages, want seq 1 to %d", c.user, len(c.log), last)
		}
		for i, ev := range c.log {
			if w := want[i]; ev.Seq != w.Seq || ev.User != w.User || ev.Ref != w.Ref || ev.Text != w.Text {
				t.Fatalf("%s at seq %d: %s %q (%s), but %s saw %s %q (%s)", c.user, ev.Seq, ev.User, ev.Text, ev.Ref,
					clients[0].user, w.User, w.Text, w.Ref)
			}
		}
	}

	var acked, lost, nameTaken, dialRetries int
	var reconnect []time.Duration
	for _, c := range clients {
		for ref, state := range c.sent {
			if state == refAcked {
				acked++
				if !refs[ref] {
					t.Errorf("%s: message %s was acknowledged but is not in the room", c.user, ref)
				}
			} else {
				lost++ // sent just before a 1012 and never ordered: the client knows (no echo)
			}
		}
		nameTaken += c.nameTaken
		dialRetries += c.dialRetries
		reconnect = append(reconnect, c.reconnectTimes...)
	}
	if len(reconnect) != wantReconnects {
		t.Errorf("%d reconnects, want %d (one per client of each restarted host)", len(reconnect), wantReconnects)
	}
	slices.Sort(reconnect)
	t.Logf("%d messages ordered, %d acknowledged to their senders, %d sent but never acknowledged (cut by a 1012)", last, acked, lost)
	t.Logf("reconnect time from the 1012 to joined, %d reconnects: p50 %v, max %v (name_taken retries %d, dial retries %d)",
		len(reconnect), reconnect[len(reconnect)/2].Round(time.Millisecond), reconnect[len(reconnect)-1].Round(time.Millisecond),
		nameTaken, dialRetries)
	if acked == 0 {
		t.Fatal("no message was acknowledged")
	}
}

// The states of a sent message in rollingClient.sent: acknowledged, or not yet and sent on
// the connection with that number (1, 2, ...).
const refAcked = -1

// rollingClient is a chat client that keeps a session open through restarts: it reconnects
// after a 1012, joins again with since, and checks every message it sees against what it saw
// before. Its goroutines report failures with t.Errorf and end with run.
type rollingClient struct {
	// Static after construction.
	t    *testing.T
	id   int
	user string
	url  string

	// Owned by the session's sending goroutine (one at a time).
	nextRef int

	// Guarded by mu: written by run's goroutines, read by the test.
	mu             sync.Mutex
	conns          int // connections opened; sent refs carry the number of theirs
	connected      bool
	node           string
	epoch          string
	last           uint64
	joins          int
	log            []wire.Event   // every message in the order seen: live, and history on rejoins
	sent           map[string]int // ref -> refAcked or the connection it was sent on
	acks           int
	closedAt       time.Time
	reconnectTimes []time.Duration
	nameTaken      int
	dialRetries    int
}

// rollingSnapshot is what the test reads of a client while it runs.
type rollingSnapshot struct {
	connected  bool
	node       string
	last       uint64
	joins      int
	acks       int
	pending    int // messages sent on the open connection and not echoed yet
	reconnects int
}

func (c *rollingClient) snapshot() rollingSnapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := rollingSnapshot{connected: c.connected, node: c.node, last: c.last, joins: c.joins, acks: c.acks,
		reconnects: len(c.reconnectTimes)}
	for _, state := range c.sent {
		if state == c.conns {
			s.pending++
		}
	}
	return s
}

func (c *rollingClient) fail(format string, args ...any) {
	c.t.Errorf("%s: %s", c.user, fmt.Sprintf(format, args...))
}

// run connects, joins and chats until ctx is done, reconnecting after each 1012.
func (c *rollingClient) run(ctx context.Context, sending *atomic.Bool) {
	for {
		conn, node, err := c.connect(ctx)
		if err != nil {
			if ctx.Err() == nil {
				c.fail("connect: %v", err)
			}
			return
		}
		rest, err := c.join(ctx, conn, node)
		if err != nil {
			if ctx.Err() == nil {
				c.fail("join on %s: %v", node, err)
			}
			_ = conn.CloseNow()
			return
		}
		err = c.session(ctx, conn, rest, sending)
		_ = conn.CloseNow()
		if ctx.Err() != nil {
			return // the test is over
		}
		if code := websocket.CloseStatus(err); code != websocket.StatusCode(wire.CloseRestart) {
			c.fail("session on %s ended with %v, want the 1012 close", node, err)
			return
		}
	}
}

// connect dials through nginx until a host takes the upgrade, and reads welcome. nginx
// answers 502 or 503 while no host takes connections: that is retried, with a short backoff.
func (c *rollingClient) connect(ctx context.Context) (*websocket.Conn, string, error) {
	deadline := time.Now().Add(30 * time.Second)
	backoff := 50 * time.Millisecond
	for {
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		conn, resp, err := websocket.Dial(dctx, c.url, nil)
		if err == nil {
			conn.SetReadLimit(1 << 22) // joined with a long recovered history
			_, frame, err := conn.Read(dctx)
			cancel()
			if err != nil {
				_ = conn.CloseNow()
				return nil, "", fmt.Errorf("read welcome: %w", err)
			}
			evs, err := wire.DecodeFrame(nil, frame)
			if err != nil || len(evs) == 0 || evs[0].Type != wire.TypeWelcome {
				_ = conn.CloseNow()
				return nil, "", fmt.Errorf("first frame %q, want welcome (%v)", frame, err)
			}
			return conn, evs[0].Node, nil
		}
		cancel()
		if resp != nil && resp.StatusCode != http.StatusBadGateway && resp.StatusCode != http.StatusServiceUnavailable {
			return nil, "", fmt.Errorf("dial %s: %w", c.url, err)
		}
		if time.Now().After(deadline) {
			return nil, "", fmt.Errorf("dial %s for 30s: %w", c.url, err)
		}
		c.mu.Lock()
		c.dialRetries++
		c.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, "", ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 500*time.Millisecond)
	}
}

// join joins the room, with since after a reconnect, and checks what joined recovers. A
// name_taken for its own name after a reconnect means the server has not yet let go of the
// old connection's name: it retries after a short wait, as docs/protocol.md says, and more
// slowly after a few tries so as to stay under the limit on refused requests.
// It returns the objects that came after joined in its frame.
func (c *rollingClient) join(ctx context.Context, conn *websocket.Conn, node string) ([]wire.Event, error) {
	c.mu.Lock()
	var since *wire.Since
	if c.joins > 0 {
		since = &wire.Since{Epoch: c.epoch, Seq: c.last}
	}
	c.mu.Unlock()
	wait := 100 * time.Millisecond
	for attempt := 0; ; attempt++ {
		req, _ := json.Marshal(wire.ClientRequest{Type: wire.TypeJoin, Room: "deploys", User: c.user, Since: since, Ref: "join"})
		if err := conn.Write(ctx, websocket.MessageText, req); err != nil {
			return nil, fmt.Errorf("send join: %w", err)
		}
		ev, rest, err := readUntil(ctx, conn, wire.TypeJoined, wire.TypeError)
		if err != nil {
			return nil, err
		}
		if ev.Type == wire.TypeError {
			if ev.Code != wire.CodeNameTaken || since == nil || attempt >= 40 {
				return nil, fmt.Errorf("join answered %s: %s (attempt %d)", ev.Code, ev.Message, attempt+1)
			}
			c.mu.Lock()
			c.nameTaken++
			c.mu.Unlock()
			if len(rest) > 0 {
				return nil, fmt.Errorf("objects after a refused join: %+v", rest)
			}
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(wait):
			}
			if attempt >= 5 {
				wait = 1500 * time.Millisecond
			}
			continue
		}
		return rest, c.joined(ev, node, since)
	}
}

// joined takes the joined object: the first join starts the room's record; a rejoin must
// recover exactly the messages after since.
func (c *rollingClient) joined(ev wire.Event, node string, since *wire.Since) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if since == nil {
		if ev.Seq != 0 || len(ev.History) != 0 {
			return fmt.Errorf("first join: seq %d with %d messages, want an empty room", ev.Seq, len(ev.History))
		}
		c.epoch = ev.Epoch
	} else {
		if ev.Epoch != c.epoch || !ev.Recovered {
			return fmt.Errorf("rejoin on %s with since %+v: epoch %q recovered %v, want epoch %q recovered", node, *since,
				ev.Epoch, ev.Recovered, c.epoch)
		}
		for _, m := range ev.History {
			c.observeLocked(m)
		}
		if c.last != ev.Seq {
			return fmt.Errorf("rejoin on %s: history ends at seq %d, joined.seq is %d", node, c.last, ev.Seq)
		}
		c.reconnectTimes = append(c.reconnectTimes, time.Since(c.closedAt))
	}
	c.joins++
	c.conns++
	c.connected = true
	c.node = node
	return nil
}

// observeLocked checks one message against what came before: the next seq, once.
func (c *rollingClient) observeLocked(ev wire.Event) {
	if ev.Seq != c.last+1 {
		c.fail("seq %d after seq %d (%s from %s)", ev.Seq, c.last, ev.Ref, ev.User)
		if ev.Seq <= c.last {
			return // a duplicate: keep the record as it was
		}
	}
	c.last = ev.Seq
	c.log = append(c.log, ev)
	if ev.User != c.user {
		return
	}
	state, ok := c.sent[ev.Ref]
	switch {
	case !ok:
		c.fail("own message with ref %q, which it never sent", ev.Ref)
	case state == refAcked:
		c.fail("own message %s acknowledged twice", ev.Ref)
	default:
		c.sent[ev.Ref] = refAcked
		c.acks++
	}
}

// session takes the objects that came with joined, then reads until the connection ends, while
// a goroutine sends a message every 100 ms whenever sending is on. It returns the error that
// ended the read.
func (c *rollingClient) session(ctx context.Context, conn *websocket.Conn, evs []wire.Event, sending *atomic.Bool) error {
	sctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.chat(sctx, conn, sending)
	}()
	for {
		for _, ev := range evs {
			switch ev.Type {
			case wire.TypeMessage:
				c.mu.Lock()
				c.observeLocked(ev)
				c.mu.Unlock()
			case wire.TypePresence, wire.TypeTyping:
			default:
				c.fail("unexpected %s: %+v", ev.Type, ev)
			}
		}
		_, frame, err := conn.Read(ctx)
		if err != nil {
			c.mu.Lock()
			c.connected = false
			c.closedAt = time.Now()
			c.mu.Unlock()
			return err
		}
		if evs, err = wire.DecodeFrame(evs[:0], frame); err != nil {
			c.fail("%v", err)
			return err
		}
	}
}

func (c *rollingClient) chat(ctx context.Context, conn *websocket.Conn, sending *atomic.Bool) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if !sending.Load() {
			continue
		}
		c.nextRef++
		ref := fmt.Sprintf("u%d-%d", c.id, c.nextRef)
		c.mu.Lock()
		c.sent[ref] = c.conns
		c.mu.Unlock()
		req, _ := json.Marshal(wire.ClientRequest{Type: wire.TypeMessage, Room: "deploys", Text: "message " + ref, Ref: ref})
		if err := conn.Write(ctx, websocket.MessageText, req); err != nil {
			return // the reader sees why the connection ended
		}
	}
}

// readUntil reads objects until one of the given types comes, and returns it with the objects
// after it in its frame; presence and typing of others may come first.
func readUntil(ctx context.Context, conn *websocket.Conn, types ...string) (wire.Event, []wire.Event, error) {
	rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	var evs []wire.Event
	for {
		_, frame, err := conn.Read(rctx)
		if err != nil {
			return wire.Event{}, nil, fmt.Errorf("waiting for %v: %w", types, err)
		}
		if evs, err = wire.DecodeFrame(evs[:0], frame); err != nil {
			return wire.Event{}, nil, err
		}
		for i, ev := range evs {
			if slices.Contains(types, ev.Type) {
				return ev, evs[i+1:], nil
			}
			if ev.Type != wire.TypePresence && ev.Type != wire.TypeTyping {
				return wire.Event{}, nil, fmt.Errorf("waiting for %v: got %+v", types, ev)
			}
		}
	}
}

// chatSome waits until every client has had n more of its own messages acknowledged.
func chatSome(t *testing.T, clients []*rollingClient, n int) {
	t.Helper()
	base := make([]int, len(clients))
	for i, c := range clients {
		base[i] = c.snapshot().acks
	}
	waitFor(t, 30*time.Second, fmt.Sprintf("every client chatting (%d acknowledged messages each)", n), func() bool {
		for i, c := range clients {
			if c.snapshot().acks < base[i]+n {
				return false
			}
		}
		return true
	})
}

// waitNginxRoutesTo waits until a new connection through nginx lands on node: nginx skips a
// host for fail_timeout after failed connects, and an operator waits for the restarted host
// to take traffic before restarting the next one.
func waitNginxRoutesTo(t *testing.T, url, node string) {
	t.Helper()
	waitFor(t, 30*time.Second, "nginx sends new connections to "+node, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn, _, err := websocket.Dial(ctx, url, nil)
		if err != nil {
			return false
		}
		defer conn.CloseNow()
		_, frame, err := conn.Read(ctx)
		if err != nil {
			return false
		}
		evs, err := wire.DecodeFrame(nil, frame)
		return err == nil && len(evs) > 0 && evs[0].Node == node
	})
}

// waitFor polls cond until it holds, failing the test after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting until %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
