package bench

import (
	"bufio"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/shardchat/shardchat/transport/wire"
)

// TestUpgradeTransport holds the bench's own upgrade: the server's first frame comes in the
// same packet as its 101, and must not be lost with the reader that read the response; a
// server that never answers gives an error once the dial's context ends, not a hang.
func TestUpgradeTransport(t *testing.T) {
	t.Parallel()
	t.Run("welcome with the 101", func(t *testing.T) {
		t.Parallel()
		// A server may send its first frames in the same write as its 101 (shardchat does
		// not, but others do): they end up in the reader the response was read through.
		ln := listenLoopback(t)
		welcome := `{"type":"welcome","proto":1,"node":"n","limits":{"text":4000,"rooms":16,"rate":10,"burst":20}}`
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer func() { _ = c.Close() }()
					req, err := http.ReadRequest(bufio.NewReader(c))
					if err != nil {
						return
					}
					sum := sha1.Sum([]byte(req.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
					out := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
						"Sec-WebSocket-Accept: " + base64.StdEncoding.EncodeToString(sum[:]) + "\r\n\r\n" +
						string([]byte{0x81, byte(len(welcome))}) + welcome // a text frame under 126 bytes
					_, _ = c.Write([]byte(out))
					_, _ = io.Copy(io.Discard, c) // until the client closes
				}()
			}
		}()
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		for range 3 { // each on its own connection
			conn, _, err := websocket.Dial(ctx, "ws://"+ln.Addr().String()+"/ws", &websocket.DialOptions{HTTPClient: httpClients(nil, nil)[0]})
			if err != nil {
				t.Fatal(err)
			}
			_, frame, err := conn.Read(ctx)
			if err != nil {
				t.Fatalf("no welcome: %v", err)
			}
			if events, err := wire.DecodeFrame(nil, frame); err != nil || events[0].Type != wire.TypeWelcome {
				t.Fatalf("first frame %q (%v), want a welcome", frame, err)
			}
			_ = conn.CloseNow()
		}
	})
	t.Run("silent server", func(t *testing.T) {
		t.Parallel()
		ln := listenLoopback(t)
		held := make(chan net.Conn, 1)
		go func() {
			c, err := ln.Accept()
			if err == nil {
				held <- c // read nothing, answer nothing
			}
		}()
		t.Cleanup(func() {
			select {
			case c := <-held:
				_ = c.Close()
			default:
			}
		})
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		defer cancel()
		_, _, err := websocket.Dial(ctx, "ws://"+ln.Addr().String()+"/ws", &websocket.DialOptions{HTTPClient: httpClients(nil, nil)[0]})
		if err == nil || !strings.Contains(err.Error(), "timeout") {
			t.Fatalf("Dial = %v, want a timeout once its context ends", err)
		}
	})
}

// listenLoopback listens on a free loopback port until the test ends.
func listenLoopback(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	return ln
}
