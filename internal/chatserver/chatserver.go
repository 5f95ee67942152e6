// Package chatserver wires a shardchat server from its parts, once for the three places that
// run one: `shardchat serve`, the embedded server of `shardchat bench`, and the bench's tests
// (which cannot import the command).
package chatserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/shardchat/shardchat/hub"
	"github.com/shardchat/shardchat/transport"
)

// NewRegistry returns a metrics registry with the Go and process collectors besides
// shardchat's own: the bench reads memory, CPU and goroutines from them.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// New makes the hub of hubCfg and the transport of srvCfg in front of it, both registering
// their metrics in reg, which /metrics serves. It sets hubCfg.Registerer and srvCfg's Hub,
// Metrics and Gatherer. On an error nothing is left running.
func New(reg *prometheus.Registry, hubCfg hub.Config, srvCfg transport.Config) (*hub.Hub, *transport.Server, error) {
	hubCfg.Registerer = reg
	h, err := hub.New(hubCfg)
	if err != nil {
		return nil, nil, err
	}
	srvCfg.Hub, srvCfg.Metrics, srvCfg.Gatherer = h, transport.NewMetrics(reg), reg
	srv, err := transport.New(srvCfg)
	if err != nil {
		_ = h.Close()
		return nil, nil, err
	}
	return h, srv, nil
}

// StartLoopback serves srv on a free loopback port and returns its WebSocket URL, and stop,
// which shuts the server down (draining for up to drainTimeout), closes the hub, and waits for
// both. stop must be called once. On an error both are already closed.
func StartLoopback(h *hub.Hub, srv *transport.Server, drainTimeout time.Duration) (url string, stop func() error, err error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	listening := make(chan net.Addr, 1)
	go func() {
		done <- srv.ListenAndServe(ctx, "127.0.0.1:0", drainTimeout, func(addr net.Addr) { listening <- addr })
	}()
	select {
	case addr := <-listening:
		return "ws://" + addr.String() + "/ws", func() error {
			cancel()
			return errors.Join(<-done, h.Close())
		}, nil
	case err := <-done:
		cancel()
		return "", nil, fmt.Errorf("serve on loopback: %w", errors.Join(err, srv.Shutdown(context.Background()), h.Close()))
	}
}
