package shard

import "github.com/shardchat/shardchat/transport/wire"

// Member is one connection's seat in the rooms of a shard. The transport implements it; the
// shard only ever hands it encoded objects.
//
// Shard goroutines call its methods concurrently (a connection can be in rooms of several
// shards), and all must return at once: a member that cannot keep up is marked a slow
// consumer and closed by its own session, never waited for.
//
// Queueing and waking are apart so that a shard that fans out a burst of messages wakes each
// member's writer once for the lot, not once a message: Send, SendBestEffort and SendLater
// only queue, and report whether the writer needs waking; the caller then calls Flush on
// those, once it has queued all it has for now (for SendLater, at its late flush).
type Member interface {
	// Send queues one encoded object for delivery and reports whether the member needs a
	// Flush. obj is shared with other members and must not be modified. When the member's
	// queue is full, Send marks it a slow consumer instead: nothing is dropped silently.
	Send(obj []byte) (wake bool)
	// SendBestEffort is Send for objects that may be dropped when the member's queue is more
	// than half full. Only typing objects go this way.
	SendBestEffort(obj []byte) (wake bool)
	// SendLater is Send for objects whose writing may wait for the shard's late flush
	// (Config.PresenceDelay): presence. Anything else sent to the member meanwhile, by any
	// shard or its own session, wakes its writer for both, as Send does. wake reports that
	// the member needs a late flush.
	SendLater(obj []byte) (wake bool)
	// Flush wakes the member's writer to write what is queued, if anything is.
	Flush()
	// Kick closes the member's connection with code, after what is queued. The member
	// stays seated until its session leaves, as on any disconnect.
	Kick(code wire.CloseCode, reason string)
}
