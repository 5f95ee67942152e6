package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/shardchat/shardchat/internal/testprog"
	"github.com/shardchat/shardchat/transport/wire"
)

// nginxConf is deploy/nginx.conf pointed at the given hosts and listening on port.
func nginxConf(t *testing.T, port int, hosts ...string) string {
	t.Helper()
	b, err := os.ReadFile("deploy/nginx.conf")
	if err != nil {
		t.Fatal(err)
	}
	conf := string(b)
	upstreams := ""
	for _, h := range hosts {
		upstreams += "        server " + h + " max_fails=3 fail_timeout=5s;\n"
	}
	for _, line := range []string{"        server shardchat-a:3000 max_fails=3 fail_timeout=5s;\n", "        server shardchat-b:3000 max_fails=3 fail_timeout=5s;\n"} {
		if !strings.Contains(conf, line) {
			t.Fatalf("deploy/nginx.conf lacks %q; keep this test in step with it", line)
		}
		conf = strings.Replace(conf, line, upstreams, 1)
		upstreams = ""
	}
	conf = strings.Replace(conf, "listen 80;", "listen 127.0.0.1:"+strconv.Itoa(port)+";", 1)
	return strings.Replace(conf, "worker_processes auto;", "worker_processes 1;", 1)
}

// wsClient is a protocol client over a real WebSocket.
type wsClient struct {
	t    *testing.T
	conn *websocket.Conn
	node string
	evs  []wire.Event
}

func dialWS(t *testing.T, url string) *wsClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	t.Cleanup(func() { _ = conn.CloseNow() })
	c := &wsClient{t: t, conn: conn}
	w := c.next()
	if w.Type != wire.TypeWelcome {
		t.Fatalf("first object %+v", w)
	}
	c.node = w.Node
	return c
}

func (c *wsClient) send(req wire.ClientRequest) {
	c.t.Helper()
	b, _ := json.Marshal(req)
	if err := c.conn.Write(context.Background(), websocket.MessageText, b); err != nil {
		c.t.Fatal(err)
	}
}

func (c *wsClient) next() wire.Event {
	c.t.Helper()
	for len(c.evs) == 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		_, frame, err := c.conn.Read(ctx)
		cancel()
		if err != nil {
			c.t.Fatalf("read: %v", err)
		}
		if c.evs, err = wire.DecodeFrame(c.evs, frame); err != nil {
			c.t.Fatal(err)
		}
	}
	ev := c.evs[0]
	c.evs = c.evs[1:]
	return ev
}

func (c *wsClient) nextOf(typ string) wire.Event {
	c.t.Helper()
	for {
		if ev := c.next(); ev.Type == typ {
			return ev
		}
	}
}

// TestClusterBehindNginx runs what an operator runs: one Redis, two shardchat hosts and nginx
// with deploy/nginx.conf in front, no sticky sessions. Clients land on both hosts and chat as
// if there were one.
func TestClusterBehindNginx(t *testing.T) {
	redis := testprog.Redis(t)
	a := startServe(t, "--redis-url", redis.URL(), "--node", "host-a")
	b := startServe(t, "--redis-url", redis.URL(), "--node", "host-b")
	port := testprog.FreePort(t)
	testprog.Nginx(t, nginxConf(t, port, a.addr, b.addr))
	front := "127.0.0.1:" + strconv.Itoa(port)
	testprog.WaitTCP(t, front)

	resp, err := http.Get("http://" + front + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/readyz through nginx = %d", resp.StatusCode)
	}

	const n = 6
	clients := make([]*wsClient, n)
	nodes := map[string]int{}
	for i := range clients {
		clients[i] = dialWS(t, "ws://"+front+"/ws")
		nodes[clients[i].node]++
	}
	if nodes["host-a"] == 0 || nodes["host-b"] == 0 {
		t.Fatalf("clients landed on %v; want both hosts", nodes)
	}
	names := make([]string, n)
	for i, c := range clients {
		names[i] = fmt.Sprintf("user%d", i)
		c.send(wire.ClientRequest{Type: wire.TypeJoin, Room: "lobby", User: names[i]})
		c.nextOf(wire.TypeJoined)
	}
	for i, c := range clients {
		c.send(wire.ClientRequest{Type: wire.TypeMessage, Room: "lobby", Text: fmt.Sprintf("hello from %s on %s", names[i], c.node)})
	}
	var first []string
	for i, c := range clients {
		var texts []string
		for seq := uint64(1); seq <= n; seq++ {
			m := c.nextOf(wire.TypeMessage)
			if m.Seq != seq {
				t.Fatalf("client %d on %s: seq %d, want %d", i, c.node, m.Seq, seq)
			}
			texts = append(texts, m.Text)
		}
		if first == nil {
			first = texts
		} else if !slices.Equal(texts, first) {
			t.Fatalf("client %d saw another order", i)
		}
	}
	clients[0].send(wire.ClientRequest{Type: wire.TypeUsers, Room: "lobby"})
	slices.Sort(names)
	if u := clients[0].nextOf(wire.TypeUsers); !slices.Equal(u.Users, names) {
		t.Fatalf("users = %v, want %v", u.Users, names)
	}
	t.Logf("clients per host: %v", nodes)
}

// TestRedisOutageSeenByClients: while Redis is down a host keeps serving, refuses messages
// with unavailable (never silence) and says it is not ready; when Redis is back, it is.
func TestRedisOutageSeenByClients(t *testing.T) {
	redis := testprog.Redis(t)
	host := startServe(t, "--redis-url", redis.URL())
	c := dialWS(t, "ws://"+host.addr+"/ws")
	c.send(wire.ClientRequest{Type: wire.TypeJoin, Room: "r", User: "u"})
	c.nextOf(wire.TypeJoined)
	ready := func() int {
		resp, err := http.Get("http://" + host.addr + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	waitReady := func(want int) {
		deadline := time.Now().Add(20 * time.Second)
		for ready() != want {
			if time.Now().After(deadline) {
				t.Fatalf("/readyz never answered %d", want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	redis.Stop()
	waitReady(http.StatusServiceUnavailable)
	c.send(wire.ClientRequest{Type: wire.TypeMessage, Room: "r", Text: "anyone?", Ref: "lost"})
	if e := c.nextOf(wire.TypeError); e.Code != wire.CodeUnavailable || e.Ref != "lost" {
		t.Fatalf("message while Redis is down: %+v, want unavailable", e)
	}

	redis.Start()
	waitReady(http.StatusOK)
	c.send(wire.ClientRequest{Type: wire.TypeMessage, Room: "r", Text: "back", Ref: "ok"})
	if m := c.nextOf(wire.TypeMessage); m.Ref != "ok" || m.Seq != 1 {
		t.Fatalf("message after Redis came back: %+v", m)
	}
}
