package hub

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/shardchat/shardchat/shard"
)

// subscriber listens to the channels of the rooms that have members on this host, and to a
// probe channel that proves the listening works.
//
// Each room has one goroutine that holds its subscription and makes it again after any loss;
// every subscription after the first asks the room's shard to fill what was missed meanwhile
// from the room's stream. watch and unwatch are called by sessions' readers.
type subscriber struct {
	// Static after construction.
	b *RedisBridge

	lastProbe atomic.Int64 // send time (Unix ns) of the newest probe that came back

	// Guarded by mu.
	mu      sync.Mutex
	subs    map[string]*roomSub
	stopped bool
	wg      sync.WaitGroup // one per roomSub goroutine; Add under mu

	wake atomic.Pointer[chan struct{}] // closed (and replaced) when Redis answers again
}

// roomSub is the subscription of one room, held while members here are in the room.
type roomSub struct {
	room    string
	members map[shard.Member]struct{} // guarded by subscriber.mu
	ctx     context.Context
	cancel  context.CancelFunc
	ready   chan struct{} // closed at the first subscription
	once    sync.Once
	again   atomic.Bool // a subscription was made before: later ones resync

	attemptMu     sync.Mutex
	attemptCancel context.CancelFunc // ends the current subscription, to make it again
}

func newSubscriber(b *RedisBridge) *subscriber {
	s := &subscriber{b: b, subs: make(map[string]*roomSub)}
	wake := make(chan struct{})
	s.wake.Store(&wake)
	s.lastProbe.Store(time.Now().UnixNano())
	return s
}

// watch makes sure this host listens to room on behalf of member, and waits until it does.
func (s *subscriber) watch(ctx context.Context, room string, member shard.Member) (added bool, err error) {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return false, errors.New("bridge closed")
	}
	rs := s.subs[room]
	if rs == nil {
		rctx, cancel := context.WithCancel(s.b.ctx)
		rs = &roomSub{room: room, members: make(map[shard.Member]struct{}), ctx: rctx, cancel: cancel, ready: make(chan struct{})}
		s.subs[room] = rs
		s.b.metrics.subscriptions.Inc()
		s.wg.Go(func() { s.run(rs) })
	}
	_, had := rs.members[member]
	rs.members[member] = struct{}{}
	s.mu.Unlock()

	select {
	case <-rs.ready:
	case <-ctx.Done():
		if !had {
			s.unwatch(room, member)
		}
		return false, ctx.Err()
	}
	// Other hosts prune this host's users room by room, from this set.
	err = s.b.client.Do(ctx, s.b.client.B().Sadd().Key(s.b.keys.nodeRooms(s.b.cfg.Node)).Member(room).Build()).Error()
	if err != nil {
		if !had {
			s.unwatch(room, member)
		}
		return false, err
	}
	return !had, nil
}

// unwatch stops listening to room on behalf of member; the last member's unwatch ends the
// subscription.
func (s *subscriber) unwatch(room string, member shard.Member) {
	s.mu.Lock()
	rs := s.subs[room]
	if rs == nil {
		s.mu.Unlock()
		return
	}
	delete(rs.members, member)
	if len(rs.members) > 0 {
		s.mu.Unlock()
		return
	}
	delete(s.subs, room)
	s.b.metrics.subscriptions.Dec()
	s.mu.Unlock()
	rs.cancel()

	ctx, cancel := s.b.callCtx(context.Background())
	defer cancel()
	b := s.b
	// rueidis does not unsubscribe when a Receive's context ends; say it, so Redis stops
	// sending. A new watch of the room in between only makes its goroutine subscribe again.
	_ = b.client.Do(ctx, s.unsubscribeCmd(b.keys.channel(room))).Error()
	_ = b.client.Do(ctx, b.client.B().Srem().Key(b.keys.nodeRooms(b.cfg.Node)).Member(room).Build()).Error()
}

// rooms lists the rooms this host listens to.
func (s *subscriber) rooms() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	rooms := make([]string, 0, len(s.subs))
	for room := range s.subs {
		rooms = append(rooms, room)
	}
	return rooms
}

// reregister writes every room this host listens to into its room set again, in case a write
// failed while Redis was away.
func (s *subscriber) reregister(ctx context.Context) {
	rooms := s.rooms()
	if len(rooms) == 0 {
		return
	}
	b := s.b
	_ = b.client.Do(ctx, b.client.B().Sadd().Key(b.keys.nodeRooms(b.cfg.Node)).Member(rooms...).Build()).Error()
}

