package bench

import (
	"os/exec"
	"path/filepath"
	"testing"
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
