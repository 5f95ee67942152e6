package transport

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
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
	sess := env.onlySession(t)
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
	// Two objects queued together arrive in one frame, joined by a newline. Queued once the
	// writer has retired: a running one could take "a" before "b" is in.
	waitWriterRetired(t, sess)
	sess.Send([]byte("a"))
	if sess.Send([]byte("b")) {
		t.Fatal("a second object into a waiting outbox asked for a wake")
	}
	sess.Flush()
	if _, got, err := c.conn.Read(ctx); err != nil || string(got) != "a\nb" {
		t.Fatalf("joined frame %q, %v", got, err)
	}
}

// unwrapOnly hides the ResponseWriter's Hijacker behind Unwrap, as some middleware does.
type unwrapOnly struct{ w http.ResponseWriter }

func (u unwrapOnly) Header() http.Header         { return u.w.Header() }
func (u unwrapOnly) Write(b []byte) (int, error) { return u.w.Write(b) }
func (u unwrapOnly) WriteHeader(code int)        { u.w.WriteHeader(code) }
func (u unwrapOnly) Unwrap() http.ResponseWriter { return u.w }

// TestUpgradeUnderMiddleware: behind middleware that hides the Hijacker behind Unwrap, the
// server still gets the connection and writes to it itself, as without the middleware.
func TestUpgradeUnderMiddleware(t *testing.T) {
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
	a.send(wire.ClientRequest{Type: wire.TypeMessage, Room: "r", Text: "under middleware"})
	if m := b.nextOf(wire.TypeMessage); m.Text != "under middleware" {
		t.Fatalf("got %+v", m)
	}
	env.srv.mu.Lock()
	for s := range env.srv.sessions {
		if s.raw == nil {
			t.Error("a session did not get the connection through a writer that hides it behind Unwrap")
		}
	}
	env.srv.mu.Unlock()
}

// TestFramesSentWithTheUpgrade: a client may send its first frames in the same packet as the
// upgrade request, so that the server reads them with the request; they must reach the
// session in order, not be lost with the stream behind them.
func TestFramesSentWithTheUpgrade(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		texts []string
	}{
		{"one message", []string{"first words"}},
		// More than the reader's 1 KiB buffer: it must grow to hold them.
		{"past the read buffer", []string{strings.Repeat("a", 600), strings.Repeat("b", 600), strings.Repeat("c", 600)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := setupTest(t, Config{}, shard.Config{})
			early := appendMaskedFrame(nil, `{"type":"join","room":"early","user":"ann","ref":"j"}`)
			for i, text := range tc.texts {
				early = appendMaskedFrame(early, fmt.Sprintf(`{"type":"message","room":"early","text":%q,"ref":"m%d"}`, text, i))
			}
			_, r := rawUpgrade(t, env, early)

			var types, texts []string
			for len(texts) < len(tc.texts) {
				for _, ev := range readServerEvents(t, r) {
					types = append(types, ev.Type)
					if ev.Type == wire.TypeMessage {
						texts = append(texts, ev.Text)
					}
				}
			}
			if !slices.Equal(texts, tc.texts) {
				t.Errorf("the server echoed %d messages %.20q, want the %d sent with the upgrade", len(texts), texts, len(tc.texts))
			}
			if types[0] != wire.TypeWelcome || types[1] != wire.TypeJoined {
				t.Errorf("the server sent %q first, want welcome and joined", types[:2])
			}
		})
	}
}

// TestFramesInPiecesAndTogether: the reader waits for input before it reads a frame (idle.go),
// so frames that arrive together (the second one already buffered) and a frame that arrives
// in pieces must each be read, in order, without waiting for more.
func TestFramesInPiecesAndTogether(t *testing.T) {
	t.Parallel()
	env := setupTest(t, Config{}, shard.Config{})
	conn, r := rawUpgrade(t, env, nil)
	if evs := readServerEvents(t, r); evs[0].Type != wire.TypeWelcome {
		t.Fatalf("first object %q, want welcome", evs[0].Type)
	}
	ping := func(ref string) []byte { return appendMaskedFrame(nil, `{"type":"ping","ref":"`+ref+`"}`) }
	var refs []string
	pongs := func(n int) {
		for len(refs) < n {
			for _, ev := range readServerEvents(t, r) {
				if ev.Type != wire.TypePong {
					t.Fatalf("got %q, want pongs", ev.Type)
				}
				refs = append(refs, ev.Ref)
			}
		}
	}
	// Both answered before anything else is sent: the second must not wait for more input.
	if _, err := conn.Write(append(ping("1"), ping("2")...)); err != nil {
		t.Fatal(err)
	}
	pongs(2)
	third := ping("3")
	for _, piece := range [][]byte{third[:1], third[1:4], third[4:]} {
		time.Sleep(20 * time.Millisecond) // each piece its own segment, read on its own
		if _, err := conn.Write(piece); err != nil {
			t.Fatal(err)
		}
	}
	pongs(3)
	if want := []string{"1", "2", "3"}; !slices.Equal(refs, want) {
		t.Errorf("pongs for %q, want %q", refs, want)
	}
}

