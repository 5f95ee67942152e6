package hub

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/redis/rueidis"

	"github.com/shardchat/shardchat/internal/testprog"
	"github.com/shardchat/shardchat/shard"
	"github.com/shardchat/shardchat/transport/wire"
)

// counter is a member that only counts its messages, so that a benchmark measures the path
// and not a test member's decoding.
type counter struct {
	n    atomic.Int64
	sink chan struct{} // when set, each object is signalled here
}

func (c *counter) Send(obj []byte) bool {
	c.n.Add(1)
	if c.sink != nil {
		c.sink <- struct{}{}
	}
	return false
}
func (c *counter) SendBestEffort(obj []byte) bool { return false }
func (c *counter) SendLater(obj []byte) bool      { return false }
func (c *counter) Flush()                         {}
func (c *counter) Kick(wire.CloseCode, string)    {}

// BenchmarkRedisOrder orders messages through one Redis from concurrent publishers, in one
// busy room or spread over 16 rooms, with a member in each room on the publishing host, and
// waits until all came back: messages ordered and delivered per second. Each publisher waits
// for its message's outcome, as a session does; 256 of them are what a host carrying 100,000
// messages a second would see (at 10 a second per user, thousands send at once), 16 keep the
// figure comparable with earlier pages.
func BenchmarkRedisOrder(b *testing.B) {
	for _, rooms := range []int{1, 16} {
		for _, publishers := range []int{16, 256} {
			b.Run(fmt.Sprintf("rooms=%d/publishers=%d", rooms, publishers), func(b *testing.B) {
				r := testprog.Redis(b, "--appendonly", "no")
				h := newRedisHub(b, r.URL(), "b:", "host-a", nil)
				members := make([]*counter, rooms)
				for i := range members {
					members[i] = &counter{}
					if err := h.join(b, members[i], fmt.Sprint("room", i), "u", nil); err != nil {
						b.Fatal(err)
					}
					members[i].n.Store(0)
				}
				var next atomic.Int64
				procs := runtime.GOMAXPROCS(0)
				b.SetParallelism(max(1, (publishers+procs-1)/procs)) // publishers, rounded up to a multiple of GOMAXPROCS
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					reply := make(chan error, 1)
					for pb.Next() {
						i := next.Add(1) % int64(rooms)
						req := shard.Request{Member: members[i], Room: fmt.Sprint("room", i), User: "u", Text: "hello there, how is everyone doing today?", Reply: reply}
						if err := h.Publish(context.Background(), req); err != nil {
							b.Error(err)
							return
						}
					}
				})
				for {
					var got int64
					for _, m := range members {
						got += m.n.Load()
					}
					if got >= int64(b.N) {
						break
					}
					time.Sleep(time.Millisecond)
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
				var batches dto.Metric
				if err := h.bridge.metrics.publishBatchSize.Write(&batches); err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(batches.GetHistogram().GetSampleSum()/float64(batches.GetHistogram().GetSampleCount()), "msgs/script")
			})
		}
	}
}

// BenchmarkRedisRoundTrip publishes one message at a time and waits for it to come back
// through Redis pub/sub: the latency a sender sees before its echo.
func BenchmarkRedisRoundTrip(b *testing.B) {
	r := testprog.Redis(b, "--appendonly", "no")
	h := newRedisHub(b, r.URL(), "b:", "host-a", nil)
	m := &counter{}
	if err := h.join(b, m, "room", "u", nil); err != nil {
		b.Fatal(err)
	}
	m.sink = make(chan struct{}, 1)
	reply := make(chan error, 1)
	b.ResetTimer()
	for b.Loop() {
		if err := h.Publish(context.Background(), shard.Request{Member: m, Room: "room", User: "u", Text: "ping", Reply: reply}); err != nil {
			b.Fatal(err)
		}
		<-m.sink
	}
}

// BenchmarkRedisReclaim: a host that was cut off from Redis claims its users' names again,
// 2,000 names over 100 rooms, all still its own.
func BenchmarkRedisReclaim(b *testing.B) {
	r := testprog.Redis(b, "--appendonly", "no")
	h := newRedisHub(b, r.URL(), "b:", "host-a", nil)
	const rooms, names = 100, 2000
	for i := range names {
		if err := h.join(b, &counter{}, fmt.Sprint("room", i%rooms), fmt.Sprint("u", i), nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for range b.N {
		if !h.bridge.reclaim() {
			b.Fatal("reclaim failed")
		}
	}
	b.ReportMetric(float64(b.N*names)/b.Elapsed().Seconds(), "names/s")
}

// BenchmarkRedisPrune: a host takes a dead host's 2,000 names over 100 rooms out of Redis,
// announcing each leave, as prune does (and Close, for the host itself, within twice the
// call timeout).
func BenchmarkRedisPrune(b *testing.B) {
	r := testprog.Redis(b, "--appendonly", "no")
	h := newRedisHub(b, r.URL(), "b:", "host-a", nil)
	const rooms, names = 100, 2000
	ctx := context.Background()
	for b.Loop() {
		b.StopTimer()
		cmds := make(rueidis.Commands, 0, 2*names)
		for i := range names {
			room := fmt.Sprint("room", i%rooms)
			cmds = append(cmds,
				h.bridge.client.B().Hset().Key(h.bridge.keys.users(room)).FieldValue().FieldValue(fmt.Sprint("u", i), "dead").Build(),
				h.bridge.client.B().Sadd().Key(h.bridge.keys.nodeRooms("dead")).Member(room).Build())
		}
		for _, res := range h.bridge.client.DoMulti(ctx, cmds...) {
			if err := res.Error(); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		if err := h.bridge.prune(ctx, "dead"); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*names)/b.Elapsed().Seconds(), "names/s")
}
