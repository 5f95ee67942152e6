package shard

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/shardchat/shardchat/transport/wire"
)

// fakeRemote records the syncs a shard asks for; the test answers them.
type fakeRemote struct {
	mu      sync.Mutex
	asked   []uint64 // the after of each Sync
	rosters int      // WantRoster calls
}

func (f *fakeRemote) WantRoster(string) {
	f.mu.Lock()
	f.rosters++
	f.mu.Unlock()
}

func (f *fakeRemote) rostersWanted() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rosters
}

func (f *fakeRemote) Sync(room string, after uint64) {
	f.mu.Lock()
	f.asked = append(f.asked, after)
	f.mu.Unlock()
}

func (f *fakeRemote) syncs() []uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]uint64(nil), f.asked...)
}

// msg is a message event as a bridge would hand it over.
func msg(epoch string, seq uint64) Event {
	m := wire.Message{Room: "r", Seq: seq, User: "someone", Text: fmt.Sprint("m", seq), TS: 1}
	return Event{Kind: EventMessage, Epoch: epoch, Seq: seq, User: m.User, Obj: wire.AppendMessage(nil, &m)}
}

func msgs(epoch string, from, to uint64) []Event {
	var out []Event
	for seq := from; seq <= to; seq++ {
		out = append(out, msg(epoch, seq))
	}
	return out
}

// remoteShard is a shard in remote mode with one member seated in room r at seq base (at
// least 3), from a state that holds the last three messages.
func remoteShard(t *testing.T, base uint64) (*Shard, *fakeRemote, *sink) {
	t.Helper()
	remote := &fakeRemote{}
	s := start(t, Config{Remote: remote, History: 10})
	m := &sink{}
	joined := make(chan error, 1)
	go func() {
		joined <- s.Join(context.Background(), Request{Member: m, Room: "r", User: "u", Users: []string{"u", "v"}, Reply: make(chan error, 1)})
	}()
	waitFor(t, func() bool { return len(remote.syncs()) == 1 })
	if err := s.Synced(context.Background(), "r", RoomState{Epoch: "e1", Seq: base, Messages: msgs("e1", max(1, base-2), base)}); err != nil {
		t.Fatal(err)
	}
	if err := <-joined; err != nil {
		t.Fatalf("parked join: %v", err)
	}
	evs := m.events(t)
	if len(evs) != 1 || evs[0].Type != wire.TypeJoined || evs[0].Seq != base || evs[0].Epoch != "e1" || len(evs[0].History) != 3 || len(evs[0].Users) != 2 {
		t.Fatalf("joined = %+v", evs)
	}
	return s, remote, m
}

func deliver(t *testing.T, s *Shard, evs ...Event) {
	t.Helper()
	for i := range evs {
		if !s.TryDeliver("r", &evs[i]) {
			t.Fatal("inbox full")
		}
	}
}

// seqs waits for n messages and returns their seqs.
func seqs(t *testing.T, m *sink, n int) []uint64 {
	t.Helper()
	var out []uint64
	waitFor(t, func() bool {
		for _, ev := range m.events(t) {
			if ev.Type == wire.TypeMessage {
				out = append(out, ev.Seq)
			}
		}
		return len(out) >= n
	})
	return out
}

func TestRemoteInOrderAndDuplicates(t *testing.T) {
	t.Parallel()
	s, remote, m := remoteShard(t, 5)
	deliver(t, s, msg("e1", 4), msg("e1", 6), msg("e1", 6), msg("e1", 7))
	if got := seqs(t, m, 2); fmt.Sprint(got) != "[6 7]" {
		t.Fatalf("delivered %v", got)
	}
	if n := len(remote.syncs()); n != 1 {
		t.Fatalf("%d syncs for an unbroken run", n)
	}
}