// TestPongWithMoreBehindIt: the reader takes a client's pong off the socket itself while it
// waits (idle.go); what came in the same packet behind the pong must be read at once, without
// waiting for more bytes that may never come.
func TestPongWithMoreBehindIt(t *testing.T) {
	t.Parallel()
	message := appendMaskedFrame(nil, `{"type":"message","room":"r","text":"behind a pong","ref":"m"}`)
	closeFrame := maskedClose()
	for _, tc := range []struct {
		name   string
		behind []byte
		want   func(op byte, payload []byte) bool
	}{
		{"a message", message, func(op byte, payload []byte) bool {
			return op == 0x81 && strings.Contains(string(payload), "behind a pong")
		}},
		{"a close frame", closeFrame, func(op byte, _ []byte) bool { return op == 0x88 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := setupTest(t, Config{}, shard.Config{})
			conn, r := rawUpgrade(t, env, appendMaskedFrame(nil, `{"type":"join","room":"r","user":"ann","ref":"j"}`))
			for joined := false; !joined; {
				for _, ev := range readServerEvents(t, r) {
					joined = joined || ev.Type == wire.TypeJoined
				}
			}
			if env.srv.poller != nil {
				waitFor(t, env.sessionOf(t, "ann").parked.Load) // parked after its first frame
			} else {
				time.Sleep(50 * time.Millisecond) // the reader is back waiting for input
			}
			pong := []byte{0x8a, 0x80, 9, 9, 9, 9}
			if _, err := conn.Write(append(pong, tc.behind...)); err != nil {
				t.Fatal(err)
			}
			_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			for {
				op, payload, err := nextServerFrame(r)
				if err != nil {
					t.Fatalf("what came behind the pong was not served: %v", err)
				}
				if tc.want(op, payload) {
					return
				}
			}
		})
	}
}

// upgradeRequest is an upgrade of /ws to host, as a raw client writes it.
func upgradeRequest(host string) string {
	return "GET /ws HTTP/1.1\r\nHost: " + host + "\r\n" +
		"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
}

// maskedClose is a client's close frame with status 1000: opcode 8, masked, its payload the
// two status bytes.
func maskedClose() []byte { return []byte{0x88, 0x82, 1, 2, 3, 4, 0x03 ^ 1, 0xe8 ^ 2} }

// rawUpgrade upgrades a plain TCP connection to env's WebSocket endpoint, with extra bytes
// after the request in the same write, and returns it with a reader past the 101 response.
func rawUpgrade(t *testing.T, env *testEnv, extra []byte) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("tcp", env.http.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write(append([]byte(upgradeRequest(env.http.Listener.Addr().String())), extra...)); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(conn)
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade answered %s", resp.Status)
	}
	return conn, r
}

// readServerEvents reads one frame from the server and decodes its objects, failing on an
// error object.
func readServerEvents(t *testing.T, r *bufio.Reader) []wire.Event {
	t.Helper()
	payload := readServerFrame(t, r)
	events, err := wire.DecodeFrame(nil, payload)
	if err != nil {
		t.Fatalf("frame %q: %v", payload, err)
	}
	for _, ev := range events {
		if ev.Type == wire.TypeError {
			t.Fatalf("the server answered %+v", ev)
		}
	}
	return events
}

// appendMaskedFrame appends a client's final text frame with payload p (RFC 6455, 5.2),
// masked with a fixed key: the server must unmask whatever key it is given.
func appendMaskedFrame(dst []byte, p string) []byte {
	key := [4]byte{0x12, 0x34, 0x56, 0x78}
	dst = append(dst, 0x81)
	switch n := len(p); {
	case n < 126:
		dst = append(dst, 0x80|byte(n))
	default:
		dst = append(dst, 0x80|126, byte(n>>8), byte(n))
	}
	dst = append(dst, key[:]...)
	for i := range len(p) {
		dst = append(dst, p[i]^key[i%4])
	}
	return dst
}

// readServerFrame reads one unmasked, final text frame from the server and returns its payload.
func readServerFrame(t *testing.T, r *bufio.Reader) []byte {
	t.Helper()
	op, payload, err := nextServerFrame(r)
	if err != nil {
		t.Fatal(err)
	}
	if op != 0x81 {
		t.Fatalf("frame opcode byte %#x: want a final text frame", op)
	}
	return payload
}

// nextServerFrame reads one unmasked frame from the server: its first byte (FIN and opcode)
// and its payload.
func nextServerFrame(r *bufio.Reader) (byte, []byte, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	if hdr[1]&0x80 != 0 {
		return 0, nil, fmt.Errorf("frame header % x: a server's frames are not masked", hdr)
	}
	n := uint64(hdr[1] & 0x7f)
	switch n {
	case 126:
		var ext [2]byte
		if _, err := io.ReadFull(r, ext[:]); err != nil {
			return 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(ext[:]))
	case 127:
		var ext [8]byte
		if _, err := io.ReadFull(r, ext[:]); err != nil {
			return 0, nil, err
		}
		n = binary.BigEndian.Uint64(ext[:])
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		return 0, nil, err
	}
	return hdr[0], payload, nil
}
