package hub

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/shardchat/shardchat/shard"
	"github.com/shardchat/shardchat/transport/wire"
)

// maxCountedRooms is how many of its busiest rooms a host publishes for GET /api/rooms.
const maxCountedRooms = 1000

// heartbeatLoop keeps this host alive in Redis, publishes this host's room counts, keeps the
// history of rooms with members here from expiring, and wakes the chores. It makes a few
// bounded calls a beat and waits on nothing else: a late heartbeat gets this host retired.
func (b *RedisBridge) heartbeatLoop() {
	ticker := time.NewTicker(b.cfg.Heartbeat)
	defer ticker.Stop()
	beats := 0
	refreshEvery := max(1, int(b.cfg.HistoryTTL/4/b.cfg.Heartbeat))
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-ticker.C:
		}
		beats++
		ctx, cancel := b.callCtx(b.ctx)
		err := b.heartbeat(ctx)
		if err == nil {
			b.publishCounts(ctx)
			if beats%10 == 0 {
				b.subs.reregister(ctx)
			}
			if beats%refreshEvery == 0 {
				b.refreshHistoryTTL(ctx)
			}
			select {
			case b.choresDue <- struct{}{}:
			default: // the chores are still busy with the last round
			}
		}
		cancel()
	}
}

// choresLoop does, after heartbeats, the work that may take long: retiring and pruning dead
// hosts, claiming this host's names again after its time ran out, and retrying failed
// releases.
func (b *RedisBridge) choresLoop() {
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-b.choresDue:
		}
		for _, node := range *b.dead.Load() {
			b.retire(node)
		}
		if b.reclaimWanted.Load() && !b.beingPruned() && b.reclaim() {
			b.reclaimWanted.Store(false)
		}
		b.retryFailed()
	}
}

// pruneTimeout bounds the pruning of one dead host; its marker outlives it a little.
const pruneTimeout = 30 * time.Second

// retire retires and prunes node, a host whose time ran out, unless another host is at it.
func (b *RedisBridge) retire(node string) {
	ctx, cancel := context.WithTimeout(b.ctx, pruneTimeout)
	defer cancel()
	marker := b.keys.pruning(node)
	err := b.client.Do(ctx, b.client.B().Set().Key(marker).Value(b.cfg.Node).Nx().Px(pruneTimeout+5*time.Second).Build()).Error()
	if rueidis.IsRedisNil(err) {
		return // another host prunes it
	}
	if err != nil {
		b.metrics.errors.WithLabelValues("prune").Inc()
		return
	}
	defer func() {
		dctx, dcancel := b.callCtx(b.ctx)
		defer dcancel()
		_ = b.client.Do(dctx, b.client.B().Del().Key(marker).Build()).Error()
	}()
	n, err := retireScript.Exec(ctx, b.client, []string{b.keys.nodes()}, []string{node}).AsInt64()
	if err != nil {
		b.metrics.errors.WithLabelValues("prune").Inc()
		return
	}
	if n != 1 {
		return // it heartbeat again meanwhile
	}
	b.log.Info("retiring a dead host", "dead", node)
	if err := b.prune(ctx, node); err != nil {
		// Put it back as dead (unless it came back), so that a later round finishes.
		b.metrics.errors.WithLabelValues("prune").Inc()
		b.log.Warn("pruning a dead host failed; it will be tried again", "dead", node, "err", err)
		actx, acancel := b.callCtx(b.ctx)
		defer acancel()
		_ = b.client.Do(actx, b.client.B().Zadd().Key(b.keys.nodes()).Nx().ScoreMember().ScoreMember(0, node).Build()).Error()
	}
}

// beingPruned reports whether a host is pruning this one now (or Redis cannot say).
func (b *RedisBridge) beingPruned() bool {
	ctx, cancel := b.callCtx(b.ctx)
	defer cancel()
	n, err := b.client.Do(ctx, b.client.B().Exists().Key(b.keys.pruning(b.cfg.Node)).Build()).AsInt64()
	return err != nil || n > 0
}

