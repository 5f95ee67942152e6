package bench

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/shardchat/shardchat/hub"
	"github.com/shardchat/shardchat/shard"
	"github.com/shardchat/shardchat/transport"
)

// testServer is the ServerStarter of the tests: a real server in the test's process, wired as
// the command line wires the bench's own (embedded.go at the root).
func testServer(cfg ServerConfig, log *slog.Logger) (string, func() error, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	h, err := hub.New(hub.Config{Shards: cfg.Shards, Shard: shard.Config{History: cfg.History}, Logger: log, Registerer: reg})
	if err != nil {
		return "", nil, err
	}
	srv, err := transport.New(transport.Config{
		Hub: h, Logger: log, Metrics: transport.NewMetrics(reg), Gatherer: reg,
		MaxConns: cfg.MaxConns, Rate: cfg.Rate, Burst: cfg.Burst, Queue: cfg.Queue,
	})
	if err != nil {
		_ = h.Close()
		return "", nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	listening := make(chan net.Addr, 1)
	go func() {
		done <- srv.ListenAndServe(ctx, "127.0.0.1:0", 5*time.Second, func(a net.Addr) { listening <- a })
	}()
	select {
	case addr := <-listening:
		return "ws://" + addr.String() + "/ws", func() error {
			cancel()
			return errors.Join(<-done, h.Close())
		}, nil
	case err := <-done:
		cancel()
		_ = h.Close()
		return "", nil, err
	}
}
