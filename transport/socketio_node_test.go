package transport

import (
	"bufio"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shardchat/shardchat/internal/testprog"
	"github.com/shardchat/shardchat/shard"
	"github.com/shardchat/shardchat/transport/wire"
)

// TestSocketIOClientNode chats between two stock socket.io-client v4 clients (Node.js, from
// npm, pinned in testdata/socketio-client) and a native client, on a real server.
func TestSocketIOClientNode(t *testing.T) {
	t.Parallel()
	node := testprog.Need(t, "node")
	dir := filepath.Join("testdata", "socketio-client")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "socket.io-client")); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("socket.io-client is not installed; make test runs npm ci in " + dir)
		}
		t.Skip("socket.io-client is not installed; run npm ci in " + dir + " (make test does)")
	}
	env := setupTest(t, Config{}, shard.Config{})
	nat := env.dial()
	nat.join("lobby", "nat")

	cmd := exec.Command(node, "client.mjs", strings.TrimSuffix(env.http.URL, "/"))
	cmd.Dir = dir
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	steps := make(chan map[string]any, 10)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var step map[string]any
			if json.Unmarshal(sc.Bytes(), &step) == nil {
				steps <- step
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
		close(steps)
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		for range steps {
		}
		<-exited
	})
	step := func(want string) map[string]any {
		t.Helper()
		select {
		case s, ok := <-steps:
			if !ok {
				t.Fatalf("the Node client ended before %q: %s", want, stderr.String())
			}
			if msg, failed := s["error"]; failed {
				t.Fatalf("the Node client failed: %v", msg)
			}
			if s["step"] != want {
				t.Fatalf("step %v, want %q", s, want)
			}
			return s
		case <-time.After(30 * time.Second):
			t.Fatalf("no step %q within 30s: %s", want, stderr.String())
		}
		return nil
	}
	goOn := func() {
		if _, err := io.WriteString(stdin, "go\n"); err != nil {
			t.Fatal(err)
		}
	}

	step("joined")
	for _, who := range []string{"alice", "bob"} {
		if p := nat.nextOf(wire.TypePresence); p.User != who || p.Event != wire.PresenceJoin {
			t.Fatalf("native client got %+v, want %s's join", p, who)
		}
	}
	goOn()

	sent := step("sent")
	m := nat.nextOf(wire.TypeMessage)
	if m.User != "alice" || m.Text != "hello from alice" || float64(m.Seq) != sent["seq"] {
		t.Fatalf("native client got %+v, want alice's message with seq %v", m, sent["seq"])
	}
	nat.send(wire.ClientRequest{Type: wire.TypeMessage, Room: "lobby", Text: "hello from native"})
	goOn()

	step("typing")
	if ev := nat.nextOf(wire.TypeTyping); ev.User != "bob" || !ev.On {
		t.Fatalf("native client got %+v, want bob's typing", ev)
	}
	goOn()

	done := step("done")
	t.Logf("a polling client was refused with: %v", done["pollingError"])
	if p := nat.nextOf(wire.TypePresence); p.User != "bob" || p.Event != wire.PresenceLeave {
		t.Fatalf("native client got %+v, want bob's leave", p)
	}
	if err := <-exited; err != nil {
		t.Fatalf("node exited with %v: %s", err, stderr.String())
	}
	exited <- nil
}
