package hub

import (
	"errors"
	"strconv"
	"strings"

	"github.com/shardchat/shardchat/shard"
)

// keys names what the Redis bridge keeps in Redis. Every key of a room shares the hash tag
// {room}, so one Lua script touches one Redis Cluster slot, and the room's channel (a sharded
// channel on a cluster) lives in the same slot.
type keys struct {
	prefix string
}

func (k keys) meta(room string) string    { return k.prefix + "{" + room + "}:meta" }  // hash: epoch, seq
func (k keys) log(room string) string     { return k.prefix + "{" + room + "}:log" }   // stream: m (object), u (user)
func (k keys) users(room string) string   { return k.prefix + "{" + room + "}:users" } // hash: user -> node
func (k keys) channel(room string) string { return k.prefix + "{" + room + "}:ch" }
func (k keys) nodes() string              { return k.prefix + "nodes" } // zset: node -> expiry (ms)
func (k keys) nodeRooms(node string) string {
	return k.prefix + "node:{" + node + "}:rooms" // set: rooms where node has members
}
func (k keys) nodeCounts(node string) string {
	return k.prefix + "node:{" + node + "}:counts" // hash: room -> members on node
}
func (k keys) probe(node string) string { return k.prefix + "probe:{" + node + "}" }

// pruning marks a node that a host is pruning: the node, should it come back meanwhile,
// claims its users' names again only once the marker is gone.
func (k keys) pruning(node string) string { return k.prefix + "node:{" + node + "}:pruning" }

// A channel carries one event per payload: a header line, then the encoded object that every
// host hands its members as it is, so an object is encoded once in the whole cluster.
//
//	M <epoch> <seq> <user>\n<message object>
//	T <0|1> <user>\n<typing object>
//	P <0|1> <user>\n<presence object>      (1: join, 0: leave)
//
// User names hold no newline (no control characters), so the header ends at the first '\n'.

func typingPayload(user string, on bool, obj []byte) string {
	return "T " + flag(on) + " " + user + "\n" + string(obj)
}

func presencePayload(user string, join bool, obj []byte) string {
	return "P " + flag(join) + " " + user + "\n" + string(obj)
}

func flag(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

var errBadPayload = errors.New("malformed channel payload")

// parsePayload reads one channel payload into the event a shard delivers.
func parsePayload(p string) (shard.Event, error) {
	var ev shard.Event
	nl := strings.IndexByte(p, '\n')
	if nl < 3 || p[1] != ' ' {
		return ev, errBadPayload
	}
	header, obj := p[:nl], p[nl+1:]
	ev.Obj = []byte(obj)
	switch header[0] {
	case 'M':
		epoch, rest, ok1 := strings.Cut(header[2:], " ")
		seqText, user, ok2 := strings.Cut(rest, " ")
		if !ok1 || !ok2 {
			return ev, errBadPayload
		}
		seq, err := strconv.ParseUint(seqText, 10, 64)
		if err != nil || seq == 0 {
			return ev, errBadPayload
		}
		ev.Kind, ev.Epoch, ev.Seq, ev.User = shard.EventMessage, epoch, seq, user
	case 'T', 'P':
		on, user, ok := strings.Cut(header[2:], " ")
		if !ok || (on != "0" && on != "1") {
			return ev, errBadPayload
		}
		ev.Kind, ev.On, ev.User = shard.EventTyping, on == "1", user
		if header[0] == 'P' {
			ev.Kind = shard.EventPresence
		}
	default:
		return ev, errBadPayload
	}
	return ev, nil
}
