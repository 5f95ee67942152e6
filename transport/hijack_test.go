package transport

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/shardchat/shardchat/shard"
)

// TestUpgradeWritesTheGreetingWithThe101: the 101 response and the session's first frame go
// out in one write, for both protocols, with the headers a middleware set before the upgrade;
// and a real client takes the two apart (it checks the 101's accept key).
func TestUpgradeWritesTheGreetingWithThe101(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, path, greeting string
	}{
		{"ws", "/ws", `{"type":"welcome"`},
		{"socketio", "/socket.io/?EIO=4&transport=websocket", `0{"sid":`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := setupTest(t, Config{}, shard.Config{})
			ln := &writeRecorder{Listener: newLoopbackListener(t)}
			hs := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("X-Served-By", "middleware")
				env.srv.Handler().ServeHTTP(w, r)
			}))
			hs.Listener = ln
			hs.Start()
			defer hs.Close()

			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			conn, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(hs.URL, "http")+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = conn.CloseNow() }()
			if got := resp.Header.Get("X-Served-By"); got != "middleware" {
				t.Errorf("X-Served-By in the 101 = %q, want the middleware's header", got)
			}
			_, greeting, err := conn.Read(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(greeting, []byte(tc.greeting)) {
				t.Fatalf("first frame %.60q, want it to start %q", greeting, tc.greeting)
			}
			first := ln.firstWrite()
			if !bytes.HasPrefix(first, []byte("HTTP/1.1 101 Switching Protocols\r\n")) || !bytes.HasSuffix(first, greeting) {
				t.Errorf("the server's first write was %q, want the 101 response and the greeting %q", first, greeting)
			}
		})
	}
}

// writeRecorder is a listener whose connections keep a copy of their first write.
type writeRecorder struct {
	net.Listener
	mu    sync.Mutex
	first []byte
}

func (l *writeRecorder) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &recordedConn{Conn: c, l: l}, nil
}

func (l *writeRecorder) firstWrite() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.first
}

type recordedConn struct {
	net.Conn
	l *writeRecorder
}

func (c *recordedConn) Write(p []byte) (int, error) {
	c.l.mu.Lock()
	if c.l.first == nil {
		c.l.first = bytes.Clone(p)
	}
	c.l.mu.Unlock()
	return c.Conn.Write(p)
}

// newLoopbackListener listens on a free loopback port until the test ends.
func newLoopbackListener(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}
