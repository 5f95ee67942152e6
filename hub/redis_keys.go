package hub

import (
	"errors"
	"slices"
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

// A channel carries events in payloads of one header line, then the encoded object that every
// host hands its members as it is, so an object is encoded once in the whole cluster:
//
//	M <epoch> <seq> <user>\n<message object>
//	B <epoch> <count>\n<seq> <user>\n<message object>\n<seq> <user>\n<message object>...
//	T <0|1> <user>\n<typing object>
//	P <0|1> <user>\n<presence object>      (1: join, 0: leave)
//	R <count>\n<user>\n<user>...
//
// R carries a room's roster, every name held in it (see redis_roster.go).
// B carries a batch of count messages, which one publish script ordered, each as a line of
// seq and user and a line of its object. User names hold no newline (no control characters),
// and objects none (JSON escapes them), so every line ends at the next '\n'.

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

// parsePayload reads one channel payload into the events a shard delivers, in order,
// appended to evs.
func parsePayload(p string, evs []shard.Event) ([]shard.Event, error) {
	nl := strings.IndexByte(p, '\n')
	if nl < 3 || p[1] != ' ' {
		return nil, errBadPayload
	}
	header, obj := p[:nl], p[nl+1:]
	var ev shard.Event
	switch header[0] {
	case 'M':
		epoch, rest, ok1 := strings.Cut(header[2:], " ")
		seq, user, ok2 := parseSeqUser(rest)
		if !ok1 || !ok2 {
			return nil, errBadPayload
		}
		ev.Kind, ev.Epoch, ev.Seq, ev.User = shard.EventMessage, epoch, seq, user
	case 'B':
		return parseBatch(header, obj, evs)
	case 'T', 'P':
		on, user, ok := strings.Cut(header[2:], " ")
		if !ok || (on != "0" && on != "1") {
			return nil, errBadPayload
		}
		ev.Kind, ev.On, ev.User = shard.EventTyping, on == "1", user
		if header[0] == 'P' {
			ev.Kind = shard.EventPresence
		}
	default:
		return nil, errBadPayload
	}
	ev.Obj = []byte(obj)
	return append(evs, ev), nil
}

// parseBatch reads the messages of a B payload after its header, appended to evs. Their
// objects share one copy of body.
func parseBatch(header, body string, evs []shard.Event) ([]shard.Event, error) {
	epoch, countText, ok := strings.Cut(header[2:], " ")
	count, err := strconv.Atoi(countText)
	if !ok || err != nil || count < 1 || count > maxPublishBatch || count > len(body) {
		return nil, errBadPayload
	}
	evs = slices.Grow(evs, count)
	buf := []byte(body)
	at := 0
	for n := 0; n < count; n++ {
		nl := strings.IndexByte(body[at:], '\n')
		if nl < 0 {
			return nil, errBadPayload
		}
		seq, user, ok := parseSeqUser(body[at : at+nl])
		if !ok {
			return nil, errBadPayload
		}
		at += nl + 1
		end := len(body)
		if n < count-1 {
			i := strings.IndexByte(body[at:], '\n')
			if i < 0 {
				return nil, errBadPayload
			}
			end = at + i
		} else if strings.IndexByte(body[at:], '\n') >= 0 {
			return nil, errBadPayload
		}
		evs = append(evs, shard.Event{Kind: shard.EventMessage, Epoch: epoch, Seq: seq, User: user,
			Obj: buf[at:end:end]})
		at = end + 1
	}
	return evs, nil
}

// parseSeqUser reads "<seq> <user>", where seq is not 0.
func parseSeqUser(s string) (uint64, string, bool) {
	seqText, user, ok := strings.Cut(s, " ")
	if !ok {
		return 0, "", false
	}
	seq, err := strconv.ParseUint(seqText, 10, 64)
	return seq, user, err == nil && seq != 0
}

// maxRosterNames bounds the names a roster payload may say it holds.
const maxRosterNames = 1 << 20

// parseRoster reads an R payload into its names.
func parseRoster(p string) ([]string, error) {
	header, body, ok := strings.Cut(p, "\n")
	if !ok || !strings.HasPrefix(header, "R ") {
		return nil, errBadPayload
	}
	count, err := strconv.Atoi(header[2:])
	if err != nil || count < 0 || count > maxRosterNames || count > len(body)+1 {
		return nil, errBadPayload
	}
	if count == 0 {
		if body != "" {
			return nil, errBadPayload
		}
		return nil, nil
	}
	names := strings.Split(body, "\n")
	if len(names) != count {
		return nil, errBadPayload
	}
	return names, nil
}
