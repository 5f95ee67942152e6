package bench

import (
	"bufio"
	"encoding/json"
	"io"
	"log/slog"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestProcs runs the real binary as two --procs children against an embedded server in the
// test process: the children split the users, and the parent's merged report accounts for
// every user, message and delivery of the run.
func TestProcs(t *testing.T) {
	t.Parallel()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go tool, to build the binary for the children: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "shardchat")
	build := exec.CommandContext(t.Context(), goTool, "build", "-o", bin, "github.com/shardchat/shardchat")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	cfg := testConfig(t, "burst", func(w *Workload) { w.Users, w.Rooms, w.Messages = 31, 3, 4 })
	cfg.Procs = 2
	cfg.ChildCommand = []string{bin, "bench", "--child", "--log-level", "warn"}
	rep := runBench(t, cfg)
	w, c, m, d := cfg.Workload, rep.Connections, rep.Messages, rep.Deliveries

	if rep.Procs != 2 || rep.SharedProcess {
		t.Errorf("procs %d, shared process %v; want 2 children apart from the server", rep.Procs, rep.SharedProcess)
	}
	if c.Made != int64(w.Users) || c.Attempted != int64(w.Users) {
		t.Errorf("connections attempted/made = %d/%d, want %d: the children's shares add up to the users", c.Attempted, c.Made, w.Users)
	}
	if want := int64(w.Users * w.Messages); m.Sent != want || m.Echoed != want {
		t.Errorf("messages sent/echoed = %d/%d, want %d", m.Sent, m.Echoed, want)
	}
	// Rooms span both children: each child saw part of each room, and only the merge knows
	// how far every room went.
	if want := owedDeliveries(w); d.Expected != want || d.Delivered != want || d.Ratio != 1 {
		t.Errorf("deliveries expected/delivered = %d/%d (ratio %g), want %d", d.Expected, d.Delivered, d.Ratio, want)
	}
	if d.Duplicated != 0 || d.OutOfOrder != 0 || d.Missing != 0 {
		t.Errorf("deliveries %+v: want none missing, duplicated or out of order", d)
	}
	if rep.LatencyMs.Samples != d.Delivered {
		t.Errorf("latency samples %d, want one per delivery (%d): histograms merged, not averaged", rep.LatencyMs.Samples, d.Delivered)
	}
	if s := rep.Server; s == nil || int64(s.Deliveries) != d.Delivered {
		t.Errorf("server figures %+v: want its deliveries to match the clients' %d", s, d.Delivered)
	}
	if rep.Bench.CPUSeconds <= 0 {
		t.Errorf("bench CPU %g s: want the children's CPU", rep.Bench.CPUSeconds)
	}
}

// TestRunChildFinishMidway drives a child in this process through its pipes, as the parent of
// --procs does, and interrupts its send phase: the child stops and answers with what it has.
func TestRunChildFinishMidway(t *testing.T) {
	t.Parallel()
	url, stop, err := testServer(ServerConfig{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	})
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- RunChild(t.Context(), inR, outW, slog.New(slog.DiscardHandler))
		_ = outW.Close()
	}()
	lines := bufio.NewScanner(outR)
	lines.Buffer(nil, maxChildLine)
	send := func(m childMessage) {
		t.Helper()
		b, _ := json.Marshal(m)
		if _, err := inW.Write(append(b, '\n')); err != nil {
			t.Fatalf("write %s: %v", m.Op, err)
		}
	}
	// next returns the next answer that is not progress.
	next := func() childMessage {
		t.Helper()
		for lines.Scan() {
			var m childMessage
			if err := json.Unmarshal(lines.Bytes(), &m); err != nil {
				t.Fatalf("child wrote %q: %v", lines.Bytes(), err)
			}
			if m.Op != opProgress {
				return m
			}
		}
		t.Fatalf("the child's output ended: %v", lines.Err())
		return childMessage{}
	}

	wl := Workload{Users: 12, Rooms: 2, Rate: 5, Duration: time.Minute, TextSize: 8}
	send(childMessage{Op: opSpec, Spec: &workerSpec{RunID: newRunID(), Index: 1, First: 12, Count: 6, URLs: []string{url},
		Workload: wl, ConnectTimeout: 5 * time.Second, StallTimeout: 5 * time.Second, DialConcurrency: 4}})
	if m := next(); m.Op != opConnected || m.Connected == nil || m.Connected.Connected != 6 {
		t.Fatalf("after the spec the child said %+v, want 6 connected", m)
	}
	send(childMessage{Op: opSend})
	time.Sleep(500 * time.Millisecond) // let it send a few of its minute's messages
	send(childMessage{Op: opFinish})
	m := next()
	if m.Op == opSent { // the send phase answers as it stops
		m = next()
	}
	if m.Op != opResult || m.Tally == nil {
		t.Fatalf("after finish the child said %+v, want its result", m)
	}
	if tl := m.Tally; tl.Users != 6 || tl.Connected != 6 || tl.Sent == 0 || tl.Delivered == 0 || tl.Latency.count() != tl.Delivered {
		t.Errorf("tally users %d, connected %d, sent %d, delivered %d, latency samples %d: want the 6 users' partial run",
			tl.Users, tl.Connected, tl.Sent, tl.Delivered, tl.Latency.count())
	}
	// As the parent does, read on until the child's output ends, and close its input.
	go func() { _, _ = io.Copy(io.Discard, outR) }()
	_ = inW.Close()
	if err := <-done; err != nil {
		t.Errorf("RunChild: %v", err)
	}
}
