package bench

import (
	"context"
	"log/slog"
	"net"
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
		url, stop, err := testServer(ServerConfig{}, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = stop() })
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		for range 3 { // each on its own connection
			conn, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: httpClients(nil, nil)[0]})
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
			_ = conn.Close(websocket.StatusNormalClosure, "")
		}
	})
	t.Run("silent server", func(t *testing.T) {
		t.Parallel()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		held := make(chan net.Conn, 1)
		go func() {
			c, err := ln.Accept()
			if err == nil {
				held <- c // read nothing, answer nothing
			}
		}()
		t.Cleanup(func() {
			_ = ln.Close()
			select {
			case c := <-held:
				_ = c.Close()
			default:
			}
		})
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		defer cancel()
		_, _, err = websocket.Dial(ctx, "ws://"+ln.Addr().String()+"/ws", &websocket.DialOptions{HTTPClient: httpClients(nil, nil)[0]})
		if err == nil || !strings.Contains(err.Error(), "timeout") {
			t.Fatalf("Dial = %v, want a timeout once its context ends", err)
		}
	})
}