func TestRemoteFillsAGap(t *testing.T) {
	t.Parallel()
	s, remote, m := remoteShard(t, 5)
	deliver(t, s, msg("e1", 8), msg("e1", 6), msg("e1", 9))
	waitFor(t, func() bool { return len(remote.syncs()) == 2 })
	if after := remote.syncs()[1]; after != 5 { // 8 came when 5 was the newest
		t.Fatalf("asked for the gap after %d, want 5", after)
	}
	// Nothing past the gap goes out before it is filled.
	if got := seqs(t, m, 1); fmt.Sprint(got) != "[6]" {
		t.Fatalf("delivered %v before the gap was filled", got)
	}
	if err := s.Synced(context.Background(), "r", RoomState{Epoch: "e1", Seq: 9, Messages: msgs("e1", 6, 9)}); err != nil {
		t.Fatal(err)
	}
	if got := seqs(t, m, 3); fmt.Sprint(got) != "[7 8 9]" {
		t.Fatalf("after the fill: %v", got)
	}
	if m.kicked != 0 {
		t.Fatal("a filled gap kicked the member")
	}
}

func TestRemoteResets(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		act  func(t *testing.T, s *Shard, r *fakeRemote)
	}{
		{"the gap is no longer kept", func(t *testing.T, s *Shard, r *fakeRemote) {
			deliver(t, s, msg("e1", 30))
			waitFor(t, func() bool { return len(r.syncs()) == 2 })
			_ = s.Synced(context.Background(), "r", RoomState{Epoch: "e1", Seq: 30, Messages: msgs("e1", 21, 30)})
		}},
		{"the room has a new epoch", func(t *testing.T, s *Shard, r *fakeRemote) {
			deliver(t, s, msg("e2", 1))
		}},
		{"the store went back in time", func(t *testing.T, s *Shard, r *fakeRemote) {
			if !s.TryResync("r") {
				t.Fatal("inbox full")
			}
			waitFor(t, func() bool { return len(r.syncs()) == 2 })
			_ = s.Synced(context.Background(), "r", RoomState{Epoch: "e1", Seq: 3, After: 5})
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, remote, m := remoteShard(t, 5)
			tc.act(t, s, remote)
			waitFor(t, func() bool {
				m.mu.Lock()
				defer m.mu.Unlock()
				return m.kicked == wire.CloseInternal
			})
			// The room asks for a fresh state, and a newcomer joins from it: it is told the
			// users of its own claim, not what the members before the reset were told, and
			// the shard asks for the store's roster again.
			waitFor(t, func() bool { r := remote.syncs(); return r[len(r)-1] == 0 })
			newcomer := &sink{}
			joined := make(chan error, 1)
			go func() {
				joined <- s.Join(context.Background(), Request{Member: newcomer, Room: "r", User: "n", Users: []string{"n", "z"}, Reply: make(chan error, 1)})
			}()
			if err := s.Synced(context.Background(), "r", RoomState{Epoch: "e9", Seq: 1, Messages: msgs("e9", 1, 1)}); err != nil {
				t.Fatal(err)
			}
			if err := <-joined; err != nil {
				t.Fatal(err)
			}
			if got := heard(t, s, newcomer); len(got) != 1 || got[0] != "joined:[n z]" {
				t.Fatalf("the newcomer heard %v, want joined:[n z]", got)
			}
			if n := remote.rostersWanted(); n != 2 {
				t.Fatalf("%d rosters asked for, want 2 (the first member's, the newcomer's)", n)
			}
		})
	}
}

// TestRemotePresenceAfterReset: after a reset, until a newcomer is seated, the room has no
// roster: presence and a roster from the bridge reach nobody (the members seated before are
// on their way out), and nothing breaks.
func TestRemotePresenceAfterReset(t *testing.T) {
	t.Parallel()
	s, remote, m := remoteShard(t, 5)
	deliver(t, s, msg("e2", 1)) // a new epoch: the room resets
	waitFor(t, func() bool { r := remote.syncs(); return len(r) == 2 && r[1] == 0 })
	if err := s.Synced(context.Background(), "r", RoomState{Epoch: "e2", Seq: 1, Messages: msgs("e2", 1, 1)}); err != nil {
		t.Fatal(err)
	}
	deliver(t, s, presence("x", true))
	if !s.TryRoster("r", []string{"u", "x", "y"}) {
		t.Fatal("inbox full")
	}
	if got := heard(t, s, m); len(got) != 0 {
		t.Errorf("the member on its way out heard %v", got)
	}
	if n := testutil.ToFloat64(s.metrics.panics); n != 0 {
		t.Fatalf("%v panics", n)
	}
}

