package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"reflect"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/kong"
	"github.com/coder/websocket"
	"go.uber.org/goleak"

	"github.com/shardchat/shardchat/bench"
	"github.com/shardchat/shardchat/transport/wire"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

func parse(t *testing.T, args ...string) (*cli, error) {
	t.Helper()
	var c cli
	parser, err := kong.New(&c, kong.Name("shardchat"), kongVars(), kong.Exit(func(int) {}))
	if err != nil {
		t.Fatal(err)
	}
	_, err = parser.Parse(args)
	return &c, err
}

func TestServeFlags(t *testing.T) {
	for _, env := range []string{"PORT", "SHARDCHAT_ADDR", "SHARDCHAT_RATE"} {
		t.Setenv(env, "")
		os.Unsetenv(env)
	}
	bad := []struct {
		args []string
		want string // part of the message, naming the flag and what to do
	}{
		{[]string{"--addr", "3000"}, "--addr"},
		{[]string{"--addr", ":99999"}, "0 to 65535"},
		{[]string{"--shards", "0"}, "--shards 0: must be from 1"},
		{[]string{"--history", "0"}, "--history"},
		{[]string{"--rate", "0"}, "--rate 0: must be above 0"},
		{[]string{"--burst", "0"}, "--burst"},
		{[]string{"--queue", "3"}, "--queue 3"},
		{[]string{"--max-conns", "0"}, "--max-conns"},
		{[]string{"--max-rooms", "0"}, "--max-rooms"},
		{[]string{"--shutdown-timeout", "0s"}, "--shutdown-timeout"},
		{[]string{"--shutdown-timeout", "soon"}, "--shutdown-timeout"},
		{[]string{"--log-format", "xml"}, `"text","json"`},
		{[]string{"--log-level", "loud"}, "--log-level"},
		{[]string{"--allowed-origins", "[x"}, "--allowed-origins"},
		{[]string{"serve", "--nope"}, "--nope"},
		{[]string{"--max-conns-per-ip", "-1"}, "--max-conns-per-ip"},
		{[]string{"--auth-hmac-secret", "x", "--auth-public-key", "main.go"}, "one of --auth-hmac-secret"},
		{[]string{"--auth-public-key", "/no/such/file"}, "/no/such/file"},
	}
	for _, tc := range bad {
		_, err := parse(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want one containing %q", tc.args, err, tc.want)
		}
	}

	c, err := parse(t)
	if err != nil {
		t.Fatal(err)
	}
	if s := c.Serve; s.Addr != ":3000" || s.Shards != runtime.GOMAXPROCS(0) || s.History != 100 || s.Rate != 10 || s.Burst != 20 {
		t.Fatalf("defaults: %+v", s)
	}

	t.Setenv("PORT", "8080")
	if c, err := parse(t); err != nil || c.Serve.Addr != ":8080" {
		t.Fatalf("PORT=8080: addr %q, %v", c.Serve.Addr, err)
	}
	t.Setenv("SHARDCHAT_ADDR", "127.0.0.1:3000")
	if c, err := parse(t); err != nil || c.Serve.Addr != "127.0.0.1:8080" {
		t.Fatalf("PORT with SHARDCHAT_ADDR: addr %q, %v", c.Serve.Addr, err)
	}
	t.Setenv("SHARDCHAT_RATE", "2.5")
	if c, err := parse(t, "serve", "--burst", "3"); err != nil || c.Serve.Rate != 2.5 || c.Serve.Burst != 3 {
		t.Fatalf("env and flags: %+v, %v", c.Serve, err)
	}
}

// TestBenchScenarioFlag checks that --scenario takes exactly the scenarios the bench has, that
// each of them is a workload the bench can run, and that its help describes each.
func TestBenchScenarioFlag(t *testing.T) {
	names := bench.ScenarioNames()
	field, _ := reflect.TypeFor[benchCmd]().FieldByName("Scenario")
	help := field.Tag.Get("help")
	for _, name := range names {
		if c, err := parse(t, "bench", "--scenario", name); err != nil || c.Bench.Scenario != name {
			t.Errorf("--scenario %s: %q, %v", name, c.Bench.Scenario, err)
		}
		if _, err := bench.Scenario(name); err != nil {
			t.Errorf("scenario %s is listed but the bench cannot run it: %v", name, err)
		}
		if !strings.Contains(help, name+" (") {
			t.Errorf("the help of --scenario does not describe %s: %q", name, help)
		}
	}
	want := `"` + strings.Join(names, `","`) + `"`
	if _, err := parse(t, "bench", "--scenario", "nope"); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("--scenario nope: %v, want an error listing %s", err, want)
	}
}

// TestServeProcess runs the real binary: it serves chat, and on SIGTERM it drains, closes
// sessions with 1012 and exits 0.
func TestServeProcess(t *testing.T) {
	p := startServe(t)
	addr := p.addr

	// Asked as Prometheus asks, with gzip: the page comes uncompressed all the same (a gzip
	// writer costs the server fifty times the bytes it saves).
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if enc := resp.Header.Get("Content-Encoding"); enc != "" {
		t.Errorf("/metrics came with Content-Encoding %q, want none", enc)
	}
	for _, name := range []string{"shardchat_connections", "go_goroutines", "process_resident_memory_bytes", `shardchat_shard_inbox_depth{shard="0"}`, `shardchat_shard_inbox_capacity{shard="0"}`} {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name)).Match(body) {
			t.Errorf("/metrics lacks %s", name)
		}
	}

	c := dialWS(t, "ws://"+addr+"/ws")
	c.send(wire.ClientRequest{Type: wire.TypeJoin, Room: "general", User: "alice"})
	if ev := c.next(); ev.Type != wire.TypeJoined {
		t.Fatalf("join answered %+v", ev)
	}

	exited := make(chan error, 1)
	go func() { exited <- p.stop(t) }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _, err = c.conn.Read(ctx)
	if code := websocket.CloseStatus(err); code != websocket.StatusCode(wire.CloseRestart) {
		t.Fatalf("after SIGTERM the session ended with %v, want 1012", err)
	}
	if err := <-exited; err != nil {
		t.Fatalf("exit after SIGTERM: %v, want 0", err)
	}
}
