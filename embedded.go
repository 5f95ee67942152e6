package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/shardchat/shardchat/bench"
	"github.com/shardchat/shardchat/hub"
	"github.com/shardchat/shardchat/shard"
	"github.com/shardchat/shardchat/transport"
)

// The server of `shardchat bench` without --url: the bench knows only the protocol, and the
// command line hands it this, which starts a server in the bench's process, wired as
// `shardchat serve` wires it (the Go and process collectors included, so its /metrics carries
// the figures the report reads), less what a bench has no use for: the web UI,
// authentication, the Redis bridge, and the per-address connection caps (every client of the
// bench comes from loopback).

// embedded is a shardchat server on a free loopback port. stop must be called once.
type embedded struct {
	url    string
	hub    *hub.Hub
	cancel context.CancelFunc
	done   chan error
}

// benchDrainTimeout bounds the embedded server's shutdown; the clients are gone by then.
const benchDrainTimeout = 5 * time.Second

// startBenchServer is the bench.ServerStarter of the command line.
func startBenchServer(cfg bench.ServerConfig, log *slog.Logger) (string, func() error, error) {
	e, err := startEmbedded(cfg, log)
	if err != nil {
		return "", nil, err
	}
	return e.url, e.stop, nil
}

func startEmbedded(cfg bench.ServerConfig, log *slog.Logger) (*embedded, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	h, err := hub.New(hub.Config{
		Shards:     cfg.Shards,
		Shard:      shard.Config{History: cfg.History},
		Logger:     log,
		Registerer: reg,
	})
	if err != nil {
		return nil, fmt.Errorf("embedded server: %w", err)
	}
	srv, err := transport.New(transport.Config{
		Hub:      h,
		Logger:   log,
		Metrics:  transport.NewMetrics(reg),
		Gatherer: reg,
		MaxConns: cfg.MaxConns,
		Rate:     cfg.Rate,
		Burst:    cfg.Burst,
		Queue:    cfg.Queue,
	})
	if err != nil {
		_ = h.Close()
		return nil, fmt.Errorf("embedded server: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &embedded{hub: h, cancel: cancel, done: make(chan error, 1)}
	listening := make(chan net.Addr, 1)
	go func() {
		e.done <- srv.ListenAndServe(ctx, "127.0.0.1:0", benchDrainTimeout, func(addr net.Addr) { listening <- addr })
	}()
	select {
	case addr := <-listening:
		e.url = "ws://" + addr.String() + "/ws"
		return e, nil
	case err := <-e.done:
		cancel()
		_ = h.Close()
		return nil, fmt.Errorf("embedded server: %w", err)
	}
}

// stop shuts the server down and waits for it.
func (e *embedded) stop() error {
	e.cancel()
	return errors.Join(<-e.done, e.hub.Close())
}
