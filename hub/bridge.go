package hub

import (
	"context"

	"github.com/shardchat/shardchat/shard"
)

// Bridge is how this host shares its rooms with other hosts: it orders messages, carries
// messages, typing and presence between hosts, and knows who is in a room on every host.
// The one-host bridge (MemoryBridge) shares nothing and lets each room's shard do it all;
// RedisBridge orders in Redis and hands what it receives to the shards here.
//
// Its methods are called by sessions' readers, from many goroutines at once. They may block
// their caller (waiting on Redis, say) but never a shard.
type Bridge interface {
	// Join seats req.Member in req.Room as req.User on every host, or refuses with a
	// *wire.Error (name_taken, unavailable); see shard.Shard.Join.
	Join(ctx context.Context, req shard.Request) error
	// Leave takes req.Member out of req.Room and tells every host.
	Leave(ctx context.Context, req shard.Request) error
	// Publish orders the message req.Text in req.Room and has it delivered on every host,
	// this one included; the sender's copy is its acknowledgement. When it cannot be
	// ordered the error is a *wire.Error with code unavailable, and nothing was sent.
	Publish(ctx context.Context, req shard.Request) error
	// Typing passes req.On on to the others in req.Room on every host.
	Typing(ctx context.Context, req shard.Request) error
	// Users sends req.Member the sorted user names of req.Room on every host.
	Users(ctx context.Context, req shard.Request) error
	// Rooms returns up to limit rooms with members on any host, the busiest first.
	Rooms(ctx context.Context, limit int) ([]shard.RoomInfo, error)
	// Ready returns nil while the bridge can serve, and why not otherwise.
	Ready() error
	// Start begins the bridge's own work, which may use the shards; the hub calls it once,
	// after the shards run.
	Start()
	// Close stops the bridge, takes this host's users out of every room, and waits for
	// what it started.
	Close() error
}

// Local is this host's side of a bridge: the shards that own the rooms here.
type Local interface {
	// Shard returns the shard that owns room.
	Shard(room string) *shard.Shard
	// LocalRooms returns up to limit rooms with members on this host, the busiest first.
	LocalRooms(ctx context.Context, limit int) ([]shard.RoomInfo, error)
}

// NewBridgeFunc builds a bridge over the shards of this host. The bridge must not use local
// before its Start: the shards are created after it, so that a bridge that implements
// shard.Remote can be given to them.
type NewBridgeFunc func(local Local) (Bridge, error)
