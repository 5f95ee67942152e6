package hub

import (
	"context"

	"github.com/shardchat/shardchat/shard"
)

// MemoryBridge is the bridge of a host that shares its rooms with no other: the room's shard
// orders each message itself.
type MemoryBridge struct {
	local Local
}

// NewMemoryBridge returns the one-host bridge; it has the NewBridgeFunc signature.
func NewMemoryBridge(local Local) (Bridge, error) {
	return &MemoryBridge{local: local}, nil
}

// Publish orders req in its room's shard.
func (b *MemoryBridge) Publish(ctx context.Context, req shard.Request) error {
	return b.local.Order(ctx, req)
}

// Close does nothing: the memory bridge starts nothing.
func (b *MemoryBridge) Close() error { return nil }
