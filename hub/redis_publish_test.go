package hub

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/shardchat/shardchat/internal/testprog"
	"github.com/shardchat/shardchat/transport/wire"
)

// running is how many scripts for room are under way.
func (l *publishLanes) running(room string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rooms[room].running
}

// TestPublishLanes walks a room's lane through its states: scripts up to maxPublishScripts
// go at once, the next messages wait; a sender that stops waiting withdraws its message, or,
// picked to lead meanwhile, learns that it must run the batch; batches are at most
// maxPublishBatch; and the lane is gone once its last script ended.
func TestPublishLanes(t *testing.T) {
	t.Parallel()
	var l publishLanes
	var msgs []*outgoing // those that wait
	for i := range maxPublishScripts + maxPublishBatch + 3 {
		queued := l.enter("r", outgoing{user: strconv.Itoa(i)})
		if (queued == nil) != (i < maxPublishScripts) {
			t.Fatalf("message %d may go now: %v", i, queued == nil)
		}
		if queued != nil {
			if queued.turn == nil || queued.user != strconv.Itoa(i) {
				t.Fatalf("message %d queued as %+v", i, queued)
			}
			msgs = append(msgs, queued)
		}
	}
	if l.enter("other", outgoing{}) != nil {
		t.Fatal("another room's message waits behind this room's")
	}
	waiting := msgs
	last := waiting[len(waiting)-1]
	if queued, leads := l.withdraw("r", last); !queued || leads {
		t.Fatalf("withdrawing a waiting message: queued %v, leads %v", queued, leads)
	}
	waiting = waiting[:len(waiting)-1]

	// One script ends: the next batch is the first maxPublishBatch waiting, in order.
	batch := l.next("r")
	if !slices.Equal(batch, waiting[:maxPublishBatch]) {
		t.Fatalf("first batch: %d messages, want the first %d waiting", len(batch), maxPublishBatch)
	}
	if queued, leads := l.withdraw("r", batch[0]); queued || !leads {
		t.Fatalf("withdrawing the batch's leader: queued %v, leads %v", queued, leads)
	}
	if queued, leads := l.withdraw("r", batch[1]); queued || leads {
		t.Fatalf("withdrawing a follower: queued %v, leads %v", queued, leads)
	}
	if got := l.next("r"); !slices.Equal(got, waiting[maxPublishBatch:]) {
		t.Fatalf("second batch: %d messages, want the %d left", len(got), len(waiting)-maxPublishBatch)
	}
	if n := l.running("r"); n != maxPublishScripts {
		t.Fatalf("%d scripts under way, want %d: batches take the place of the scripts that ended", n, maxPublishScripts)
	}
	for i := range maxPublishScripts {
		if got := l.next("r"); got != nil {
			t.Fatalf("a batch of %d with nothing waiting", len(got))
		}
		if n := l.running("r"); n != maxPublishScripts-1-i {
			t.Fatalf("%d scripts under way, want %d", n, maxPublishScripts-1-i)
		}
	}
	l.next("other")
	if len(l.rooms) != 0 {
		t.Fatalf("lanes left: %+v", l.rooms)
	}
}

// TestPublishScriptLateMessages: in a batch, the messages past their deadline are not sent
// and answer -1, and the others take consecutive seqs; a batch with none late answers its last
// seq; one with all late touches nothing.
func TestPublishScriptLateMessages(t *testing.T) {
	t.Parallel()
	r := testprog.Redis(t)
	h := newRedisHub(t, r.URL(), "t:", "host-a", nil)
	reader := &member{}
	h.mustJoin(t, reader, "r", "reader")
	b := h.bridge
	now := time.Now().UnixMilli() + b.clockOffset.Load()
	future, past := strconv.FormatInt(now+60_000, 10), strconv.FormatInt(now-60_000, 10)
	run := func(deadlines ...string) (any, error) {
		args := []string{b.args.history, b.args.ttl, b.args.publish}
		for i, d := range deadlines {
			msg := wire.Message{Room: "r", User: "u", Text: fmt.Sprint("t", i), TS: 1}
			head := wire.AppendMessageHead(nil, "r")
			tail := wire.AppendMessageTail(nil, &msg)
			args = append(args, string(head), string(tail), "u", d)
		}
		answer, err := publishScript.Exec(context.Background(), b.client,
			[]string{b.keys.meta("r"), b.keys.log("r"), b.keys.channel("r")}, args).ToMessage()
		if err != nil {
			return nil, err
		}
		if answer.IsInt64() {
			return answer.AsInt64()
		}
		return answer.AsIntSlice()
	}
	for _, tc := range []struct {
		deadlines []string
		want      any
	}{
		{[]string{future, past, future}, []int64{1, -1, 2}},
		{[]string{past, future, past}, []int64{-1, 3, -1}},
		{[]string{past, past}, []int64{-1, -1}},
		{[]string{future, future}, int64(5)},
	} {
		got, err := run(tc.deadlines...)
		if err != nil || fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Fatalf("deadlines %v: answered %v, %v; want %v", tc.deadlines, got, err, tc.want)
		}
	}
	msgs := reader.messages(t, 5)
	for i, ev := range msgs {
		if ev.Seq != uint64(i+1) {
			t.Fatalf("message %d has seq %d", i, ev.Seq)
		}
	}
	if texts := []string{msgs[0].Text, msgs[1].Text, msgs[2].Text, msgs[3].Text, msgs[4].Text}; !slices.Equal(texts, []string{"t0", "t2", "t1", "t0", "t1"}) {
		t.Fatalf("texts %v", texts)
	}
}

// TestPublishAwait: a sender that stops waiting still runs the batch it was picked to lead
// (others wait on it), and still takes an outcome that came meanwhile (a message sent is not
// reported as refused); one that still waits is withdrawn.
func TestPublishAwait(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for range 20 { // both of a select's ready cases, in turn
		var l publishLanes
		for range maxPublishScripts {
			l.enter("r", outgoing{})
		}
		leader, follower, late := l.enter("r", outgoing{}), l.enter("r", outgoing{}), l.enter("r", outgoing{})
		batch := l.next("r") // all three; late is then withdrawn as one of the batch
		if len(batch) != 3 {
			t.Fatalf("a batch of %d, want 3", len(batch))
		}
		batch = batch[:2]
		if queued, _ := l.withdraw("r", late); queued {
			t.Fatal("a message of a batch withdrawn as still waiting")
		}

		follower.turn <- publishTurn{sent: true}
		if turn := l.await(ctx, "r", follower); !turn.sent || turn.err != nil {
			t.Fatalf("a follower whose message was sent got %+v", turn)
		}
		go func() {
			time.Sleep(time.Millisecond)
			leader.turn <- publishTurn{batch: batch}
		}()
		if turn := l.await(ctx, "r", leader); len(turn.batch) != 2 {
			t.Fatalf("a leader that stopped waiting got %+v, want its batch", turn)
		}
		waiting := l.enter("r", outgoing{})
		if turn := l.await(ctx, "r", waiting); turn.err == nil {
			t.Fatalf("a message that still waited got %+v, want an error", turn)
		}
		if l.next("r") != nil {
			t.Fatal("a withdrawn message was still in a batch")
		}
	}
}
