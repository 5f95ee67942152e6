package hub

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/shardchat/shardchat/shard"
	"github.com/shardchat/shardchat/transport/wire"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// After a cluster topology refresh, rueidis closes the connections it replaced from a
		// goroutine of its own that sleeps 5s first; it outlives Close and ends by itself.
		goleak.IgnoreAnyFunction("github.com/redis/rueidis.(*clusterClient)._refresh.func2"))
}

func TestRouterSpreadsEvenly(t *testing.T) {
	t.Parallel()
	// 20000 rooms a shard: the standard deviation of a bucket is 0.7%, so 3% is far out.
	const perShard = 20000
	for _, shards := range []int{1, 2, 3, 8, 16} {
		rooms := perShard * shards
		r := NewRouter(shards)
		counts := make([]int, shards)
		for i := range rooms {
			counts[r.Shard(fmt.Sprintf("room-%d", i))]++
		}
		mean := float64(rooms) / float64(shards)
		for i, n := range counts {
			if dev := math.Abs(float64(n)-mean) / mean; dev > 0.03 {
				t.Errorf("%d shards: shard %d holds %d rooms, %.1f%% off the mean %.0f", shards, i, n, 100*dev, mean)
			}
		}
	}
}

func TestRouterIsStable(t *testing.T) {
	t.Parallel()
	// The same room maps to the same shard every time, in every router of the same size, and
	// growing from n to n+1 shards moves only about 1/(n+1) of the rooms.
	a, b, grown := NewRouter(7), NewRouter(7), NewRouter(8)
	moved := 0
	for i := range 100000 {
		room := fmt.Sprintf("r%d", i)
		s := a.Shard(room)
		if s != a.Shard(room) || s != b.Shard(room) {
			t.Fatalf("room %s maps to different shards", room)
		}
		if grown.Shard(room) != s {
			moved++
		}
	}
	if frac := float64(moved) / 100000; math.Abs(frac-1.0/8) > 0.01 {
		t.Fatalf("growing 7 -> 8 shards moved %.3f of the rooms, want about %.3f", frac, 1.0/8)
	}
	// Pinned values: a change to the hash would move rooms between shards unnoticed.
	pins := []struct {
		room      string
		of16, of3 int
	}{{"general", 14, 1}, {"random", 13, 2}, {"a", 8, 1}, {"team-42", 7, 0}}
	for _, p := range pins {
		if got16, got3 := NewRouter(16).Shard(p.room), NewRouter(3).Shard(p.room); got16 != p.of16 || got3 != p.of3 {
			t.Errorf("Shard(%q) = %d of 16, %d of 3; want %d, %d", p.room, got16, got3, p.of16, p.of3)
		}
	}
}

type sink struct {
	mu   sync.Mutex
	objs int
}

func (s *sink) Send([]byte) bool            { s.mu.Lock(); s.objs++; s.mu.Unlock(); return true }
func (s *sink) SendBestEffort([]byte) bool  { return s.Send(nil) }
func (s *sink) SendLater([]byte) bool       { return s.Send(nil) }
func (s *sink) Flush()                      {}
func (s *sink) Kick(wire.CloseCode, string) {}

func TestHubRoutesAndCloses(t *testing.T) {
	t.Parallel()
	h, err := New(Config{Shards: 3, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	m := &sink{}
	for i := range 30 {
		room := fmt.Sprint("room", i)
		reply := make(chan error, 1)
		if err := h.Join(ctx, shard.Request{Member: m, Room: room, User: "u", Reply: reply}); err != nil {
			t.Fatal(err)
		}
		// Publish goes through the memory bridge to the same shard that holds the join.
		if err := h.Publish(ctx, shard.Request{Member: m, Room: room, Text: "x", Reply: reply}); err != nil {
			t.Fatalf("publish in %s: %v", room, err)
		}
	}
	if m.objs != 60 {
		t.Fatalf("member got %d objects, want 30 joined and 30 messages", m.objs)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if err := h.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	err = h.Join(ctx, shard.Request{Member: m, Room: "late", User: "u", Reply: make(chan error, 1)})
	if err == nil {
		t.Fatal("join after close succeeded")
	}
}

func BenchmarkRoute(b *testing.B) {
	r := NewRouter(16)
	rooms := make([]string, 1024)
	for i := range rooms {
		rooms[i] = fmt.Sprintf("room-%d", i)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		_ = r.Shard(rooms[i&1023])
		i++
	}
}
