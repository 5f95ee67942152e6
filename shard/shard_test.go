package shard

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/shardchat/shardchat/transport/wire"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// sink is a Member that keeps what it is sent.
type sink struct {
	mu         sync.Mutex
	objs       [][]byte
	bestEffort int
	flushes    int
	pending    bool // objects wait for a Flush
	deferred   bool // ... and all of them were sent later
	kicked     wire.CloseCode
}

// Send keeps obj and, like a session's outbox, asks for a Flush only when nothing was
// waiting for one, or only objects sent later.
func (s *sink) Send(obj []byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.objs = append(s.objs, obj)
	wake := !s.pending || s.deferred
	s.pending, s.deferred = true, false
	return wake
}

// SendLater keeps obj and asks for a late Flush when nothing was waiting for one.
func (s *sink) SendLater(obj []byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.objs = append(s.objs, obj)
	if s.pending {
		return false
	}
	s.pending, s.deferred = true, true
	return true
}

func (s *sink) SendBestEffort(obj []byte) bool {
	s.mu.Lock()
	s.bestEffort++
	s.mu.Unlock()
	return s.Send(obj)
}

func (s *sink) Flush() {
	s.mu.Lock()
	if s.pending { // as a session's: a Flush with nothing queued wakes no writer
		s.flushes++
	}
	s.pending, s.deferred = false, false
	s.mu.Unlock()
}

// events decodes and forgets what the sink holds.
func (s *sink) Kick(code wire.CloseCode, reason string) {
	s.mu.Lock()
	s.kicked = code
	s.mu.Unlock()
}

func (s *sink) events(t *testing.T) []wire.Event {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var evs []wire.Event
	for _, obj := range s.objs {
		var err error
		if evs, err = wire.DecodeFrame(evs, obj); err != nil {
			t.Fatal(err)
		}
	}
	s.objs = nil
	return evs
}

func (s *sink) types(t *testing.T) []string {
	var types []string
	for _, ev := range s.events(t) {
		types = append(types, ev.Type)
	}
	return types
}

// start runs a shard until the test ends.
func start(t testing.TB, cfg Config) *Shard {
	s, stop := run(cfg)
	t.Cleanup(stop)
	return s
}

// run runs a shard until stop, which returns once Run has: a test may then look at what the
// shard's goroutine owned.
func run(cfg Config) (s *Shard, stop func()) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s = New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Run(ctx)
	}()
	return s, func() {
		cancel()
		<-done
	}
}

// joinAndLeave joins one more member into room r and takes it out again, quietly: the unit
// of the join benchmarks, whose rooms keep their size.
func joinAndLeave(b *testing.B, s *Shard, user string) {
	m := &queueMember{}
	if err := call(b, s.Join, Request{Member: m, Room: "r", User: user}); err != nil {
		b.Fatal(err)
	}
	if err := call(b, s.Leave, Request{Member: m, Room: "r", Quiet: true}); err != nil {
		b.Fatal(err)
	}
}

// call sends one command and waits for its outcome.
func call(t testing.TB, f func(context.Context, Request) error, req Request) error {
	t.Helper()
	req.Reply = make(chan error, 1)
	err := f(context.Background(), req)
	var werr *wire.Error
	if err != nil && !errors.As(err, &werr) {
		t.Fatalf("call: %v", err)
	}
	return err
}

