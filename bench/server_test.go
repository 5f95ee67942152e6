package bench

import (
	"log/slog"
	"time"

	"github.com/shardchat/shardchat/hub"
	"github.com/shardchat/shardchat/internal/chatserver"
	"github.com/shardchat/shardchat/shard"
	"github.com/shardchat/shardchat/transport"
)

// testServer is the ServerStarter of the tests: a real server in the test's process, wired as
// the command line wires the bench's own (startBenchServer in embedded.go at the root, which
// this package cannot import).
func testServer(cfg ServerConfig, log *slog.Logger) (string, func() error, error) {
	h, srv, err := chatserver.New(chatserver.NewRegistry(),
		hub.Config{Shards: cfg.Shards, Shard: shard.Config{History: cfg.History}, Logger: log},
		transport.Config{Logger: log, MaxConns: cfg.MaxConns, Rate: cfg.Rate, Burst: cfg.Burst, Queue: cfg.Queue})
	if err != nil {
		return "", nil, err
	}
	return chatserver.StartLoopback(h, srv, 5*time.Second)
}