// TestRemoteStaleSyncAnswer: a resync answered with a state read just before a live message
// arrived is behind the room, not a store that went back in time.
func TestRemoteStaleSyncAnswer(t *testing.T) {
	t.Parallel()
	s, remote, m := remoteShard(t, 5)
	if !s.TryResync("r") { // a subscription came back
		t.Fatal("inbox full")
	}
	waitFor(t, func() bool { return len(remote.syncs()) == 2 })
	deliver(t, s, msg("e1", 6)) // published after the store was read, delivered first
	if err := s.Synced(context.Background(), "r", RoomState{Epoch: "e1", Seq: 5, After: 5}); err != nil {
		t.Fatal(err)
	}
	deliver(t, s, msg("e1", 7))
	if got := seqs(t, m, 2); got[0] != 6 || got[1] != 7 {
		t.Fatalf("seqs %v, want 6 7", got)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.kicked != 0 {
		t.Fatalf("member closed with %d by a stale sync answer", m.kicked)
	}
}

// TestRemoteLeaveCancelsParkedJoin: a session that ends while its join waits for the room's
// state leaves; the join must not be seated when the state comes.
func TestRemoteLeaveCancelsParkedJoin(t *testing.T) {
	t.Parallel()
	remote := &fakeRemote{}
	s := start(t, Config{Remote: remote, History: 10})
	m := &sink{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Join(ctx, Request{Member: m, Room: "r", User: "u", Reply: make(chan error, 1)}) }()
	waitFor(t, func() bool { return len(remote.syncs()) == 1 })
	cancel() // the session gave up waiting
	<-done
	if err := s.Leave(context.Background(), Request{Member: m, Room: "r", User: "u", Quiet: true, Reply: make(chan error, 1)}); err != nil {
		t.Fatalf("leave of a parked join: %v, want nil (the join was cancelled)", err)
	}
	_ = s.Synced(context.Background(), "r", RoomState{Epoch: "e1"})
	// A second join of the same name from another member is seated: nobody holds it.
	other := &sink{}
	errs := make(chan error, 1)
	go func() {
		errs <- s.Join(context.Background(), Request{Member: other, Room: "r", User: "u", Reply: make(chan error, 1)})
	}()
	waitFor(t, func() bool { return len(remote.syncs()) >= 2 })
	_ = s.Synced(context.Background(), "r", RoomState{Epoch: "e1"})
	if err := <-errs; err != nil {
		t.Fatalf("a new join of the name after the cancelled one: %v", err)
	}
	rooms, err := s.Rooms(context.Background(), 10)
	if err != nil || len(rooms) != 1 || rooms[0].Members != 1 {
		t.Fatalf("rooms %+v %v, want r with one member", rooms, err)
	}
}

// TestRemoteParkedJoinsShareOneSync: joins that wait for a cold room's state wait for one sync,
// and all get its answer: seated when the store answered, unavailable when it could not.
func TestRemoteParkedJoinsShareOneSync(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		answer RoomState
		want   wire.Code // "" for seated
	}{
		{"answered", RoomState{Epoch: "e1"}, ""},
		{"store down", RoomState{Err: errors.New("redis down")}, wire.CodeUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			remote := &fakeRemote{}
			s := start(t, Config{Remote: remote})
			// Both joins go into the inbox before the answer, in order: both are parked.
			replies := []chan error{make(chan error, 1), make(chan error, 1)}
			for i, user := range []string{"a", "b"} {
				if err := s.inbox.put(context.Background(), s.done, command{op: opJoin, Request: Request{Member: &sink{}, Room: "r", User: user, Reply: replies[i]}}); err != nil {
					t.Fatal(err)
				}
			}
			_ = s.Synced(context.Background(), "r", tc.answer)
			for _, reply := range replies {
				err := <-reply
				var werr *wire.Error
				switch {
				case tc.want == "" && err != nil:
					t.Fatalf("parked join after the answer: %v, want seated", err)
				case tc.want != "" && (!errors.As(err, &werr) || werr.Code != tc.want):
					t.Fatalf("parked join after the answer: %v, want %s", err, tc.want)
				}
			}
			if n := len(remote.syncs()); n != 1 {
				t.Fatalf("%d syncs asked for two joins, want one", n)
			}
		})
	}
}