func TestFanoutEncodesOnce(t *testing.T) {
	t.Parallel()
	s := start(t, Config{})
	members := make([]*sink, 50)
	for i := range members {
		members[i] = &sink{}
		if err := call(t, s.Join, Request{Member: members[i], Room: "r", User: fmt.Sprint("u", i)}); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range members {
		m.events(t)
	}
	if err := call(t, s.Publish, Request{Member: members[0], Room: "r", Text: "hi", Ref: "x"}); err != nil {
		t.Fatal(err)
	}
	first := members[0].objs[0]
	for i, m := range members {
		if len(m.objs) != 1 || &m.objs[0][0] != &first[0] {
			t.Fatalf("member %d did not get the one shared encoding", i)
		}
	}
}

func TestRefusals(t *testing.T) {
	t.Parallel()
	s := start(t, Config{})
	a, b, stranger := &sink{}, &sink{}, &sink{}
	if err := call(t, s.Join, Request{Member: a, Room: "r", User: "alice"}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		f    func(context.Context, Request) error
		req  Request
		code wire.Code
	}{
		{"name taken", s.Join, Request{Member: b, Room: "r", User: "alice"}, wire.CodeNameTaken},
		{"publish to an unknown room", s.Publish, Request{Member: a, Room: "nowhere", Text: "x"}, wire.CodeNotJoined},
		{"publish by a stranger", s.Publish, Request{Member: stranger, Room: "r", Text: "x"}, wire.CodeNotJoined},
		{"typing by a stranger", s.Typing, Request{Member: stranger, Room: "r", On: true}, wire.CodeNotJoined},
		{"users for a stranger", s.Users, Request{Member: stranger, Room: "r"}, wire.CodeNotJoined},
		{"history for a stranger", s.History, Request{Member: stranger, Room: "r", Limit: 5}, wire.CodeNotJoined},
		{"leave by a stranger", s.Leave, Request{Member: stranger, Room: "r"}, wire.CodeNotJoined},
	}
	for _, tc := range cases {
		err := call(t, tc.f, tc.req)
		var werr *wire.Error
		if !errors.As(err, &werr) || werr.Code != tc.code {
			t.Errorf("%s: %v, want %s", tc.name, err, tc.code)
		}
	}
	// A refused request changes nothing: a and only a is in the room, with nothing said.
	if err := call(t, s.Users, Request{Member: a, Room: "r"}); err != nil {
		t.Fatal(err)
	}
	evs := a.events(t)
	last := evs[len(evs)-1]
	if len(last.Users) != 1 || last.Users[0] != "alice" {
		t.Fatalf("users = %v", last.Users)
	}
	for _, ev := range evs {
		if ev.Type == wire.TypeMessage || ev.Type == wire.TypePresence {
			t.Fatalf("a refused request reached a member: %+v", ev)
		}
	}
	if len(b.objs)+len(stranger.objs) != 0 {
		t.Fatal("refused members were sent objects")
	}
}

func TestPanicRecovered(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	metrics := NewMetrics(reg)
	s := start(t, Config{Metrics: metrics})
	err := s.Join(context.Background(), Request{Member: panicky{}, Room: "r", User: "p", Reply: make(chan error, 1)})
	if !errors.Is(err, ErrInternal) {
		t.Fatalf("join = %v, want ErrInternal", err)
	}
	ok := &sink{}
	if err := call(t, s.Join, Request{Member: ok, Room: "other", User: "u"}); err != nil {
		t.Fatalf("the shard did not go on after a panic: %v", err)
	}
	if n := testutil.ToFloat64(metrics.panics); n != 1 {
		t.Fatalf("panics = %v", n)
	}
}

type panicky struct{}

func (panicky) Send([]byte) bool            { panic("boom") }
func (panicky) SendBestEffort([]byte) bool  { panic("boom") }
func (panicky) SendLater([]byte) bool       { panic("boom") }
func (panicky) Flush()                      {}
func (panicky) Kick(wire.CloseCode, string) {}

func TestStoppedShard(t *testing.T) {
	t.Parallel()
	s, stop := run(Config{})
	stop()
	// With the inbox full and the shard stopped, callers give up instead of hanging.
	for range cap(s.inbox.slots) {
		if !s.inbox.tryPut(command{}) {
			t.Fatal("a stopped shard's inbox took fewer commands than its size")
		}
	}
	err := s.Join(context.Background(), Request{Member: &sink{}, Room: "r", User: "u", Reply: make(chan error, 1)})
	if !errors.Is(err, ErrStopped) {
		t.Fatalf("join on a stopped shard = %v", err)
	}
}

func TestTypingRefresh(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		s := start(t, Config{TypingRefresh: 2 * time.Second})
		a, b := &sink{}, &sink{}
		call(t, s.Join, Request{Member: a, Room: "r", User: "a"})
		call(t, s.Join, Request{Member: b, Room: "r", User: "b"})
		b.events(t)
		typing := func(on bool) { call(t, s.Typing, Request{Member: a, Room: "r", On: on}) }
		typing(true)
		typing(true) // a repeat within TypingRefresh is not passed on
		time.Sleep(time.Second)
		typing(true)
		if got := b.types(t); len(got) != 1 || got[0] != wire.TypeTyping {
			t.Fatalf("b got %v, want one typing", got)
		}
		time.Sleep(1500 * time.Millisecond)
		typing(true) // past TypingRefresh: passed on again, so b's page keeps showing it
		typing(false)
		typing(false) // off twice is passed on once
		evs := b.events(t)
		if len(evs) != 2 || !evs[0].On || evs[1].On {
			t.Fatalf("b got %+v", evs)
		}
		if b.bestEffort != 3 || len(a.events(t)) != 2 { // a: its joined and b's presence
			t.Fatalf("typing went the wrong way: b best effort %d", b.bestEffort)
		}
	})
}

