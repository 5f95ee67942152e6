package bench

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// testConfig is a scenario scaled down to run in a moment against an embedded server, with
// the clients in the test's process.
func testConfig(t *testing.T, scenario string, scale func(*Workload)) Config {
	t.Helper()
	w, err := Scenario(scenario)
	if err != nil {
		t.Fatal(err)
	}
	scale(&w)
	return Config{
		Scenario:     scenario,
		Workload:     w,
		StallTimeout: 5 * time.Second,
		Logger:       slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
		StartServer:  testServer,
	}
}

func runBench(t *testing.T, cfg Config) *Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	rep, err := Run(ctx, cfg)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	var table strings.Builder
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + table.String())
	return rep
}

// owedDeliveries is what a message-count workload owes: each room's messages to each of its
// members, the sender included.
func owedDeliveries(w Workload) int64 {
	var n int64
	for r := range w.Rooms {
		members := int64(0)
		for u := range w.Users {
			if w.roomOf(u) == r {
				members++
			}
		}
		n += members * members * int64(w.Messages)
	}
	return n
}

func TestScenarios(t *testing.T) {
	t.Parallel()
	tests := []struct {
		scenario string
		scale    func(*Workload)
	}{
		{"seed", func(w *Workload) { w.Users, w.Rooms, w.Messages, w.Rate = 20, 4, 3, 8 }},
		{"burst", func(w *Workload) { w.Users, w.Rooms, w.Messages = 20, 4, 5 }},
		{"fanout", func(w *Workload) { w.Users, w.Messages = 40, 5 }},
		{"connections", func(w *Workload) { w.Users, w.Rooms, w.Ramp = 30, 3, 300 }},
		{"soak", func(w *Workload) { w.Users, w.Rooms, w.Rate, w.Duration = 20, 4, 8, 500*time.Millisecond }},
	}
	for _, tt := range tests {
		t.Run(tt.scenario, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig(t, tt.scenario, tt.scale)
			rep := runBench(t, cfg)
			w, c, m, d := cfg.Workload, rep.Connections, rep.Messages, rep.Deliveries

			if c.Made != int64(w.Users) || c.Failed != 0 {
				t.Errorf("connections made/failed = %d/%d, want %d/0", c.Made, c.Failed, w.Users)
			}
			if d.Ratio != 1 || d.Missing != 0 || d.Duplicated != 0 || d.OutOfOrder != 0 || d.Stray != 0 || d.Undecodable != 0 {
				t.Errorf("deliveries = %+v, want all delivered once, in order", d)
			}
			if w.Duration == 0 {
				if want := int64(w.Users * w.Messages); m.Sent != want || m.Echoed != want {
					t.Errorf("messages sent/echoed = %d/%d, want %d", m.Sent, m.Echoed, want)
				}
				if want := owedDeliveries(w); d.Expected != want || d.Delivered != want {
					t.Errorf("deliveries expected/delivered = %d/%d, want %d", d.Expected, d.Delivered, want)
				}
			} else if m.Echoed == 0 || d.Delivered == 0 || m.Echoed != m.Sent {
				t.Errorf("a timed run sent %d, echoed %d, delivered %d: want something, all echoed", m.Sent, m.Echoed, d.Delivered)
			}
			if rep.LatencyMs.Samples != d.Delivered || rep.LatencyMs.Max <= 0 || rep.LatencyMs.P50 > rep.LatencyMs.P99 {
				t.Errorf("latency = %+v, want a sample per delivery, ordered percentiles", rep.LatencyMs)
			}
			if len(rep.ErrorCodes) != 0 || len(rep.CloseCodes) != 0 {
				t.Errorf("error codes %v, close codes %v; want none", rep.ErrorCodes, rep.CloseCodes)
			}
			s := rep.Server
			if s == nil || s.Processes != 1 {
				t.Fatalf("server figures = %+v, want the embedded server's", s)
			}
			// The server's own counters agree with what the clients counted.
			if int64(s.Deliveries) != d.Delivered || int64(s.Messages) != m.Echoed || s.ConnectionsConnected != float64(w.Users) {
				t.Errorf("server counted %v messages, %v deliveries, %v connections; clients %d, %d, %d",
					s.Messages, s.Deliveries, s.ConnectionsConnected, m.Echoed, d.Delivered, w.Users)
			}
			// Parallel tests share this process, whose memory, CPU and goroutines these are.
			// The kernel counts CPU in ticks of 10 ms, which a run of a few milliseconds (burst
			// at this scale) may not see pass; a run of a quarter second in a busy process does.
			if s.RSSConnected <= 0 || s.CPUSeconds < 0 || s.GoroutinesConnected <= 0 {
				t.Errorf("server figures = %+v, want memory, CPU and goroutines read", s)
			}
			if rep.ElapsedSeconds >= 0.25 && s.CPUSeconds <= 0 {
				t.Errorf("a run of %.2f s counted %v s of CPU, want some", rep.ElapsedSeconds, s.CPUSeconds)
			}
			if !rep.SharedProcess {
				t.Error("an embedded server with clients in the same process is not marked shared")
			}
		})
	}
}