func TestRemotePresenceAndTyping(t *testing.T) {
	t.Parallel()
	s, _, m := remoteShard(t, 3)
	typing := Event{Kind: EventTyping, User: "w", On: true, Obj: wire.AppendTyping(nil, "r", "w", true)}
	own := Event{Kind: EventTyping, User: "u", On: true, Obj: wire.AppendTyping(nil, "r", "u", true)}
	deliver(t, s, presence("u", true), presence("w", true), own, typing, presence("w", false))
	var got []string
	waitFor(t, func() bool {
		for _, ev := range m.events(t) {
			got = append(got, fmt.Sprintf("%s:%s:%s:%v", ev.Type, ev.User, ev.Event, ev.On))
		}
		return len(got) >= 4
	})
	// u never hears of itself; w's leave first ends w's typing.
	want := "[presence:w:join:false typing:w::true typing:w::false presence:w:leave:false]"
	if fmt.Sprint(got) != want {
		t.Fatalf("got %v\nwant %s", got, want)
	}
}

// presence is a presence event from the bridge for room r.
func presence(user string, join bool) Event {
	event := wire.PresenceLeave
	if join {
		event = wire.PresenceJoin
	}
	return Event{Kind: EventPresence, User: user, On: join, Obj: wire.AppendPresence(nil, "r", user, event)}
}

func typingEvent(user string, on bool) Event {
	return Event{Kind: EventTyping, User: user, On: on, Obj: wire.AppendTyping(nil, "r", user, on)}
}

// heard asks the shard for m's users of room r and returns what m was sent before the
// answer, one "type:user:event" (or "type:user:on", or "joined:[users]") each: everything the
// shard sent m for the commands before.
func heard(t *testing.T, s *Shard, m *sink) []string {
	t.Helper()
	if err := s.Users(context.Background(), Request{Member: m, Room: "r", Ref: "barrier", Reply: make(chan error, 1)}); err != nil {
		t.Fatal(err)
	}
	var got []string
	for done := false; !done; {
		waitFor(t, func() bool {
			for _, ev := range m.events(t) { // each once: events takes them
				switch ev.Type {
				case wire.TypeUsers:
					done = true
				case wire.TypeJoined:
					got = append(got, fmt.Sprintf("joined:%v", ev.Users))
				case wire.TypeTyping:
					got = append(got, fmt.Sprintf("typing:%s:%v", ev.User, ev.On))
				default:
					got = append(got, ev.Type+":"+ev.User+":"+ev.Event)
				}
			}
			return done
		})
	}
	return got
}

// TestRemoteRoster: with a bridge, the members of a room hear of each change of its users
// once. Presence that would not change what they were told (joined's users, then presence)
// is not passed on, a second member here is announced when it is seated, and a roster read
// again from the store is passed on as the difference to what they were told.
func TestRemoteRoster(t *testing.T) {
	t.Parallel()
	s, remote, m := remoteShard(t, 3) // u, told that u and v are in the room
	deliver(t, s, presence("v", true), presence("x", false), presence("w", true))
	if err := s.Join(context.Background(), Request{Member: &sink{}, Room: "r", User: "y", Users: []string{"u", "v", "w", "y"}, Reply: make(chan error, 1)}); err != nil {
		t.Fatal(err)
	}
	// The first member here took the roster from its claim and asked for the store's; the
	// second took nothing from its own list.
	if n := remote.rostersWanted(); n != 1 {
		t.Fatalf("%d rosters asked for, want 1", n)
	}
	deliver(t, s, presence("y", true), typingEvent("v", true))
	if !s.TryRoster("r", []string{"u", "w", "y", "z"}) {
		t.Fatal("inbox full")
	}
	deliver(t, s, presence("v", false), presence("z", true), presence("q", true))

	got := heard(t, s, m)
	want := []string{"presence:w:join", "presence:y:join", "typing:v:true", "presence:z:join", "typing:v:false", "presence:v:leave", "presence:q:join"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v\nwant %v", got, want)
	}
}