// TestPresenceWaits: presence alone waits up to PresenceDelay for the members' writers, and
// the joins of several users in that time cost one wake-up; a message goes at once, and the
// presence queued before it goes with it.
func TestPresenceWaits(t *testing.T) {
	t.Parallel()
	const delay = 50 * time.Millisecond
	flushes := func(m *sink) int {
		m.mu.Lock()
		defer m.mu.Unlock()
		return m.flushes
	}
	t.Run("joins", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			s := start(t, Config{PresenceDelay: delay})
			a := &sink{}
			call(t, s.Join, Request{Member: a, Room: "r", User: "a"})
			synctest.Wait()
			before := flushes(a)
			for i := range 5 {
				call(t, s.Join, Request{Member: &sink{}, Room: "r", User: fmt.Sprint("u", i)})
			}
			synctest.Wait()
			if n := flushes(a) - before; n != 0 {
				t.Fatalf("woken %d times for presence before PresenceDelay", n)
			}
			time.Sleep(delay)
			synctest.Wait()
			if n := flushes(a) - before; n != 1 {
				t.Fatalf("woken %d times for 5 joins, want 1", n)
			}
			if got := a.types(t); len(got) != 6 || got[5] != wire.TypePresence {
				t.Fatalf("a got %v, want joined and 5 presence", got)
			}
		})
	})
	t.Run("a message behind", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			s := start(t, Config{PresenceDelay: delay})
			a, b := &sink{}, &sink{}
			call(t, s.Join, Request{Member: a, Room: "r", User: "a"})
			synctest.Wait()
			a.events(t)
			before := flushes(a)
			call(t, s.Join, Request{Member: b, Room: "r", User: "b"})
			call(t, s.Publish, Request{Member: b, Room: "r", Text: "hi"})
			synctest.Wait()
			if n := flushes(a) - before; n != 1 {
				t.Fatalf("woken %d times before PresenceDelay, want 1 for the message", n)
			}
			if got := a.types(t); len(got) != 2 || got[0] != wire.TypePresence || got[1] != wire.TypeMessage {
				t.Fatalf("a got %v, want presence then message", got)
			}
			time.Sleep(delay)
			synctest.Wait()
			if n := flushes(a) - before; n != 1 {
				t.Fatalf("woken again for presence that went with the message (%d)", n)
			}
		})
	})
}

func TestIdleRoomsAreForgotten(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		s := start(t, Config{IdleRoomTTL: time.Hour, MaxIdleRooms: 2})
		m := &sink{}
		epochs := map[string]string{}
		for _, room := range []string{"a", "b", "c"} {
			call(t, s.Join, Request{Member: m, Room: room, User: "u"})
			call(t, s.Publish, Request{Member: m, Room: room, Text: "x"})
			call(t, s.Leave, Request{Member: m, Room: room, Quiet: true})
			epochs[room] = m.events(t)[0].Epoch
			time.Sleep(time.Second)
		}
		rejoin := func(room string) wire.Event {
			call(t, s.Join, Request{Member: m, Room: room, User: "u"})
			defer call(t, s.Leave, Request{Member: m, Room: room, Quiet: true})
			return m.events(t)[0]
		}
		time.Sleep(time.Minute) // a sweep: three idle rooms, two may stay; "a" idled longest
		if j := rejoin("a"); j.Epoch == epochs["a"] || j.Seq != 0 {
			t.Fatalf("room a kept: epoch %q seq %d", j.Epoch, j.Seq)
		}
		if j := rejoin("c"); j.Epoch != epochs["c"] || j.Seq != 1 || len(j.History) != 1 {
			t.Fatalf("room c lost: %+v", j)
		}
		time.Sleep(2 * time.Hour) // past IdleRoomTTL: all go
		if j := rejoin("c"); j.Epoch == epochs["c"] || len(j.History) != 0 {
			t.Fatalf("room c outlived its TTL: %+v", j)
		}
	})
}

