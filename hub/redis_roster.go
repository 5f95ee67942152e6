package hub

import "github.com/redis/rueidis"

// A room's roster, every name its users hold in Redis, is published on the room's channel
// (an R payload) when a host may have missed presence of the room: presence events a full
// shard could not take or a payload it could not read, a subscription lost and made again,
// and, as the shard asks (shard.Remote.WantRoster), a room whose first member here took its
// users from its claim (presence published between the claim and the subscription, or while
// the room waited for its state, never came). The script reads and publishes in one step, so
// the roster comes in order with the room's presence, and every host's shard tells its
// members the difference.

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
		b.WantRoster(room)
	}
}

// WantRoster has the room's roster published after the next heartbeat. It never blocks for
// long: shards call it (shard.Remote), and rueidis' receive loop.
func (b *RedisBridge) WantRoster(room string) {
	b.rostersMu.Lock()
	b.rosters[room] = struct{}{}
	b.rostersMu.Unlock()
}

// maxRostersPerRound bounds the rosters published after one heartbeat: a host that starts
// with many rooms at once sends them over a few rounds instead of in one huge pipeline.
const maxRostersPerRound = 1024

// publishRosters publishes the rosters wanted since the last call, up to maxRostersPerRound,
// in one round trip (the script goes as EVAL: EVALSHA's ExecMulti would load it on every
// node first); those that fail are wanted again.
func (b *RedisBridge) publishRosters() {
	b.rostersMu.Lock()
	rooms := make([]string, 0, min(len(b.rosters), maxRostersPerRound))
	for room := range b.rosters {
		if len(rooms) == maxRostersPerRound {
			break // the rest go after the next heartbeat
		}
		rooms = append(rooms, room)
		delete(b.rosters, room)
	}
	b.rostersMu.Unlock()
	if len(rooms) == 0 {
		return
	}
	execs := make([]rueidis.LuaExec, len(rooms))
	for i, room := range rooms {
		execs[i] = rueidis.LuaExec{Keys: []string{b.keys.users(room), b.keys.channel(room)}, Args: []string{b.args.publish}}
	}
	ctx, cancel := b.callCtx(b.ctx)
	defer cancel()
	for i, res := range rosterScript.ExecMulti(ctx, b.client, execs...) {
		err := res.Error()
		b.noteCall(err)
		if err != nil {
			b.metrics.errors.WithLabelValues("roster").Inc()
			b.log.Debug("cannot publish a room's roster; trying again after the next heartbeat", "room", rooms[i], "err", err)
			b.WantRoster(rooms[i])
			continue
		}
		b.metrics.rosters.Inc()
	}
}
