package hub

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/shardchat/shardchat/shard"
	"github.com/shardchat/shardchat/transport/wire"
)

// maxPublishBatch bounds the messages one publish script orders, so that one script stays
// short for Redis, which runs nothing else meanwhile.
const maxPublishBatch = 128

// maxPublishScripts is how many publish scripts for one room may be under way at once from
// this host: a few, so that a quiet room's messages go at once, and a busy room's wait and
// go together.
const maxPublishScripts = 2

// A host has at most maxPublishScripts scripts under way for a room. While it has, the room's
// next messages wait in its lane, and the next script to go orders all of them at once. Under
// load, a script and its publish then carry many messages for the price of one (Redis runs a
// script's fixed calls once, reads one command and sends one payload to each subscriber); in
// a quiet room each message goes at once, alone.
//
// When a script ends, the sender of the first message waiting runs the next: no goroutine is
// started for it, and no sender runs more than one script.

// outgoing is a message on its way to Redis: the parts of its object around the seq, which
// the script puts in, its sender, and the time (Redis' clock, ms) after which it must not be
// sent.
type outgoing struct {
	head, tail, user, deadline string // static after construction

	// turn tells the sender what to do next: run a batch (publishTurn.batch), or take its
	// outcome. It is made under the lanes' mu when the message queues, before any other
	// goroutine sees the message, and then only sent on (once) and received from. It holds
	// one turn, so that a sender who stopped waiting blocks no one.
	turn chan publishTurn

	leads bool // guarded by the lanes' mu: the message was picked to run the next batch
}

// publishTurn is a sender's turn: the batch to run, or the message's outcome: sent, or not
// (Redis found it late, or the call failed with err).
type publishTurn struct {
	batch []*outgoing // the batch this sender is to run
	sent  bool
	err   error
}

// publishLanes are the rooms that have publish scripts under way from this host, with the
// messages that wait for the next one. Its methods may be called concurrently.
type publishLanes struct {
	mu    sync.Mutex
	rooms map[string]publishLane // present while a script for the room is under way
}

// laneStripes is how many publishLanes a bridge spreads its rooms over, so that the senders
// of rooms on different stripes take no lock in common.
const laneStripes = 64

// lanesOf is the publishLanes of room.
func (b *RedisBridge) lanesOf(room string) *publishLanes {
	return &b.lanes[xxhash.Sum64String(room)%laneStripes]
}

// publishLane is a room's scripts under way and the messages waiting for the next.
type publishLane struct {
	running int
	waiting []*outgoing
}

// enter answers nil when o's sender may run its script now, alone: fewer than
// maxPublishScripts for room are under way. Else it queues a copy of o behind them, which
// it answers: only a message that waits is on the heap.
func (l *publishLanes) enter(room string, o outgoing) *outgoing {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.rooms == nil {
		l.rooms = make(map[string]publishLane)
	}
	lane := l.rooms[room]
	var queued *outgoing
	if lane.running == maxPublishScripts {
		queued = new(outgoing)
		*queued = o
		queued.turn = make(chan publishTurn, 1)
		lane.waiting = append(lane.waiting, queued)
	} else {
		lane.running++
	}
	l.rooms[room] = lane
	return queued
}

// next follows a script for room that ended: it takes the room's next batch from its lane
// and marks its first message to lead it, or, when nothing waits, answers nil.
func (l *publishLanes) next(room string) []*outgoing {
	l.mu.Lock()
	defer l.mu.Unlock()
	lane := l.rooms[room]
	if len(lane.waiting) == 0 {
		if lane.running--; lane.running == 0 {
			delete(l.rooms, room)
		} else {
			l.rooms[room] = lane
		}
		return nil
	}
	n := min(len(lane.waiting), maxPublishBatch)
	batch := lane.waiting[:n:n]
	lane.waiting = lane.waiting[n:]
	l.rooms[room] = lane
	batch[0].leads = true
	return batch
}

// withdraw takes o out of room's lane, if it still waits there, for a sender that stopped
// waiting: queued reports that it did, so o was never sent; leads that o was picked to run a
// batch, which its sender must still do.
func (l *publishLanes) withdraw(room string, o *outgoing) (queued, leads bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	lane := l.rooms[room]
	for i, w := range lane.waiting {
		if w == o {
			lane.waiting = append(lane.waiting[:i:i], lane.waiting[i+1:]...)
			l.rooms[room] = lane
			return true, false
		}
	}
	return false, o.leads
}