// heartbeat runs heartbeatScript and records which hosts are alive and dead, whether this
// one must claim its names again, and the offset of Redis' clock.
func (b *RedisBridge) heartbeat(ctx context.Context) error {
	sent := time.Now()
	res, err := heartbeatScript.Exec(ctx, b.client, []string{b.keys.nodes()},
		[]string{b.cfg.Node, strconv.FormatInt(b.cfg.NodeTTL.Milliseconds(), 10)}).ToArray()
	rtt := time.Since(sent)
	b.noteCall(err)
	if err == nil && len(res) != 4 {
		err = errBadPayload
	}
	var expired, redisNow int64
	var live, dead []string
	if err == nil {
		expired, err = res[0].AsInt64()
	}
	if err == nil {
		live, err = res[1].AsStrSlice()
	}
	if err == nil {
		dead, err = res[2].AsStrSlice()
	}
	if err == nil {
		redisNow, err = res[3].AsInt64()
	}
	was := b.heartbeatOK.Load()
	b.heartbeatOK.Store(err == nil)
	b.setUp()
	if err != nil {
		b.metrics.errors.WithLabelValues("heartbeat").Inc()
		if was {
			b.log.Warn("redis bridge down: heartbeat failed", "err", err)
		}
		return err
	}
	hb := &b.beat
	// Redis read its clock about halfway through the round trip. A slow round trip says
	// little about where: only quick ones count (the scripts' deadlines allow Timeout/4).
	if !hb.registered || rtt <= b.cfg.Timeout/8 {
		b.clockOffset.Store(redisNow - sent.Add(rtt/2).UnixMilli())
	}
	if !was {
		if !hb.healthySince.IsZero() { // not the first heartbeat
			b.log.Info("redis bridge heartbeats again")
		}
		hb.healthySince = time.Now()
	}
	if expired == 1 && hb.registered {
		// Other hosts may have retired this one while Redis could not hear it: its users
		// were then taken out of their rooms, though they are still here.
		b.log.Warn("this host's time in redis ran out; claiming its users' names again")
		b.reclaimWanted.Store(true)
	}
	hb.registered = true
	b.live.Store(&live)
	if time.Since(hb.healthySince) < b.cfg.NodeTTL {
		// Just back from an outage that every host shared: the others' heartbeats may not
		// have come through yet. Nobody counts as dead until they had the time to.
		dead = nil
	}
	b.dead.Store(&dead)
	return nil
}

// heartbeatState is what the heartbeat goroutine remembers between heartbeats.
type heartbeatState struct {
	registered   bool      // a heartbeat put this host in the live set before
	healthySince time.Time // start of the current run of good heartbeats
}

// reclaim claims again the names of this host's members, announces them, and lists their
// rooms in this host's room set; it reports whether Redis answered every claim. A name that
// another host seated meanwhile is not taken back: its member here is closed, to reconnect
// and be told.
func (b *RedisBridge) reclaim() bool {
	// The rooms first: should this host die halfway, its pruner finds every name.
	ctx, cancel := b.callCtx(b.ctx)
	b.subs.reregister(ctx)
	cancel()
	b.mu.Lock()
	held := maps.Clone(b.held)
	b.mu.Unlock()
	// One round trip a name: up to reclaimWorkers calls in flight, which rueidis pipelines
	// on its connection. The first failure stops the handing out; the next chore
	// round tries again (a claim is safe to repeat). While Redis is slow, up to
	// reclaimWorkers name locks wait on it at once, and joins whose names share them wait too.
	inFlight := make(chan struct{}, reclaimWorkers)
	var failed atomic.Bool
	var wg sync.WaitGroup
	for k, m := range held {
		if failed.Load() {
			break
		}
		inFlight <- struct{}{}
		wg.Go(func() {
			defer func() { <-inFlight }()
			if !b.reclaimOne(k, m) {
				failed.Store(true)
			}
		})
	}
	wg.Wait()
	return !failed.Load()
}

// reclaimWorkers is how many names a reclaim claims at once.
const reclaimWorkers = 32

func (b *RedisBridge) reclaimOne(k roomUser, m shard.Member) bool {
	names := b.nameLock(k.room, k.user)
	names.Lock()
	defer names.Unlock()
	b.mu.Lock()
	cur, still := b.held[k]
	b.mu.Unlock()
	if !still || cur != m {
		return true // left, or rejoined, meanwhile
	}
	ctx, cancel := b.callCtx(b.ctx)
	defer cancel()
	code, _, err := b.claim(ctx, k.room, k.user)
	switch {
	case err != nil:
		b.metrics.errors.WithLabelValues("claim").Inc()
		return false
	case code == 0:
		b.metrics.errors.WithLabelValues("reclaim_conflict").Inc()
		b.log.Warn("a user's name was taken on another host while this host was cut off", "room", k.room, "user", k.user)
		m.Kick(wire.CloseRestart, "your name was taken while this server was cut off; reconnect")
	}
	return true
}

