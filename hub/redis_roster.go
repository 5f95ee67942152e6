package hub

import (
	"context"
	"maps"
	"slices"

	"github.com/redis/rueidis"
)

// A room's roster, every name its users hold in Redis, is published on the room's channel
// (an R payload) when a host may have missed presence of the room: presence events a full
// shard could not take, a subscription lost and made again, a room this host only started
// to listen to (presence published between its first member's claim and the subscription
// never came here), a dead host's users pruned (a name claimed again between the prune and
// its announced leave). The script reads and publishes in one step, so the roster comes in
// order with the room's presence, and every host's shard tells its members the difference.

// deliverRoster hands a room's roster from its channel to the room's shard without blocking;
// when the shard cannot take it, it is asked for again.
func (b *RedisBridge) deliverRoster(room, payload string) {
	names, err := parseRoster(payload)
	if err != nil {
		b.metrics.errors.WithLabelValues("payload").Inc()
		return
	}
	if !b.local.Shard(room).TryRoster(room, names) {
		b.metrics.handoffDropped.Inc()
		b.wantRoster(room)
	}
}

// wantRoster has the room's roster published after the next heartbeat. It never blocks for
// long: it runs in rueidis' receive loop too.
func (b *RedisBridge) wantRoster(room string) {
	b.mu.Lock()
	b.rosters[room] = struct{}{}
	b.mu.Unlock()
}

// publishRosters publishes the rosters wanted since the last call, in one round trip; those
// that fail are wanted again.
func (b *RedisBridge) publishRosters() {
	b.mu.Lock()
	rooms := slices.Sorted(maps.Keys(b.rosters))
	clear(b.rosters)
	b.mu.Unlock()
	if len(rooms) == 0 {
		return
	}
	execs := make([]rueidis.LuaExec, len(rooms))
	for i, room := range rooms {
		execs[i] = rueidis.LuaExec{Keys: []string{b.keys.users(room), b.keys.channel(room)}, Args: []string{b.args.publish}}
	}
	ctx, cancel := b.callCtx(context.Background())
	defer cancel()
	for i, res := range rosterScript.ExecMulti(ctx, b.client, execs...) {
		err := res.Error()
		b.noteCall(err)
		if err != nil {
			b.metrics.errors.WithLabelValues("roster").Inc()
			b.log.Debug("cannot publish a room's roster; trying again after the next heartbeat", "room", rooms[i], "err", err)
			b.wantRoster(rooms[i])
			continue
		}
		b.metrics.rosters.Inc()
	}
}
