package hub

import (
	"context"

	"github.com/shardchat/shardchat/shard"
)

// Bridge orders a room's messages and carries them between the hosts that share the room.
// The one-host bridge orders in the room's shard; a bridge between hosts orders in a shared
// store and hands what it receives back to this host through Local.
//
// Publish may be called from many goroutines at once. It may block its caller (a session's
// reader) but never a shard.
type Bridge interface {
	// Publish orders the message req.Text from req.Member in req.Room and has it delivered
	// on every host, this one included. The returned error is a *wire.Error when the
	// message is refused (not_joined, unavailable), and the message was not sent.
	Publish(ctx context.Context, req shard.Request) error
	// Close stops the bridge and waits for what it started.
	Close() error
}

// Local is this host's side of a bridge: the shards that deliver a room's events to the
// members connected here.
type Local interface {
	// Order gives req the next seq of its room in the room's shard and delivers it here.
	Order(ctx context.Context, req shard.Request) error
}

// NewBridgeFunc builds a bridge over the shards of this host.
type NewBridgeFunc func(local Local) (Bridge, error)
