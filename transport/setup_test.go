package transport

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/shardchat/shardchat/hub"
	"github.com/shardchat/shardchat/shard"
	"github.com/shardchat/shardchat/transport/wire"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testEnv is a real server on a loopback port with its hub and metrics.
type testEnv struct {
	t       testing.TB
	srv     *Server
	hub     *hub.Hub
	http    *httptest.Server
	metrics *Metrics
	url     string
}

// setupTest starts a server with cfg (Hub, Metrics and Logger filled in) and stops it, and
// checks that it left nothing behind, when the test ends.
func setupTest(t testing.TB, cfg Config, shardCfg shard.Config) *testEnv {
	t.Helper()
	reg := prometheus.NewRegistry()
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	h, err := hub.New(hub.Config{Shards: 4, Shard: shardCfg, Registerer: reg, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Hub = h
	cfg.Logger = log
	cfg.Metrics = NewMetrics(reg)
	cfg.Gatherer = reg
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	env := &testEnv{t: t, srv: srv, hub: h, http: hs, metrics: cfg.Metrics, url: "ws" + strings.TrimPrefix(hs.URL, "http") + "/ws"}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		hs.Close()
		if err := h.Close(); err != nil {
			t.Errorf("hub close: %v", err)
		}
	})
	return env
}

// client is a real WebSocket client speaking the protocol, with a reader that splits frames.
type client struct {
	t      testing.TB
	conn   *websocket.Conn
	events chan wire.Event
	done   chan error // the reader's final error (a close error, say)
	frames int
}

func (e *testEnv) dial() *client {
	e.t.Helper()
	c := e.dialNoWelcome()
	ev := c.next()
	if ev.Type != wire.TypeWelcome {
		e.t.Fatalf("first object is %q, want welcome", ev.Type)
	}
	return c
}

func (e *testEnv) dialNoWelcome() *client {
	e.t.Helper()
	c := e.dialSilent()
	c.startReading()
	return c
}

func (c *client) readLoop() {
	for {
		_, frame, err := c.conn.Read(context.Background())
		if err != nil {
			c.done <- err
			close(c.events)
			return
		}
		c.frames++
		evs, err := wire.DecodeFrame(nil, frame)
		if err != nil {
			c.done <- err
			close(c.events)
			return
		}
		for _, ev := range evs {
			c.events <- ev
		}
	}
}

// send writes one request object.
func (c *client) send(req wire.ClientRequest) {
	c.t.Helper()
	b, err := json.Marshal(req)
	if err != nil {
		c.t.Fatal(err)
	}
	c.sendRaw(string(b))
}

