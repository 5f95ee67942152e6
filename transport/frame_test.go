package transport

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/shardchat/shardchat/shard"
	"github.com/shardchat/shardchat/transport/wire"
)

func TestFrameHeader(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		n    int
		want []byte
	}{
		{0, []byte{0x81, 0}},
		{125, []byte{0x81, 125}},
		{126, []byte{0x81, 126, 0, 126}},
		{65535, []byte{0x81, 126, 0xff, 0xff}},
		{65536, []byte{0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0}},
	} {
		var hdr [maxFrameHeader]byte
		start := putFrameHeader(hdr[:], tc.n)
		if got := hdr[start:]; string(got) != string(tc.want) {
			t.Errorf("header of %d bytes = % x, want % x", tc.n, got, tc.want)
		}
	}
}

// TestFramesReachRealClients writes frames around every header size boundary, joined and not,
// and a real client reads each back whole.
func TestFramesReachRealClients(t *testing.T) {
	t.Parallel()
	env := setupTest(t, Config{FrameCap: 1 << 20}, shard.Config{})
	c := env.dialSilent()
	defer c.conn.CloseNow()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, _, err := c.conn.Read(ctx); err != nil { // welcome
		t.Fatal(err)
	}
	var sess *session
	waitFor(t, func() bool {
		env.srv.mu.Lock()
		defer env.srv.mu.Unlock()
		for s := range env.srv.sessions {
			sess = s
		}
		return sess != nil
	})
	if sess.raw == nil {
		t.Fatal("the server did not get the connection at the upgrade")
	}
	for _, n := range []int{1, 124, 125, 126, 127, 65534, 65535, 65536, 70000} {
		obj := []byte(strings.Repeat("x", n))
		if sess.Send(obj) {
			sess.Flush()
		}
		_, got, err := c.conn.Read(ctx)
		if err != nil || len(got) != n {
			t.Fatalf("payload of %d bytes: read %d bytes, %v", n, len(got), err)
		}
	}
	// Two objects queued together arrive in one frame, joined by a newline.
	sess.Send([]byte("a"))
	if sess.Send([]byte("b")) {
		t.Fatal("a second object into a waiting outbox asked for a wake")
	}
	sess.Flush()
	if _, got, err := c.conn.Read(ctx); err != nil || string(got) != "a\nb" {
		t.Fatalf("joined frame %q, %v", got, err)
	}
}

// unwrapOnly hides the ResponseWriter's Hijacker behind Unwrap, as some middleware does: the
// library still hijacks, but the server does not get the connection and writes through the
// library instead.
type unwrapOnly struct{ w http.ResponseWriter }

func (u unwrapOnly) Header() http.Header         { return u.w.Header() }
func (u unwrapOnly) Write(b []byte) (int, error) { return u.w.Write(b) }
func (u unwrapOnly) WriteHeader(code int)        { u.w.WriteHeader(code) }
func (u unwrapOnly) Unwrap() http.ResponseWriter { return u.w }

func TestWritesWithoutTheConnection(t *testing.T) {
	t.Parallel()
	env := setupTest(t, Config{}, shard.Config{})
	wrapped := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		env.srv.Handler().ServeHTTP(unwrapOnly{w}, r)
	}))
	defer wrapped.Close()
	env.url = "ws" + strings.TrimPrefix(wrapped.URL, "http") + "/ws"
	a, b := env.dial(), env.dial()
	a.join("r", "a")
	b.join("r", "b")
	a.send(wire.ClientRequest{Type: wire.TypeMessage, Room: "r", Text: "through the library"})
	if m := b.nextOf(wire.TypeMessage); m.Text != "through the library" {
		t.Fatalf("got %+v", m)
	}
	env.srv.mu.Lock()
	for s := range env.srv.sessions {
		if s.raw != nil {
			t.Error("a session got the connection through a writer that hides it")
		}
	}
	env.srv.mu.Unlock()
}
