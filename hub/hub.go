// Package hub is the process-wide entry point to the chat rooms: it routes each room to the
// shard that owns it, runs the shards, and owns the Bridge that orders messages and carries
// them between hosts. The transport calls the hub; the hub calls shards and the bridge.
package hub

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shardchat/shardchat/shard"
)

// Config configures a Hub. The zero value of each field means its default.
type Config struct {
	// Shards is the number of shard goroutines. Default runtime.GOMAXPROCS(0).
	Shards int
	// Shard is the configuration of every shard; its ID, Logger and Metrics are set by the hub,
	// and an Inbox of zero means shard.InboxFor(Shards), not shard.Config's own default.
	Shard shard.Config
	// NewBridge builds the bridge between hosts. Default NewMemoryBridge: one host.
	// A bridge that implements shard.Remote orders messages for the shards.
	NewBridge NewBridgeFunc
	// Logger receives the hub's and the shards' logs. Default slog.Default().
	Logger *slog.Logger
	// Registerer receives the shard metrics. Default: a private registry.
	Registerer prometheus.Registerer
}

// Hub routes room commands to shards. Its methods may be called from any goroutine.
type Hub struct {
	// Static after construction.
	router Router
	shards []*shard.Shard
	bridge Bridge
	log    *slog.Logger

	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// New starts the shards and the bridge. Close stops them.
func New(cfg Config) (*Hub, error) {
	if cfg.Shards <= 0 {
		cfg.Shards = runtime.GOMAXPROCS(0)
	}
	if cfg.NewBridge == nil {
		cfg.NewBridge = NewMemoryBridge
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	h := &Hub{router: NewRouter(cfg.Shards), log: cfg.Logger}
	bridge, err := cfg.NewBridge(h)
	if err != nil {
		return nil, fmt.Errorf("start bridge: %w", err)
	}
	h.bridge = bridge
	remote, _ := bridge.(shard.Remote)
	metrics := shard.NewMetrics(cfg.Registerer)
	for i := range cfg.Shards {
		sc := cfg.Shard
		sc.ID, sc.Logger, sc.Metrics, sc.Remote = i, cfg.Logger, metrics, remote
		if sc.Inbox <= 0 {
			sc.Inbox = shard.InboxFor(cfg.Shards)
		}
		h.shards = append(h.shards, shard.New(sc))
	}

	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	for _, s := range h.shards {
		h.wg.Go(func() { s.Run(ctx) })
	}
	bridge.Start()
	h.log.Info("hub started", "shards", len(h.shards))
	return h, nil
}

// Close stops the bridge and the shards and waits for them. It is safe to call twice.
func (h *Hub) Close() error {
	h.closeOnce.Do(func() {
		if err := h.bridge.Close(); err != nil {
			h.closeErr = fmt.Errorf("close bridge: %w", err)
		}
		h.cancel()
		h.wg.Wait()
	})
	return h.closeErr
}

// Shards is the number of shards.
func (h *Hub) Shards() int { return len(h.shards) }

// Shard returns the shard that owns room; it makes the hub the Local of its bridge.
func (h *Hub) Shard(room string) *shard.Shard { return h.shards[h.router.Shard(room)] }

// Join adds a member to a room on every host; see Bridge.Join.
func (h *Hub) Join(ctx context.Context, req shard.Request) error { return h.bridge.Join(ctx, req) }

// Leave takes a member out of a room; see Bridge.Leave.
func (h *Hub) Leave(ctx context.Context, req shard.Request) error { return h.bridge.Leave(ctx, req) }

// Publish sends a message to a room through the bridge, which orders it.
func (h *Hub) Publish(ctx context.Context, req shard.Request) error {
	return h.bridge.Publish(ctx, req)
}

// Typing passes a typing state on to a room; see Bridge.Typing.
func (h *Hub) Typing(ctx context.Context, req shard.Request) error {
	return h.bridge.Typing(ctx, req)
}

// Users sends a member the user list of a room; see Bridge.Users.
func (h *Hub) Users(ctx context.Context, req shard.Request) error { return h.bridge.Users(ctx, req) }

// History sends a member older messages of a room from this host's copy of the room.
func (h *Hub) History(ctx context.Context, req shard.Request) error {
	return h.Shard(req.Room).History(ctx, req)
}

// Rooms returns up to limit rooms with members, the busiest first, on every host.
func (h *Hub) Rooms(ctx context.Context, limit int) ([]shard.RoomInfo, error) {
	return h.bridge.Rooms(ctx, limit)
}

// Ready returns nil while the hub can serve, and why not otherwise (the bridge is down).
func (h *Hub) Ready() error { return h.bridge.Ready() }

// LocalRooms returns up to limit rooms with members on this host, the busiest first.
func (h *Hub) LocalRooms(ctx context.Context, limit int) ([]shard.RoomInfo, error) {
	var all []shard.RoomInfo
	for _, s := range h.shards {
		rooms, err := s.Rooms(ctx, limit)
		if err != nil {
			return nil, fmt.Errorf("rooms of a shard: %w", err)
		}
		all = append(all, rooms...)
	}
	shard.SortRooms(all)
	if len(all) > limit {
		all = all[:limit]
	}
	return all, nil
}