func TestUnreachable(t *testing.T) {
	t.Parallel()
	refusing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "too many connections; try again later", http.StatusServiceUnavailable)
	}))
	t.Cleanup(refusing.Close)
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := "ws" + strings.TrimPrefix(closed.URL, "http") + "/ws"
	closed.Close()

	tests := []struct {
		name string
		url  string
		want string
	}{
		{"nothing listening", closedURL, "cannot reach " + closedURL + ": dial tcp"},
		{"refused", "ws" + strings.TrimPrefix(refusing.URL, "http") + "/ws", "refused with HTTP 503: too many connections"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig(t, "seed", func(w *Workload) { w.Users, w.Rooms = 5, 1 })
			cfg.URLs = []string{tt.url}
			_, err := Run(t.Context(), cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("Run = %v, want one line with %q", err, tt.want)
			}
		})
	}
}

// TestPartlyRefused runs more users than the server takes: the run goes on with those it
// took, reports the refusals, and its Err says so in one line.
func TestPartlyRefused(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, "burst", func(w *Workload) { w.Users, w.Rooms, w.Messages = 8, 1, 2 })
	cfg.Server = ServerConfig{MaxConns: 5}
	rep := runBench(t, cfg)
	c, d := rep.Connections, rep.Deliveries
	if c.Made+c.Failed != 8 || c.Failed < 3 || c.Made < 4 {
		t.Fatalf("made %d, failed %d of 8; want the 5 the server takes (4 while the probe's session ends)", c.Made, c.Failed)
	}
	if n := c.Failures["refused with HTTP 503: too many connections; try again later"]; n != c.Failed {
		t.Errorf("failures %v, want every one refused with 503", c.Failures)
	}
	if d.Ratio != 1 || d.Expected != c.Made*c.Made*2 {
		t.Errorf("deliveries %+v: want every message of the %d members delivered", d, c.Made)
	}
	err := rep.Err()
	if err == nil || !strings.Contains(err.Error(), "clients could not connect") || !strings.Contains(err.Error(), "HTTP 503") || strings.Contains(err.Error(), "\n") {
		t.Errorf("Err = %v, want one line about the refused clients", err)
	}
}

// badConfigCase is a config edit that the bench must refuse, with want in its reason.
type badConfigCase struct {
	name string
	edit func(*Config)
	want string
}

func TestBadConfig(t *testing.T) {
	t.Parallel()
	cases := []badConfigCase{
		{"rooms past users", func(c *Config) { c.Workload.Rooms = c.Workload.Users + 1 }, "rooms"},
		{"text too long", func(c *Config) { c.Workload.TextSize = 5000 }, "text size"},
		{"http url", func(c *Config) { c.URLs = []string{"http://127.0.0.1:1/ws"} }, "want ws://"},
		{"bad source ip", func(c *Config) { c.SourceIPs = []string{"localhost"} }, "source IP"},
		{"unknown scenario", func(c *Config) { c.Workload, c.Scenario = Workload{}, "nope" }, "unknown scenario"},
		{"too many users for one process", func(c *Config) { c.Workload.Users, c.Workload.Rooms = 1<<20, 1 }, "--procs"},
		{"procs without a child command", func(c *Config) { c.Procs = 2 }, "ChildCommand"},
	}
	// With this process's own limit, where it has one (the rule itself: TestCheckOpenFiles).
	if limit := openFilesLimit(); limit > 0 {
		cases = append(cases, badConfigCase{"too many connections for the embedded server", func(c *Config) {
			// Each child's share fits the limit; the server's ends of them all, in this process, do not.
			c.Workload.Users, c.Workload.Rooms, c.Procs, c.ChildCommand = int(limit), 1, 64, []string{"/bin/false"}
		}, "embedded server's ends"})
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig(t, "seed", func(w *Workload) {})
			tt.edit(&cfg)
			if _, err := Run(t.Context(), cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Run = %v, want an error about %q", err, tt.want)
			}
		})
	}
}