func (c *client) sendRaw(frame string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.conn.Write(ctx, websocket.MessageText, []byte(frame)); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// next returns the next object, failing the test after a timeout.
func (c *client) next() wire.Event {
	c.t.Helper()
	select {
	case ev, ok := <-c.events:
		if !ok {
			c.t.Fatalf("connection ended while waiting for an object: %v", c.closeErr())
		}
		return ev
	case <-time.After(10 * time.Second):
		c.t.Fatalf("no object within 10s")
	}
	return wire.Event{}
}

// nextOf returns the next object of type typ, skipping others.
func (c *client) nextOf(typ string) wire.Event {
	c.t.Helper()
	for {
		if ev := c.next(); ev.Type == typ {
			return ev
		}
	}
}

// expectNone checks that no object arrives within d.
func (c *client) expectNone(d time.Duration) {
	c.t.Helper()
	select {
	case ev, ok := <-c.events:
		if ok {
			c.t.Fatalf("unexpected object %+v", ev)
		}
	case <-time.After(d):
	}
}

// closeErr waits for the connection to end and returns why.
func (c *client) closeErr() error {
	for range c.events {
	}
	err := <-c.done
	c.done <- err
	return err
}

// expectClose waits for the connection to end with code.
func (c *client) expectClose(code wire.CloseCode) {
	c.t.Helper()
	done := make(chan error, 1)
	go func() { done <- c.closeErr() }()
	select {
	case err := <-done:
		if got := websocket.CloseStatus(err); got != websocket.StatusCode(code) {
			c.t.Fatalf("closed with %d (%v), want %d", got, err, code)
		}
	case <-time.After(15 * time.Second):
		c.t.Fatalf("not closed within 15s, want %d", code)
	}
}

func (c *client) join(room, user string) wire.Event {
	c.t.Helper()
	c.send(wire.ClientRequest{Type: wire.TypeJoin, Room: room, User: user, Ref: "j-" + room})
	ev := c.nextOf(wire.TypeJoined)
	if ev.Room != room {
		c.t.Fatalf("joined %q, want %q", ev.Room, room)
	}
	return ev
}

// expectError reads objects up to the next error and checks its code and ref.
func (c *client) expectError(code wire.Code, ref string) wire.Event {
	c.t.Helper()
	ev := c.nextOf(wire.TypeError)
	if ev.Code != code || ev.Ref != ref {
		c.t.Fatalf("error %s (ref %q, %q), want %s (ref %q)", ev.Code, ev.Ref, ev.Message, code, ref)
	}
	if ev.Message == "" {
		c.t.Fatalf("error %s without a message", ev.Code)
	}
	return ev
}

func refusedCount(m *Metrics, code wire.Code) float64 {
	return testutil.ToFloat64(m.refused.WithLabelValues(string(code), "ws"))
}

func closedCount(m *Metrics, code wire.CloseCode) float64 {
	return testutil.ToFloat64(m.closes.WithLabelValues(fmt.Sprint(int(code)), "ws"))
}

func on(b bool) *bool { return &b }

// dialSilent connects without reading: the server's writes pile up in the socket buffers
// until startReading is called.
func (e *testEnv) dialSilent() *client { return e.dialSilentWith(nil) }

// dialSilentSmall dials with a 4 KiB receive buffer, so that a client that does not read
// backs the server up after a few frames rather than megabytes of them.
func (e *testEnv) dialSilentSmall() *client {
	dialer := &net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		return errors.Join(err, serr)
	}}
	return e.dialSilentWith(&websocket.DialOptions{HTTPClient: &http.Client{Transport: &http.Transport{DialContext: dialer.DialContext}}})
}

func (e *testEnv) dialSilentWith(opts *websocket.DialOptions) *client {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, e.url, opts)
	if err != nil {
		e.t.Fatalf("dial: %v", err)
	}
	conn.SetReadLimit(-1)
	c := &client{t: e.t, conn: conn, events: make(chan wire.Event, 100000), done: make(chan error, 1)}
	e.t.Cleanup(func() { _ = conn.CloseNow() })
	return c
}

func (c *client) startReading() {
	go c.readLoop()
	c.t.Cleanup(func() {
		_ = c.conn.CloseNow()
		c.closeErr()
	})
}

// findSession waits for a session of the server that match accepts, and returns it.
func (e *testEnv) findSession(t testing.TB, match func(*session) bool) *session {
	t.Helper()
	var found *session
	waitFor(t, func() bool {
		e.srv.mu.Lock()
		defer e.srv.mu.Unlock()
		for s := range e.srv.sessions {
			if match(s) {
				found = s
				return true
			}
		}
		return false
	})
	return found
}

// onlySession waits for the server's one session and returns it.
func (e *testEnv) onlySession(t testing.TB) *session {
	t.Helper()
	return e.findSession(t, func(*session) bool { return true })
}

// sessionOf waits for the session of user: the reader records the user once the shard has
// answered the join, maybe after the client read its joined.
func (e *testEnv) sessionOf(t testing.TB, user string) *session {
	t.Helper()
	return e.findSession(t, func(s *session) bool {
		s.roomsMu.Lock()
		defer s.roomsMu.Unlock()
		return s.user == user
	})
}

// waitWriterRetired waits until sess has no writer: what is queued then goes out only if
// something wakes one (a lingering writer would take it on its own, and hide a missing wake).
func waitWriterRetired(t testing.TB, sess *session) {
	t.Helper()
	waitFor(t, func() bool {
		sess.writerMu.Lock()
		defer sess.writerMu.Unlock()
		return !sess.writerOn
	})
}