func TestHistoryRing(t *testing.T) {
	t.Parallel()
	h := newHistory(5)
	for seq := uint64(1); seq <= 8; seq++ {
		h.add(seq, []byte(fmt.Sprint(seq)))
	}
	cases := []struct {
		after, before uint64
		limit         int
		want          string
	}{
		{0, 0, 10, "45678"},
		{0, 0, 2, "78"},
		{5, 0, 10, "678"},
		{0, 7, 10, "456"},
		{0, 7, 1, "6"},
		{0, 4, 10, ""},
		{8, 0, 10, ""},
		{0, 100, 3, "678"},
	}
	for _, tc := range cases {
		got := ""
		for _, obj := range h.between(tc.after, tc.before, tc.limit) {
			got += string(obj)
		}
		if got != tc.want {
			t.Errorf("between(%d, %d, %d) = %q, want %q", tc.after, tc.before, tc.limit, got, tc.want)
		}
	}
	for after, want := range map[uint64]bool{8: true, 9: true, 3: true, 2: false, 0: false} {
		if got := h.retainedAfter(after); got != want {
			t.Errorf("retainedAfter(%d) = %v", after, got)
		}
	}
}

// queueMember costs what a session's outbox costs: a lock and an append.
type queueMember struct {
	mu    sync.Mutex
	items [][]byte
}

func (q *queueMember) Send(obj []byte) bool {
	q.mu.Lock()
	if len(q.items) == cap(q.items) && len(q.items) >= 1024 {
		q.items = q.items[:0]
	}
	q.items = append(q.items, obj)
	wake := len(q.items) == 1
	q.mu.Unlock()
	return wake
}

func (q *queueMember) Flush() {}

func (q *queueMember) SendBestEffort(obj []byte) bool { return q.Send(obj) }
func (q *queueMember) SendLater(obj []byte) bool      { return q.Send(obj) }
func (q *queueMember) Kick(wire.CloseCode, string)    {}

// fanoutRoom starts a shard with a room of n queueMembers, and returns it with a publish
// request from the first of them.
func fanoutRoom(t testing.TB, n int) (*Shard, Request) {
	t.Helper()
	s := start(t, Config{})
	members := make([]*queueMember, n)
	for i := range members {
		members[i] = &queueMember{}
		if err := call(t, s.Join, Request{Member: members[i], Room: "r", User: fmt.Sprint("u", i)}); err != nil {
			t.Fatal(err)
		}
	}
	return s, Request{Member: members[0], Room: "r", Text: "hello there, how is everyone doing today?", Ref: "c-17", Reply: make(chan error, 1)}
}

// BenchmarkFanout publishes one message to a room of n members, through the shard's inbox,
// and waits for the fan-out to finish: the cost of one message, per message.
func BenchmarkFanout(b *testing.B) {
	for _, n := range []int{1, 100, 10000} {
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			s, req := fanoutRoom(b, n)
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if err := s.Publish(ctx, req); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)*float64(n)/b.Elapsed().Seconds(), "deliveries/s")
		})
	}
}

