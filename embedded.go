package main

import (
	"log/slog"
	"time"

	"github.com/shardchat/shardchat/bench"
	"github.com/shardchat/shardchat/hub"
	"github.com/shardchat/shardchat/internal/chatserver"
	"github.com/shardchat/shardchat/shard"
	"github.com/shardchat/shardchat/transport"
)

// The server of `shardchat bench` without --url: the bench knows only the protocol, and the
// command line hands it this, which starts a server in the bench's process, wired as
// `shardchat serve` wires it (chatserver, with the Go and process collectors, so its /metrics
// carries the figures the report reads), less what a bench has no use for: the web UI,
// authentication, the Redis bridge, and the per-address connection caps (every client of the
// bench comes from loopback).

// benchDrainTimeout bounds the embedded server's shutdown; the clients are gone by then.
const benchDrainTimeout = 5 * time.Second

// startBenchServer is the bench.ServerStarter of the command line.
func startBenchServer(cfg bench.ServerConfig, log *slog.Logger) (string, func() error, error) {
	h, srv, err := chatserver.New(chatserver.NewRegistry(),
		hub.Config{Shards: cfg.Shards, Shard: shard.Config{History: cfg.History, Batch: shard.BatchFor(cfg.Queue)}, Logger: log},
		transport.Config{Logger: log, MaxConns: cfg.MaxConns, Rate: cfg.Rate, Burst: cfg.Burst, Queue: cfg.Queue})
	if err != nil {
		return "", nil, err // the bench says it is the embedded server's
	}
	url, stop, err := chatserver.StartLoopback(h, srv, benchDrainTimeout)
	if err != nil {
		return "", nil, err
	}
	return url, stop, nil
}
