package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/shardchat/shardchat/hub"
	"github.com/shardchat/shardchat/shard"
	"github.com/shardchat/shardchat/transport"
)

// This file is the one place where the bench imports the server: for a run without --url it
// starts one in this process, wired as `shardchat serve` wires it (the Go and process
// collectors included, so its /metrics carries the figures the report reads), less what a
// bench has no use for: the web UI, authentication, the Redis bridge, and the per-address
// connection caps (every client of the bench comes from loopback). The clients themselves
// speak only the protocol.

// embedded is a shardchat server on a free loopback port. stop must be called once.
type embedded struct {
	url    string
	hub    *hub.Hub
	cancel context.CancelFunc
	done   chan error
}

// drainTimeout bounds the embedded server's shutdown; the clients are gone by then.
const drainTimeout = 5 * time.Second

func startEmbedded(cfg ServerConfig, log *slog.Logger) (*embedded, error) {
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
		e.done <- srv.ListenAndServe(ctx, "127.0.0.1:0", drainTimeout, func(addr net.Addr) { listening <- addr })
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
