package bench

import (
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/shardchat/shardchat/transport/wire"
)

// TestSourceIPs holds --source-ips to its word: the sockets of a client come from the
// loopback address it was given, not the default one.
func TestSourceIPs(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	remotes := make(chan string, 2)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		remotes <- r.RemoteAddr
	})}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		_ = srv.Close()
		<-served
	})

	clients := httpClients([]string{"127.0.0.2", "127.0.0.3"}, nil)
	for i, want := range []string{"127.0.0.2", "127.0.0.3"} {
		resp, err := clients[i].Get("http://" + ln.Addr().String() + "/")
		if err != nil {
			t.Fatalf("from %s: %v", want, err)
		}
		_ = resp.Body.Close()
		host, _, _ := net.SplitHostPort(<-remotes)
		if host != want {
			t.Errorf("client %d came from %s, want %s", i, host, want)
		}
	}
}

// TestMessagePrefix checks that a room's prefix, a ref and the closing quote and brace are one
// message object that the server decodes as such.
func TestMessagePrefix(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ room, text string }{
		{"bench-1a2b3c4d-0", fillerText(64)},
		{"bench-x-12", `quotes " and \ and <tags> & é`},
	} {
		msg := appendRef(messagePrefix(tt.room, tt.text), 42, 1700000000123456789)
		msg = append(msg, `"}`...)
		var got wire.ClientRequest
		if err := json.Unmarshal(msg, &got); err != nil {
			t.Fatalf("%s: %v", msg, err)
		}
		want := wire.ClientRequest{Type: wire.TypeMessage, Room: tt.room, Text: tt.text, Ref: "42.1700000000123456789"}
		if got != want {
			t.Errorf("%s decodes as %+v, want %+v", msg, got, want)
		}
		// encoding/json keeps the last of repeated keys: a prefix with a ref of its own
		// would decode the same.
		if n := strings.Count(string(msg), `"ref":`); n != 1 {
			t.Errorf("%s has %d refs, want 1", msg, n)
		}
	}
}

func TestWatchTick(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ stall, want time.Duration }{
		{0, minWatchTick},
		{time.Second, minWatchTick},
		{5 * time.Second, minWatchTick},
		{10 * time.Second, 500 * time.Millisecond},
		{time.Minute, 3 * time.Second},
	} {
		if got := watchTick(tt.stall); got != tt.want {
			t.Errorf("watchTick(%v) = %v, want %v", tt.stall, got, tt.want)
		}
	}
}

// TestWatch checks, on synctest's clock, that watch gives up a stall timeout after the last
// progress while something is owed, a tick late at most, and returns at once when done.
func TestWatch(t *testing.T) {
	t.Parallel()
	const stall = 10 * time.Second
	tests := []struct {
		name     string
		moves    time.Duration // progress moves until then
		owed     bool
		finish   time.Duration // done closes then
		stopped  bool
		returned time.Duration // when watch returned, at most a tick after
	}{
		{"stalled from the start", 0, true, time.Hour, true, stall},
		{"stalled after progress", 3 * time.Second, true, time.Hour, true, 3*time.Second + stall},
		{"nothing owed", 0, false, time.Minute, false, time.Minute},
		{"done before the stall", 0, true, 2 * time.Second, false, 2 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				w := &worker{spec: workerSpec{StallTimeout: stall}, log: slog.New(slog.DiscardHandler)}
				start := time.Now()
				done := make(chan struct{})
				time.AfterFunc(tt.finish, func() { close(done) })
				progress := func() int64 { return int64(min(time.Since(start), tt.moves) / time.Millisecond) }
				stopped := false
				w.watch(t.Context(), done, progress, func() bool { return tt.owed }, "testing", func() { stopped = true })
				took := time.Since(start)
				if stopped != tt.stopped || took < tt.returned || took > tt.returned+watchTick(stall) {
					t.Errorf("stopped %v after %v, want %v after %v (a tick of %v late at most)", stopped, took, tt.stopped, tt.returned, watchTick(stall))
				}
			})
		})
	}
}