// stop ends every subscription and waits for their goroutines.
func (s *subscriber) stop() {
	s.mu.Lock()
	s.stopped = true
	for _, rs := range s.subs {
		rs.cancel()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *subscriber) subscribeCmd(channel string) rueidis.Completed {
	if s.b.sharded {
		return s.b.client.B().Ssubscribe().Channel(channel).Build()
	}
	return s.b.client.B().Subscribe().Channel(channel).Build()
}

func (s *subscriber) unsubscribeCmd(channel string) rueidis.Completed {
	if s.b.sharded {
		return s.b.client.B().Sunsubscribe().Channel(channel).Build()
	}
	return s.b.client.B().Unsubscribe().Channel(channel).Build()
}

// run holds the room's subscription until the room is unwatched.
func (s *subscriber) run(rs *roomSub) {
	s.hold(rs.ctx, s.b.keys.channel(rs.room), rs, 2*time.Second, func(payload string) { s.b.deliver(rs.room, payload) })
}

// wakeAll makes every subscription that waits to try again do it now: Redis answers again.
// Rooms wait long between tries, so that an outage does not turn into a storm of dials; the
// first call that gets through (the probe tries often) wakes them, so that a room misses as
// few messages as can be, and fills the gap from a stream that still holds them.
// It never blocks, so rueidis hooks may call it.
func (s *subscriber) wakeAll() {
	next := make(chan struct{})
	close(*s.wake.Swap(&next))
}

// hold subscribes to channel and makes the subscription again after every loss, waiting at
// most maxBackoff (or until wakeAll) between tries, until ctx is done. onMessage runs in
// rueidis' receive loop and must not block.
func (s *subscriber) hold(ctx context.Context, channel string, rs *roomSub, maxBackoff time.Duration, onMessage func(string)) {
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		actx, acancel := context.WithCancel(ctx)
		rs.attemptMu.Lock()
		rs.attemptCancel = acancel
		rs.attemptMu.Unlock()
		actx = rueidis.WithOnSubscriptionHook(actx, func(sub rueidis.PubSubSubscription) {
			if sub.Kind != "subscribe" && sub.Kind != "ssubscribe" {
				return
			}
			if rs.again.Swap(true) {
				s.b.metrics.resubscribes.Inc()
				if rs.room != "" {
					// Neither blocks: this runs in rueidis' pipeline.
					s.b.resync(rs.room)
					s.b.WantRoster(rs.room)
				} else {
					s.wakeAll() // the probe is back
				}
			}
			rs.once.Do(func() { close(rs.ready) })
		})
		err := s.b.client.Receive(actx, s.subscribeCmd(channel), func(m rueidis.PubSubMessage) { onMessage(m.Message) })
		acancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil && !errors.Is(err, context.Canceled) {
			s.b.metrics.errors.WithLabelValues("subscribe").Inc()
			s.b.log.Debug("subscription lost; subscribing again", "channel", channel, "err", err, "backoff", backoff)
			wake := *s.wake.Load()
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			case <-wake:
			}
			backoff = min(2*backoff, maxBackoff)
			continue
		}
		backoff = 50 * time.Millisecond
	}
}

// resubscribeAll ends every subscription so that each is made again (and fills its gap).
func (s *subscriber) resubscribeAll(probe *roomSub) {
	s.mu.Lock()
	subs := make([]*roomSub, 0, len(s.subs)+1)
	for _, rs := range s.subs {
		subs = append(subs, rs)
	}
	s.mu.Unlock()
	subs = append(subs, probe)
	for _, rs := range subs {
		rs.attemptMu.Lock()
		if rs.attemptCancel != nil {
			rs.attemptCancel()
		}
		rs.attemptMu.Unlock()
	}
}

// runProbe publishes a probe every ProbeInterval on a channel this host listens to. When the
// newest probe that came back is older than ProbeTimeout, messages are being lost somewhere
// between Redis and here, whatever the connection's health says: the bridge is marked down
// and every subscription is made again.
func (s *subscriber) runProbe() {
	b := s.b
	ctx, cancel := context.WithCancel(b.ctx)
	defer cancel()
	channel := b.keys.probe(b.cfg.Node)
	probe := &roomSub{ready: make(chan struct{})}
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		s.hold(ctx, channel, probe, 250*time.Millisecond, func(payload string) {
			if sent, err := strconv.ParseInt(strings.TrimPrefix(payload, "probe "), 10, 64); err == nil && sent > s.lastProbe.Load() {
				s.lastProbe.Store(sent)
			}
		})
	})

	ticker := time.NewTicker(b.cfg.ProbeInterval)
	defer ticker.Stop()
	lastResubscribe := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		// Judge before publishing: a publish can hang as long as Redis does, and the
		// verdict must not wait for it.
		now := time.Now()
		lost := now.Sub(time.Unix(0, s.lastProbe.Load())) > b.cfg.ProbeTimeout
		pctx, pcancel := context.WithTimeout(ctx, b.cfg.ProbeInterval)
		err := b.client.Do(pctx, b.publishCmd(channel, "probe "+strconv.FormatInt(now.UnixNano(), 10))).Error()
		pcancel()
		b.noteCall(err)
		if err != nil {
			b.metrics.errors.WithLabelValues("probe").Inc()
		}
		was := b.probeOK.Swap(!lost)
		b.setUp()
		switch {
		case lost && was:
			b.log.Warn("redis bridge down: probes do not come back; subscribing again")
		case !lost && !was:
			b.log.Info("redis bridge up: probes come back again")
		}
		if lost && now.Sub(lastResubscribe) > b.cfg.ProbeTimeout {
			b.metrics.probeLost.Inc()
			lastResubscribe = now
			s.resubscribeAll(probe)
		}
	}
}
