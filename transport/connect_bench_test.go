package transport

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"

	"github.com/shardchat/shardchat/shard"
)

// BenchmarkConnect measures a connection's whole life on the server, as a connection storm
// costs it: a raw client (so that most of what is measured is the server's) dials, upgrades,
// reads its welcome, and closes with a close handshake; with join, it also joins a room of
// its own and reads joined. Allocations count both sides, the client's few among them.
func BenchmarkConnect(b *testing.B) {
	for _, tc := range []struct {
		name string
		join bool
	}{{"welcome", false}, {"join", true}} {
		b.Run(tc.name, func(b *testing.B) {
			env := setupTest(b, Config{}, shard.Config{})
			addr := env.http.Listener.Addr().String()
			request := []byte(upgradeRequest(addr))
			join := appendMaskedFrame(nil, `{"type":"join","room":"bench","user":"ann","ref":"j"}`)
			closeFrame := maskedClose()
			b.ReportAllocs()
			for b.Loop() {
				conn, err := net.Dial("tcp", addr)
				if err != nil {
					b.Fatal(err)
				}
				r := bufio.NewReader(conn)
				if _, err := conn.Write(request); err != nil {
					b.Fatal(err)
				}
				resp, err := http.ReadResponse(r, nil)
				if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
					b.Fatalf("upgrade: %v %v", resp, err)
				}
				if op, _, err := nextServerFrame(r); err != nil || op != 0x81 {
					b.Fatalf("welcome: %#x %v", op, err)
				}
				if tc.join {
					if _, err := conn.Write(join); err != nil {
						b.Fatal(err)
					}
					if op, _, err := nextServerFrame(r); err != nil || op != 0x81 {
						b.Fatalf("joined: %#x %v", op, err)
					}
				}
				if _, err := conn.Write(closeFrame); err != nil {
					b.Fatal(err)
				}
				// The server's close frame, then the end of the stream once it has closed.
				if _, err := io.Copy(io.Discard, r); err != nil {
					b.Fatal(err)
				}
				_ = conn.Close()
			}
		})
	}
}
