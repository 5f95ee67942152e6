package hub

import (
	"context"

	"github.com/shardchat/shardchat/shard"
)

// MemoryBridge is the bridge of a host that shares its rooms with no other: each room's
// shard orders its messages and knows all its members.
type MemoryBridge struct {
	local Local
}

// NewMemoryBridge returns the one-host bridge; it has the NewBridgeFunc signature.
func NewMemoryBridge(local Local) (Bridge, error) {
	return &MemoryBridge{local: local}, nil
}

// Join seats the member in the room's shard.
func (b *MemoryBridge) Join(ctx context.Context, req shard.Request) error {
	return b.local.Shard(req.Room).Join(ctx, req)
}

// Leave takes the member out of the room's shard.
func (b *MemoryBridge) Leave(ctx context.Context, req shard.Request) error {
	return b.local.Shard(req.Room).Leave(ctx, req)
}

// Publish orders the message in the room's shard.
func (b *MemoryBridge) Publish(ctx context.Context, req shard.Request) error {
	return b.local.Shard(req.Room).Publish(ctx, req)
}

// Typing passes typing on in the room's shard.
func (b *MemoryBridge) Typing(ctx context.Context, req shard.Request) error {
	return b.local.Shard(req.Room).Typing(ctx, req)
}

// Users answers from the room's shard.
func (b *MemoryBridge) Users(ctx context.Context, req shard.Request) error {
	return b.local.Shard(req.Room).Users(ctx, req)
}

// Rooms lists this host's rooms.
func (b *MemoryBridge) Rooms(ctx context.Context, limit int) ([]shard.RoomInfo, error) {
	return b.local.LocalRooms(ctx, limit)
}

// Ready is always nil: there is nothing to be down.
func (b *MemoryBridge) Ready() error { return nil }

// Start does nothing: the one-host bridge has no work of its own.
func (b *MemoryBridge) Start() {}

// Close does nothing: the memory bridge starts nothing.
func (b *MemoryBridge) Close() error { return nil }
