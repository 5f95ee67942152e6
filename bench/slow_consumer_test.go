//go:build unix

package bench

import (
	"syscall"
	"testing"
	"time"
)

// TestSlowConsumer runs against a server with a tiny queue and a member that stops reading
// for a second: the server drops it with 4008, and the report shows the close and the
// deliveries the member missed instead of hiding them.
func TestSlowConsumer(t *testing.T) {
	t.Parallel()
	// Paced and ramped, with a queue of 64 objects (64 ms of the room's traffic), so that the
	// members that read keep up, while the one that pauses for 2 s (8 MB of messages, past
	// what the sockets buffer) overflows.
	cfg := testConfig(t, "seed", func(w *Workload) {
		w.Users, w.Rooms, w.Messages, w.Rate, w.Ramp, w.TextSize = 10, 1, 250, 100, 200, 4000
	})
	cfg.Server = ServerConfig{Queue: 64, Rate: 1000, Burst: 1000}
	cfg.slow = slowReaders{users: 1, pause: 2 * time.Second, control: smallReceiveBuffer}
	rep := runBench(t, cfg)
	d, s := rep.Deliveries, rep.Server

	if rep.CloseCodes["4008"] == 0 {
		t.Fatalf("close codes %v, want 4008 for the member that stopped reading", rep.CloseCodes)
	}
	if c := rep.Connections; c.Made != 10 {
		t.Fatalf("%d of 10 joined (failures: %v), want all before the load", c.Made, c.Failures)
	}
	if d.Missing <= 0 || d.Ratio >= 1 || d.Delivered+d.Missing != d.Expected {
		t.Errorf("deliveries %+v: want the dropped member's deliveries counted missing", d)
	}
	if s == nil {
		t.Fatal("no server figures")
	}
	// Every member is owed every message the server ordered: the dropped one too. (Had every
	// member been dropped, the messages ordered after the last drop would be seen by none,
	// and owed by none.)
	if want := 10 * int64(s.Messages); d.Expected != want && rep.CloseCodes["4008"] < 10 {
		t.Errorf("expected %d deliveries, want 10 members × %v messages ordered = %d", d.Expected, s.Messages, want)
	}
	if d.Duplicated != 0 || d.OutOfOrder != 0 {
		t.Errorf("duplicated/out of order = %d/%d, want 0/0", d.Duplicated, d.OutOfOrder)
	}
	if int64(s.SlowConsumers) != rep.CloseCodes["4008"] {
		t.Errorf("server counted %v slow consumers, clients saw %d closes with 4008", s.SlowConsumers, rep.CloseCodes["4008"])
	}
}

// smallReceiveBuffer makes a socket's receive buffer small, so that a member that stops
// reading backs the server's writer up within a few messages rather than megabytes.
func smallReceiveBuffer(network, address string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
	})
	if err != nil {
		return err
	}
	return serr
}
