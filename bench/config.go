package bench

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"syscall"
	"time"
)

// Config configures a run. The zero value of each field means its default.
type Config struct {
	// URLs are the WebSocket endpoints to load, such as ws://host:3000/ws; clients are spread
	// over them round robin. Default: none, and Run starts an embedded server on a free
	// loopback port.
	URLs []string
	// Scenario names the workload in the report. Default DefaultScenario.
	Scenario string
	// Workload is what the clients do. Default: the workload of Scenario.
	Workload Workload
	// Procs is how many child processes share the users, each with its own open-files
	// budget; the parent merges their results. Default 0: the clients run in this process.
	Procs int
	// SourceIPs are local addresses for the client sockets, used round robin, so that more
	// connections than one address has ephemeral ports can reach one server (127.0.0.2 and
	// up are all loopback on Linux). Default: the system picks.
	SourceIPs []string
	// ConnectTimeout bounds one client's connect, upgrade, welcome and join. Default 10s.
	ConnectTimeout time.Duration
	// StallTimeout is how long sending or draining may go without any progress before the
	// run stops waiting and reports what is missing. Default 10s.
	StallTimeout time.Duration
	// DialConcurrency is how many connections may be opening at once. Default 128.
	DialConcurrency int
	// Server configures the embedded server (without URLs). Zero fields take the defaults
	// of `shardchat serve`.
	Server ServerConfig
	// StartServer starts the embedded server of a run without URLs. The bench is a client
	// and knows only the protocol: the command line gives it one that wires a server as
	// `shardchat serve` does. Required without URLs.
	StartServer ServerStarter
	// ChildCommand starts one child process for Procs: a command that runs RunChild on its
	// standard input and output, such as this executable with "bench --child". Required with
	// Procs.
	ChildCommand []string
	// Progress receives a progress bar while the run goes on, when it is a terminal.
	// Default: none.
	Progress io.Writer
	// Logger receives the run's logs. Default slog.Default().
	Logger *slog.Logger

	// slow makes the first slow.users clients stop reading for slow.pause once they have
	// received their first message: a test's slow consumer.
	slow slowReaders
}

// slowReaders is a test hook: clients that stall, to be dropped as slow consumers. control,
// when set, is applied to their sockets (a small receive buffer fills sooner).
type slowReaders struct {
	users   int
	pause   time.Duration
	control func(network, address string, c syscall.RawConn) error
}

// ServerStarter starts a server on a free loopback port and returns its WebSocket URL and a
// function that stops it and waits for it.
type ServerStarter func(cfg ServerConfig, log *slog.Logger) (url string, stop func() error, err error)

// ServerConfig configures the embedded server. The zero value of each field means the
// default of `shardchat serve`.
type ServerConfig struct {
	// Shards is the number of shard goroutines. Default GOMAXPROCS.
	Shards int
	// History is the messages kept per room. Default 100.
	History int
	// Rate and Burst bound each connection's messages a second. Default 10 and 20.
	Rate  float64
	Burst int
	// Queue is the objects queued for a connection before it is closed with 4008. Default 4096.
	Queue int
	// MaxConns is the open connections past which upgrades are refused. Default 100000.
	MaxConns int
}

// Defaults of Config.
const (
	defaultConnectTimeout  = 10 * time.Second
	defaultStallTimeout    = 10 * time.Second
	defaultDialConcurrency = 128
	// fdHeadroom is the open files a process needs besides its client sockets.
	fdHeadroom = 64
)

func (c Config) withDefaults() (Config, error) {
	if c.Scenario == "" {
		c.Scenario = DefaultScenario
	}
	if c.Workload == (Workload{}) {
		w, err := Scenario(c.Scenario)
		if err != nil {
			return c, err
		}
		c.Workload = w
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = defaultConnectTimeout
	}
	if c.StallTimeout <= 0 {
		c.StallTimeout = defaultStallTimeout
	}
	if c.DialConcurrency <= 0 {
		c.DialConcurrency = defaultDialConcurrency
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, c.validate()
}

func (c Config) validate() error {
	if err := c.Workload.validate(); err != nil {
		return err
	}
	if c.Procs < 0 || c.Procs > c.Workload.Users {
		return fmt.Errorf("procs %d: want 0 (clients in this process) to the number of users (%d)", c.Procs, c.Workload.Users)
	}
	if c.Procs > 0 && len(c.ChildCommand) == 0 {
		return fmt.Errorf("procs %d: no ChildCommand to start the child processes with", c.Procs)
	}
	for _, u := range c.URLs {
		if err := checkURL(u); err != nil {
			return err
		}
	}
	for _, ip := range c.SourceIPs {
		if net.ParseIP(ip) == nil {
			return fmt.Errorf("source IP %q: not an IP address", ip)
		}
	}
	return nil
}

func checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("url %q: %w", raw, err)
	}
	if (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
		return fmt.Errorf("url %q: want ws://host:port/ws or wss://host/ws", raw)
	}
	return nil
}

// checkOpenFiles refuses a run that would run out of file descriptors midway, saying how to
// split it. Every process needs a descriptor per socket it holds, and fdHeadroom besides: with
// procs 0 this one holds the clients' sockets (and, with the embedded server, the server's
// ends too); with procs, each child holds its share of the clients' sockets, and this one the
// embedded server's ends of all of them.
func checkOpenFiles(users, procs int, embedded bool, limit uint64) error {
	if limit == 0 {
		return nil // unknown
	}
	need := func(sockets int) uint64 { return uint64(sockets + fdHeadroom) }
	switch share := (users + max(procs, 1) - 1) / max(procs, 1); {
	case procs == 0 && embedded && need(2*users) > limit:
		return fmt.Errorf("%d users need about %d open files in one process, past its limit of %d: %s", users, need(2*users), limit,
			"use --procs (the embedded server then has this process to itself) or --url to a separate server")
	case procs == 0 && need(users) > limit:
		return fmt.Errorf("%d users need about %d open files in one process, past its limit of %d: %s", users, need(users), limit,
			"use --procs to spread the users over child processes")
	case procs > 0 && need(share) > limit:
		return fmt.Errorf("%d users need about %d open files in each of %d child processes, past their limit of %d: use more --procs", users, need(share), procs, limit)
	case procs > 0 && embedded && need(users) > limit:
		return fmt.Errorf("the embedded server's ends of %d connections need about %d open files in this process, past its limit of %d: raise the limit (ulimit -n) or load a separate server with --url", users, need(users), limit)
	}
	return nil
}
