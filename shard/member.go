package shard

import "github.com/shardchat/shardchat/transport/wire"

// Member is one connection's seat in the rooms of a shard. The transport implements it; the
// shard only ever hands it encoded objects.
//
// Shard goroutines call Send and SendBestEffort concurrently (a connection can be in rooms
// of several shards), and both must return at once: a member that cannot keep up is marked
// a slow consumer and closed by its own session, never waited for.
type Member interface {
	// Send queues one encoded object for delivery. obj is shared with other members and
	// must not be modified. When the member's queue is full, Send marks it a slow consumer
	// instead: nothing is dropped silently.
	Send(obj []byte)
	// SendBestEffort queues obj unless the member's queue is more than half full, in
	// which case obj is dropped. Only typing objects go this way.
	SendBestEffort(obj []byte)
	// Kick closes the member's connection with code, after what is queued. The member
	// stays seated until its session leaves, as on any disconnect.
	Kick(code wire.CloseCode, reason string)
}