// BenchmarkInbox: many senders at once, as many sessions' readers are: each publishes in a
// room of its own (one member) and waits for the answer ("reply"), or sends typing and goes on
// ("no reply"), so that commands queue up. Per command.
func BenchmarkInbox(b *testing.B) {
	for _, wait := range []bool{true, false} {
		name := map[bool]string{true: "reply", false: "no reply"}[wait]
		b.Run(name, func(b *testing.B) {
			s := start(b, Config{})
			var rooms atomic.Int64
			b.ReportAllocs()
			b.SetParallelism(8)
			b.RunParallel(func(pb *testing.PB) {
				room := fmt.Sprint("r", rooms.Add(1))
				m := &queueMember{}
				if err := call(b, s.Join, Request{Member: m, Room: room, User: "u"}); err != nil {
					b.Error(err)
					return
				}
				req := Request{Member: m, Room: room, User: "u", Text: "hello there", On: true}
				if wait {
					req.Reply = make(chan error, 1)
				}
				ctx := context.Background()
				for pb.Next() {
					var err error
					if wait {
						err = s.Publish(ctx, req)
					} else {
						err = s.Typing(ctx, req)
					}
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// gate is a member whose first Send waits for the test: it holds the shard mid-batch.
type gate struct {
	sink
	entered, open chan struct{}
	once          sync.Once
}

func (g *gate) Send(obj []byte) bool {
	g.once.Do(func() {
		close(g.entered)
		<-g.open
	})
	return g.sink.Send(obj)
}

// TestBurstFlushes: commands that wait while the shard is busy are handled in batches of
// up to Config.Batch, and each member's writer is woken once per batch for all of them.
func TestBurstFlushes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		batch int
		want  int // flushes for the gated join and the 10 messages behind it
	}{
		{"default batch", 0, 1},
		{"batch of 4", 4, 3},
		// The join's presence waits (Config.PresenceDelay), and goes with the first message.
		{"batch of 1", 1, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// An hour: presence waiting for its late flush goes with the first message, however
			// long this goroutine takes between the gate and the messages.
			s := start(t, Config{Batch: tc.batch, PresenceDelay: time.Hour})
			g := &gate{entered: make(chan struct{}), open: make(chan struct{})}
			other := &sink{}
			if err := call(t, s.Join, Request{Member: other, Room: "r", User: "other"}); err != nil {
				t.Fatal(err)
			}
			other.events(t)
			// The shard flushes after it answers the join: wait for that flush to count it.
			waitFor(t, func() bool {
				other.mu.Lock()
				defer other.mu.Unlock()
				return other.flushes > 0
			})
			other.mu.Lock()
			flushesBefore := other.flushes
			other.mu.Unlock()
			go func() { _ = s.Join(context.Background(), Request{Member: g, Room: "r", User: "g"}) }()
			<-g.entered // the shard is now inside the join's fan-out
			for i := range 10 {
				if err := s.Publish(context.Background(), Request{Member: other, Room: "r", Text: fmt.Sprint(i)}); err != nil {
					t.Fatal(err)
				}
			}
			close(g.open)
			waitFor(t, func() bool {
				other.mu.Lock()
				defer other.mu.Unlock()
				return len(other.objs) == 11 && other.flushes-flushesBefore >= tc.want // g's presence join and the 10 messages
			})
			// Best effort: a flush too many would come within this sleep, and then fail the
			// test; one coming later would go unseen.
			time.Sleep(20 * time.Millisecond)
			other.mu.Lock()
			flushes := other.flushes - flushesBefore
			other.mu.Unlock()
			if flushes != tc.want {
				t.Fatalf("woken %d times for 11 objects, want %d", flushes, tc.want)
			}
		})
	}
}

// TestFanoutAllocations: a message costs the same allocations whatever the size of its room:
// it is encoded once, and each member gets the same bytes. Not parallel: AllocsPerRun counts
// every goroutine's allocations.
func TestFanoutAllocations(t *testing.T) {
	allocs := func(n int) float64 {
		s, req := fanoutRoom(t, n)
		publish := func() {
			if err := s.Publish(context.Background(), req); err != nil {
				t.Fatal(err)
			}
		}
		for range 2048 { // the members' queues and the room's history at their full size
			publish()
		}
		return testing.AllocsPerRun(500, publish)
	}
	one, many := allocs(1), allocs(1000)
	if many != one {
		t.Errorf("a message to 1000 members allocates %v times, to 1 member %v: want no allocation per member", many, one)
	}
	if one > 1 {
		t.Errorf("a message allocates %v times, want 1 (its encoding, shared by the members and the history)", one)
	}
}

// TestCommandSize: a command is copied whole into an inbox that may hold thousands, so a field
// that makes it bigger must say so here (and in InboxFor's doc).
func TestCommandSize(t *testing.T) {
	t.Parallel()
	if got := unsafe.Sizeof(command{}); got > 176 {
		t.Errorf("a command is %d bytes, want at most 176: pass a rarely used field by pointer", got)
	}
}

// TestSizesFor: a batch is at most a quarter of the members' queue, never more than the
// default nor less than one, and a queue of 0 (the transport's default) keeps the default; an
// inbox is 8,192 commands shared out among the shards, 1,024 to 4,096 each.
func TestSizesFor(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		f       func(int) int
		in, out int
	}{
		{"BatchFor", BatchFor, 0, 0}, {"BatchFor", BatchFor, 1, 1}, {"BatchFor", BatchFor, 16, 4},
		{"BatchFor", BatchFor, 100, 25}, {"BatchFor", BatchFor, 1024, 256}, {"BatchFor", BatchFor, 4096, 256},
		{"InboxFor", InboxFor, 0, 4096}, {"InboxFor", InboxFor, 1, 4096}, {"InboxFor", InboxFor, 2, 4096},
		{"InboxFor", InboxFor, 4, 2048}, {"InboxFor", InboxFor, 8, 1024}, {"InboxFor", InboxFor, 64, 1024},
	} {
		if got := tc.f(tc.in); got != tc.out {
			t.Errorf("%s(%d) = %d, want %d", tc.name, tc.in, got, tc.out)
		}
	}
}

// BenchmarkJoin joins one more member into a room of n on one host and takes it out again:
// what a join costs the shard goroutine (joined's users, everyone's presence).
func BenchmarkJoin(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			s, _ := fanoutRoom(b, n)
			i := 0
			b.ReportAllocs()
			for b.Loop() {
				i++
				joinAndLeave(b, s, fmt.Sprint("joiner", i))
			}
		})
	}
}
