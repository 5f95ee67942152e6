package bench

import (
	"bufio"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/shardchat/shardchat/transport/wire"
)

const testWelcome = `{"type":"welcome","proto":1,"node":"n","limits":{"text":4000,"rooms":16,"rate":10,"burst":20}}`

// TestUpgradeTransport holds the bench's own upgrade against servers of the test's own, each
// answering in one way: what the server sends with its 101 is not lost with the reader the
// response was read through; the dial's context bounds the handshake and only the
// handshake; a refusal's body is readable and closing it closes the connection.
func TestUpgradeTransport(t *testing.T) {
	t.Parallel()
	dial := func(ctx context.Context, url string) (*websocket.Conn, *http.Response, error) {
		return websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: httpClients(nil, nil)[0]})
	}
	readWelcome := func(t *testing.T, ctx context.Context, conn *websocket.Conn) {
		t.Helper()
		_, frame, err := conn.Read(ctx)
		if err != nil {
			t.Fatalf("no welcome: %v", err)
		}
		if events, err := wire.DecodeFrame(nil, frame); err != nil || events[0].Type != wire.TypeWelcome {
			t.Fatalf("first frame %q (%v), want a welcome", frame, err)
		}
	}

	t.Run("welcome with the 101", func(t *testing.T) {
		t.Parallel()
		// A server may send its first frames in the same write as its 101 (shardchat does
		// not, but others do).
		url := serveRaw(t, func(c net.Conn, req *http.Request) {
			_, _ = io.WriteString(c, switching(req)+welcomeFrame())
		})
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		for range 3 { // each on its own connection
			conn, _, err := dial(ctx, url)
			if err != nil {
				t.Fatal(err)
			}
			readWelcome(t, ctx, conn)
			_ = conn.CloseNow()
		}
	})

	t.Run("deadline after the upgrade", func(t *testing.T) {
		t.Parallel()
		// The dial's deadline passes while the connection waits for its welcome: it bounds
		// the handshake only.
		url := serveRaw(t, func(c net.Conn, req *http.Request) {
			_, _ = io.WriteString(c, switching(req))
			time.Sleep(300 * time.Millisecond)
			_, _ = io.WriteString(c, welcomeFrame())
		})
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		conn, _, err := dial(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = conn.CloseNow() }()
		readWelcome(t, t.Context(), conn)
	})

	t.Run("silent server", func(t *testing.T) {
		t.Parallel()
		url := serveRaw(t, silent)
		// One reason for every connection that timed out, so that the bench counts them
		// together (a socket's timeout names its local port).
		reasons := map[string]int{}
		for range 3 {
			ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
			_, resp, err := dial(ctx, url)
			cancel()
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Dial = %v, want the context's deadline", err)
			}
			reasons[dialReason(resp, err)]++
		}
		if reasons["timed out"] != 3 {
			t.Errorf("reasons %v, want timed out 3 times", reasons)
		}
	})

	t.Run("cancelled, no deadline", func(t *testing.T) {
		t.Parallel()
		url := serveRaw(t, silent)
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(100*time.Millisecond, cancel)
		if _, _, err := dial(ctx, url); !errors.Is(err, context.Canceled) {
			t.Fatalf("Dial = %v, want the context's cancellation", err)
		}
	})

	t.Run("refused", func(t *testing.T) {
		t.Parallel()
		closed := make(chan error, 1)
		url := serveRaw(t, func(c net.Conn, req *http.Request) {
			_, _ = io.WriteString(c, "HTTP/1.1 429 Too Many Requests\r\nContent-Length: 15\r\n\r\ncome back later")
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err := c.Read(make([]byte, 1))
			closed <- err
		})
		_, resp, err := dial(t.Context(), url)
		if err == nil {
			t.Fatal("Dial of a refusal succeeded")
		}
		if got := dialReason(resp, err); !strings.HasPrefix(got, "refused with HTTP 429: come back later") {
			t.Errorf("reason %q, want the refusal and its body", got)
		}
		if err := <-closed; !errors.Is(err, io.EOF) {
			t.Errorf("the server read %v after its refusal, want the client's close", err)
		}
	})
}

// serveRaw serves WebSocket upgrades on a loopback port with handle, which answers the
// request on the bare connection, until the test ends; it returns the ws:// URL.
func serveRaw(t *testing.T, handle func(c net.Conn, req *http.Request)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				if req, err := http.ReadRequest(bufio.NewReader(c)); err == nil {
					handle(c, req)
				}
			})
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return "ws://" + ln.Addr().String() + "/ws"
}

// silent reads the connection and answers nothing, until the client closes it.
func silent(c net.Conn, _ *http.Request) { _, _ = io.Copy(io.Discard, c) }

// switching is the 101 response to req.
func switching(req *http.Request) string {
	sum := sha1.Sum([]byte(req.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: " + base64.StdEncoding.EncodeToString(sum[:]) + "\r\n\r\n"
}

// welcomeFrame is a welcome in a text frame (under 126 bytes: a one-byte length).
func welcomeFrame() string { return string([]byte{0x81, byte(len(testWelcome))}) + testWelcome }