// await waits for the turn of o, a message that queued in room's lane: a batch to run, or
// its outcome. When ctx ends first, o is withdrawn if it still waits (never sent); a batch it
// was picked to lead is still answered, since others wait on it, and so is an outcome that
// came meanwhile: a message that was sent is never reported as not sent.
func (l *publishLanes) await(ctx context.Context, room string, o *outgoing) publishTurn {
	select {
	case turn := <-o.turn:
		return turn
	case <-ctx.Done():
	}
	queued, leads := l.withdraw(room, o)
	switch {
	case queued:
		return publishTurn{err: ctx.Err()}
	case leads:
		return <-o.turn // on its way: the batch it runs for the others
	}
	select {
	case turn := <-o.turn:
		return turn
	default:
		return publishTurn{err: ctx.Err()} // its batch runs; the script drops it if late
	}
}

// Publish orders the message in Redis. The sender's copy comes back on the room's channel,
// with everyone else's.
func (b *RedisBridge) Publish(ctx context.Context, req shard.Request) error {
	msg := wire.Message{Room: req.Room, User: req.User, Text: req.Text, TS: time.Now().UnixMilli(), Ref: req.Ref}
	// Both parts in one buffer of the right size, and one string for both.
	buf := make([]byte, 0, wire.MessageOverhead+len(msg.Room)+len(msg.User)+len(msg.Text)+len(msg.Ref))
	buf = wire.AppendMessageHead(buf, req.Room)
	split := len(buf)
	parts := string(wire.AppendMessageTail(buf, &msg))
	cctx, cancel := b.callCtx(ctx)
	defer cancel()
	o := outgoing{head: parts[:split], tail: parts[split:], user: req.User, deadline: b.redisDeadline(cctx)}
	start := time.Now()
	var turn publishTurn
	lanes := b.lanesOf(req.Room)
	if queued := lanes.enter(req.Room, o); queued == nil {
		turn = b.publishBatch(cctx, req.Room, []*outgoing{&o})
	} else {
		turn = lanes.await(cctx, req.Room, queued)
		if turn.batch != nil {
			ctx, cancel := b.callCtx(b.ctx) // not cctx: the others wait on it too
			turn = b.publishBatch(ctx, req.Room, turn.batch)
			cancel()
		}
	}
	if turn.err == nil && !turn.sent {
		b.metrics.errors.WithLabelValues("publish_late").Inc()
		return unavailable("the message was not sent: redis is too slow")
	}
	if turn.err != nil {
		b.metrics.errors.WithLabelValues("publish").Inc()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return unavailable("the message was not sent")
	}
	b.metrics.publishSeconds.Observe(time.Since(start).Seconds())
	return nil
}

// publishBatch orders batch, a room's messages in the order they came, with one script,
// hands the room's lane to the next batch, tells the other senders their outcomes, and
// answers the first message's.
func (b *RedisBridge) publishBatch(ctx context.Context, room string, batch []*outgoing) publishTurn {
	args := make([]string, 0, 3+4*len(batch))
	args = append(args, b.args.history, b.args.ttl, b.args.publish)
	for _, o := range batch {
		args = append(args, o.head, o.tail, o.user, o.deadline)
	}
	answer, err := publishScript.Exec(ctx, b.client,
		[]string{b.keys.meta(room), b.keys.log(room), b.keys.channel(room)}, args).ToMessage()
	b.noteCall(err)
	var seqs []int64 // nil: all were sent
	if err == nil && !answer.IsInt64() {
		if seqs, err = answer.AsIntSlice(); err == nil && len(seqs) != len(batch) {
			err = fmt.Errorf("publish script answered %d outcomes for %d messages", len(seqs), len(batch))
		}
	}
	b.metrics.publishBatchSize.Observe(float64(len(batch)))
	if next := b.lanesOf(room).next(room); next != nil {
		next[0].turn <- publishTurn{batch: next}
	}
	outcome := func(i int) publishTurn {
		switch {
		case err != nil:
			return publishTurn{err: err}
		case seqs != nil:
			return publishTurn{sent: seqs[i] > 0}
		}
		return publishTurn{sent: true}
	}
	for i, o := range batch[1:] {
		o.turn <- outcome(i + 1)
	}
	return outcome(0)
}