// prune takes every name node holds out of every room it had members in, and announces each
// leave. Close prunes this host itself. It fails when a room could not be pruned; the
// node's room set then stays for another try.
func (b *RedisBridge) prune(ctx context.Context, node string) error {
	rooms, err := b.client.Do(ctx, b.client.B().Smembers().Key(b.keys.nodeRooms(node)).Build()).AsStrSlice()
	if err != nil {
		b.metrics.errors.WithLabelValues("prune").Inc()
		return fmt.Errorf("prune %s: list its rooms: %w", node, err)
	}
	var failed error
	if node == b.cfg.Node {
		rooms = append(rooms, b.subs.rooms()...) // in case a registration failed
		slices.Sort(rooms)
		rooms = slices.Compact(rooms)
	}
	// A few round trips in all, however many rooms and names: every room's users in one
	// pipeline, then every release in another (after the script's load, which ExecMulti does
	// first). Close has only twice the call timeout for it.
	reads := make(rueidis.Commands, len(rooms))
	for i, room := range rooms {
		reads[i] = b.client.B().Hgetall().Key(b.keys.users(room)).Build()
	}
	var releases []rueidis.LuaExec
	var releaseRooms []string // the room of each release
	for i, res := range b.client.DoMulti(ctx, reads...) {
		holders, err := res.AsStrMap()
		if err != nil {
			b.metrics.errors.WithLabelValues("prune").Inc()
			failed = fmt.Errorf("prune %s from room %s: %w", node, rooms[i], err)
			continue
		}
		for user, holder := range holders {
			if holder == node {
				// As a leave of node's own: only if node still holds the name (it may have
				// been claimed again since the read), and announced in the same step.
				releases = append(releases, b.releaseExec(rooms[i], user, node))
				releaseRooms = append(releaseRooms, rooms[i])
			}
		}
	}
	if len(releases) > 0 {
		for i, res := range releaseBatchScript.ExecMulti(ctx, b.client, releases...) {
			gone, err := res.AsInt64()
			if err != nil {
				b.metrics.errors.WithLabelValues("prune").Inc()
				failed = fmt.Errorf("prune %s from room %s: %w", node, releaseRooms[i], err)
				continue
			}
			if gone == 1 {
				b.metrics.pruned.Inc()
			}
		}
	}
	if failed != nil {
		return failed
	}
	return b.client.Do(ctx, b.client.B().Del().Key(b.keys.nodeRooms(node), b.keys.nodeCounts(node)).Build()).Error()
}

// publishCounts writes this host's busiest rooms and their member counts, for GET /api/rooms
// on any host. The key expires with the host.
func (b *RedisBridge) publishCounts(ctx context.Context) {
	rooms, err := b.local.LocalRooms(ctx, maxCountedRooms)
	if err != nil {
		return
	}
	key := b.keys.nodeCounts(b.cfg.Node)
	del := b.client.B().Del().Key(key).Build()
	if len(rooms) == 0 {
		_ = b.client.Do(ctx, del).Error()
		return
	}
	hset := b.client.B().Hset().Key(key).FieldValue()
	for _, r := range rooms {
		hset = hset.FieldValue(r.Name, strconv.Itoa(r.Members))
	}
	ttl := b.client.B().Pexpire().Key(key).Milliseconds(2 * b.cfg.NodeTTL.Milliseconds()).Build()
	for _, res := range b.client.DoMulti(ctx, del, hset.Build(), ttl) {
		if res.Error() != nil {
			b.metrics.errors.WithLabelValues("rooms").Inc()
			return
		}
	}
}

// refreshHistoryTTL keeps the history of rooms with members here, which may go long without
// a message, from expiring under them.
func (b *RedisBridge) refreshHistoryTTL(ctx context.Context) {
	ttl := b.cfg.HistoryTTL.Milliseconds()
	var cmds []rueidis.Completed
	for _, room := range b.subs.rooms() {
		cmds = append(cmds,
			b.client.B().Pexpire().Key(b.keys.meta(room)).Milliseconds(ttl).Build(),
			b.client.B().Pexpire().Key(b.keys.log(room)).Milliseconds(ttl).Build())
	}
	if len(cmds) > 0 {
		b.client.DoMulti(ctx, cmds...)
	}
}

// retryFailed gives back the names whose release failed, hands shards the resyncs they could
// not take, and publishes the rosters of rooms whose presence was lost.
func (b *RedisBridge) retryFailed() {
	b.mu.Lock()
	retries := slices.Collect(maps.Keys(b.retries))
	resyncs := slices.Collect(maps.Keys(b.resyncs))
	clear(b.resyncs)
	b.mu.Unlock()
	for _, r := range retries {
		if !b.retryRelease(r) {
			break // Redis is still away: the rest wait for the next heartbeat
		}
	}
	for _, room := range resyncs {
		b.resync(room)
	}
	b.publishRosters()
}

// retryRelease tries a queued release again, unless a join here has claimed the name since,
// and reports whether Redis answered.
func (b *RedisBridge) retryRelease(r roomUser) bool {
	names := b.nameLock(r.room, r.user)
	names.Lock()
	defer names.Unlock()
	b.mu.Lock()
	_, queued := b.retries[r]
	b.mu.Unlock()
	if !queued {
		return true
	}
	ctx, cancel := b.callCtx(context.Background())
	defer cancel()
	if _, err := b.tryRelease(ctx, r.room, r.user, b.cfg.Node); err != nil {
		return false
	}
	b.mu.Lock()
	delete(b.retries, r)
	b.mu.Unlock()
	return true
}
