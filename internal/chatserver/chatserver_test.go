package chatserver

import (
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/shardchat/shardchat/hub"
	"github.com/shardchat/shardchat/transport"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestStartLoopback starts a server as the bench does: it answers on loopback with the Go and
// process figures among its metrics, and stop leaves nothing running.
func TestStartLoopback(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	h, srv, err := New(NewRegistry(), hub.Config{Logger: log}, transport.Config{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	url, stop, err := StartLoopback(h, srv, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(url, "ws://127.0.0.1:") || !strings.HasSuffix(url, "/ws") {
		t.Errorf("url %q, want ws://127.0.0.1:port/ws", url)
	}
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := hc.Get("http" + strings.TrimSuffix(strings.TrimPrefix(url, "ws"), "/ws") + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes", "shardchat_connections"} {
		if !strings.Contains(string(body), "\n"+name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	if err := stop(); err != nil {
		t.Errorf("stop: %v", err)
	}
}