// TestInterrupted cancels a long run midway: Run returns soon with what it measured. It runs
// alone (not in parallel), so that its clients have connected when the interrupt comes.
func TestInterrupted(t *testing.T) {
	cfg := testConfig(t, "soak", func(w *Workload) { w.Users, w.Rooms, w.Rate, w.Duration = 20, 2, 5, time.Minute })
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(time.Second, cancel)
	start := time.Now()
	rep, err := Run(ctx, cfg)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if !rep.Interrupted {
		t.Error("report not marked interrupted")
	}
	if time.Since(start) > 30*time.Second {
		t.Errorf("Run took %s after the interrupt, want it to stop", time.Since(start))
	}
	if rep.Connections.Made != 20 || rep.Messages.Sent == 0 || rep.Deliveries.Delivered == 0 {
		t.Errorf("connections %d, sent %d, delivered %d: want what was measured before the interrupt",
			rep.Connections.Made, rep.Messages.Sent, rep.Deliveries.Delivered)
	}
	var table strings.Builder
	if err := rep.WriteTable(&table); err != nil || !strings.Contains(table.String(), "interrupted") {
		t.Errorf("table does not say it was interrupted: %v\n%s", err, table.String())
	}
}

// TestTwoWorkersMerge runs two workers in this process on halves of the users against one
// server and checks that the merged tally is the sum of the two, and that together they
// account for every delivery, as the tallies of two --procs children do.
func TestTwoWorkersMerge(t *testing.T) {
	t.Parallel()
	url, stop, err := testServer(ServerConfig{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	}()
	wl := Workload{Users: 21, Rooms: 3, Messages: 4, TextSize: 16}
	spec := workerSpec{RunID: newRunID(), URLs: []string{url}, Workload: wl, ConnectTimeout: 5 * time.Second, StallTimeout: 5 * time.Second, DialConcurrency: 8}
	a, b := spec, spec
	a.Count = 10
	b.Index, b.First, b.Count = 1, 10, 11
	workers := []*worker{newWorker(a, slog.New(slog.DiscardHandler)), newWorker(b, slog.New(slog.DiscardHandler))}
	r := &run{workers: []phases{workers[0], workers[1]}, cfg: Config{Workload: wl}, log: slog.New(slog.DiscardHandler)}
	total, err := r.phases(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	parts := []tally{workers[0].tally(), workers[1].tally()}
	sum := func(f func(tally) int64) int64 { return f(parts[0]) + f(parts[1]) }
	for _, c := range []struct {
		name string
		f    func(tally) int64
	}{
		{"users", func(t tally) int64 { return t.Users }},
		{"connected", func(t tally) int64 { return t.Connected }},
		{"sent", func(t tally) int64 { return t.Sent }},
		{"acked", func(t tally) int64 { return t.Acked }},
		{"delivered", func(t tally) int64 { return t.Delivered }},
		{"latency samples", func(t tally) int64 { return t.Latency.count() }},
		{"connect samples", func(t tally) int64 { return t.Connect.count() }},
	} {
		if got, want := c.f(total), sum(c.f); got != want || want == 0 {
			t.Errorf("merged %s = %d, want the sum of the workers' (%d + %d)", c.name, got, c.f(parts[0]), c.f(parts[1]))
		}
	}
	if total.Users != 21 || total.Delivered != owedDeliveries(wl) || total.expected() != owedDeliveries(wl) {
		t.Errorf("merged users %d, delivered %d, expected %d; want 21 users and %d deliveries", total.Users, total.Delivered, total.expected(), owedDeliveries(wl))
	}
	// Neither worker alone knows how far each room went; merged, they owe exactly what arrived.
	for i, p := range parts {
		if p.Delivered == 0 || p.Delivered == total.Delivered {
			t.Errorf("worker %d delivered %d of %d: want a share", i, p.Delivered, total.Delivered)
		}
	}
}

// TestSourceAddressHint: the bench warns about its own connects past manyFromOneAddress users
// from fewer than two addresses, and only then.
func TestSourceAddressHint(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		users     int
		sourceIPs []string
		hint      bool
	}{
		{5000, nil, false},
		{manyFromOneAddress, nil, false},
		{manyFromOneAddress + 1, nil, true},
		{19000, []string{"127.0.0.2"}, true},
		{19000, []string{"127.0.0.2", "127.0.0.3"}, false},
	} {
		if got := sourceAddressHint(tc.users, tc.sourceIPs) != ""; got != tc.hint {
			t.Errorf("sourceAddressHint(%d, %v): hint %v, want %v", tc.users, tc.sourceIPs, got, tc.hint)
		}
	}
}