// TestRemoteJoinsShareOneRoster: two joins wait for the room's state with different lists of
// users (x joined between their claims, its presence lost while the room had no state). Both
// are told one list; x, whom neither was told of, starts typing and leaves: both see the
// typing end, and neither hears a leave of a user it never saw join.
func TestRemoteJoinsShareOneRoster(t *testing.T) {
	t.Parallel()
	remote := &fakeRemote{}
	s := start(t, Config{Remote: remote, History: 10})
	carol, bob := &sink{}, &sink{}
	// Both joins go into the inbox before the answer, in order: both are parked.
	replies := []chan error{make(chan error, 1), make(chan error, 1)}
	if err := s.inbox.put(context.Background(), s.done, command{op: opJoin, Request: Request{Member: carol, Room: "r", User: "carol", Users: []string{"carol", "u"}, Reply: replies[0]}}); err != nil {
		t.Fatal(err)
	}
	if err := s.inbox.put(context.Background(), s.done, command{op: opJoin, Request: Request{Member: bob, Room: "r", User: "bob", Users: []string{"bob", "carol", "u", "x"}, Reply: replies[1]}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Synced(context.Background(), "r", RoomState{Epoch: "e1", Seq: 1, Messages: msgs("e1", 1, 1)}); err != nil {
		t.Fatal(err)
	}
	for _, reply := range replies {
		if err := <-reply; err != nil {
			t.Fatal(err)
		}
	}
	deliver(t, s, typingEvent("x", true), presence("x", false))

	for _, tc := range []struct {
		who  string
		m    *sink
		want []string
	}{
		{"carol", carol, []string{"joined:[carol u]", "presence:bob:join", "typing:x:true", "typing:x:false"}},
		{"bob", bob, []string{"joined:[bob carol u]", "typing:x:true", "typing:x:false"}},
	} {
		if got := heard(t, s, tc.m); !slices.Equal(got, tc.want) {
			t.Errorf("%s heard %v\nwant %v", tc.who, got, tc.want)
		}
	}
}

// TestRemoteLateRosterSparesMembersHere: a roster read before the claim of a member seated
// here since comes after its seat. The member is not announced as gone (its own release
// announces its leave), and its join, when it comes back through the bridge, is not heard
// twice.
func TestRemoteLateRosterSparesMembersHere(t *testing.T) {
	t.Parallel()
	s, _, u := remoteShard(t, 3) // u, told that u and v are in the room
	y := &sink{}
	if err := s.Join(context.Background(), Request{Member: y, Room: "r", User: "y", Users: []string{"u", "v", "y"}, Reply: make(chan error, 1)}); err != nil {
		t.Fatal(err)
	}
	if !s.TryRoster("r", []string{"u", "v"}) {
		t.Fatal("inbox full")
	}
	deliver(t, s, presence("y", true))
	if got, want := heard(t, s, u), []string{"presence:y:join"}; !slices.Equal(got, want) {
		t.Errorf("u heard %v, want %v", got, want)
	}
	if got, want := heard(t, s, y), []string{"joined:[u v y]"}; !slices.Equal(got, want) {
		t.Errorf("y heard %v, want %v", got, want)
	}
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// BenchmarkRemoteJoin joins one more member into a room whose roster holds the users of
// other hosts, and takes it out again: what a join into a big room costs the shard goroutine
// (the roster grows by one a join, as in a storm of joins: run it with -benchtime 2000x).
func BenchmarkRemoteJoin(b *testing.B) {
	for _, n := range []int{100, 10000} {
		b.Run(fmt.Sprintf("roster=%d", n), func(b *testing.B) {
			remote := &fakeRemote{}
			s := start(b, Config{Remote: remote})
			users := make([]string, n)
			for i := range users {
				users[i] = fmt.Sprint("elsewhere", i)
			}
			first := &queueMember{}
			joined := make(chan error, 1)
			go func() {
				joined <- s.Join(context.Background(), Request{Member: first, Room: "r", User: "u", Users: users, Reply: make(chan error, 1)})
			}()
			for len(remote.syncs()) == 0 {
				time.Sleep(time.Millisecond)
			}
			if err := s.Synced(context.Background(), "r", RoomState{Epoch: "e1"}); err != nil {
				b.Fatal(err)
			}
			if err := <-joined; err != nil {
				b.Fatal(err)
			}
			i := 0
			b.ReportAllocs()
			for b.Loop() {
				i++
				// It leaves again, so that the members here stay two: with a bridge its name
				// stays in the roster until its presence comes back, as in a storm of joins.
				joinAndLeave(b, s, fmt.Sprint("here", i))
			}
		})
	}
}
