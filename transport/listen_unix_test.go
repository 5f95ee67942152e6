//go:build unix

package transport

import (
	"context"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/shardchat/shardchat/shard"
)

// TestListenerWithoutKeepAlive: ListenAndServe turns TCP keepalive off on the connections it
// accepts; the server's pings find a peer that went away.
func TestListenerWithoutKeepAlive(t *testing.T) {
	t.Parallel()
	env := setupTest(t, Config{}, shard.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	addrs := make(chan net.Addr, 1)
	served := make(chan error, 1)
	go func() {
		served <- env.srv.ListenAndServe(ctx, "127.0.0.1:0", time.Second, func(a net.Addr) { addrs <- a })
	}()
	addr := (<-addrs).String()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("ListenAndServe: %v", err)
		}
	})

	dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer dcancel()
	conn, _, err := websocket.Dial(dctx, "ws://"+addr+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.CloseNow() }()
	sess := env.findSession(t, func(s *session) bool { return s.raw != nil && s.raw.LocalAddr().String() == addr })
	sc, err := sess.raw.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	keepAlive := -1
	if err := sc.Control(func(fd uintptr) {
		keepAlive, err = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_KEEPALIVE)
	}); err != nil {
		t.Fatal(err)
	}
	if err != nil || keepAlive != 0 {
		t.Fatalf("SO_KEEPALIVE = %d (%v), want 0", keepAlive, err)
	}
}
