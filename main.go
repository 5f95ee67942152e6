// Command shardchat is a real-time chat server: rooms, user names, messages, typing
// indicators and online lists over WebSocket, on every core of a host.
//
// This file is the command line: it parses flags (kong) and wires them into the hub, the
// shards and the transport. See README.md for the flags and docs/protocol.md for the protocol.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path"
	"runtime"
	"runtime/debug"
	runtimepprof "runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kong"

	"github.com/shardchat/shardchat/bench"
	"github.com/shardchat/shardchat/hub"
	"github.com/shardchat/shardchat/internal/chatserver"
	"github.com/shardchat/shardchat/shard"
	"github.com/shardchat/shardchat/static"
	"github.com/shardchat/shardchat/transport"
	"github.com/shardchat/shardchat/transport/auth"
)

// Set with -ldflags "-X main.version=... -X main.commit=..." by make build.
var (
	version = ""
	commit  = ""
)

type cli struct {
	Serve   serveCmd   `cmd:"" default:"withargs" help:"Serve chat over HTTP and WebSocket (the default command)."`
	Bench   benchCmd   `cmd:"" help:"Load a server with simulated users and report what it carried and what it cost (without --url: a server of its own)."`
	Token   tokenCmd   `cmd:"" help:"Print a signed (HS256) token for a user, for operators and tests."`
	Version versionCmd `cmd:"" help:"Print the version, commit and Go version."`

	Healthcheck healthcheckCmd `cmd:"" help:"Exit 0 when the server answers --url with 200, 1 otherwise (for Docker's HEALTHCHECK, without curl)."`
}

type serveCmd struct {
	Addr               string        `default:":3000" env:"SHARDCHAT_ADDR" help:"Address to listen on, host:port."`
	Port               int           `env:"PORT" help:"Port to listen on; replaces the port of --addr (PORT=8080 means :8080)."`
	Shards             int           `default:"${gomaxprocs}" env:"SHARDCHAT_SHARDS" help:"Shard goroutines that own the rooms (default: GOMAXPROCS)."`
	History            int           `default:"100" env:"SHARDCHAT_HISTORY" help:"Messages kept per room for history and recovery."`
	MaxConns           int           `default:"100000" env:"SHARDCHAT_MAX_CONNS" help:"Open connections past which new upgrades get HTTP 503."`
	MaxRooms           int           `default:"16" env:"SHARDCHAT_MAX_ROOMS" help:"Rooms one connection may be in at once."`
	AllowedOrigins     []string      `env:"SHARDCHAT_ALLOWED_ORIGINS" help:"Cross-origin pages allowed to connect: host patterns such as chat.example.com or *.example.com, comma-separated (same-origin pages and non-browser clients are always allowed)."`
	Rate               float64       `default:"10" env:"SHARDCHAT_RATE" help:"Chat messages a second per connection."`
	Burst              int           `default:"20" env:"SHARDCHAT_BURST" help:"Chat messages a connection may send at once before --rate applies."`
	Queue              int           `default:"4096" env:"SHARDCHAT_QUEUE" help:"Objects queued for a connection before it is closed as a slow consumer (4008)."`
	ShutdownTimeout    time.Duration `default:"10s" env:"SHARDCHAT_SHUTDOWN_TIMEOUT" help:"How long SIGTERM waits for sessions to drain before cutting them."`
	RedisURL           string        `env:"REDIS_URL" help:"Share rooms with other hosts through Redis: redis://[user:password@]host:6379[/db], rediss:// for TLS, several seed addresses (redis://h1:7000,h2:7001) for Redis Cluster. Empty: this host alone."`
	HistoryTTL         time.Duration `default:"24h" env:"SHARDCHAT_HISTORY_TTL" help:"With --redis-url: how long a room's history outlives its last message and last member."`
	HostTimeout        time.Duration `default:"4s" env:"SHARDCHAT_HOST_TIMEOUT" help:"With --redis-url: how long a host that stopped heartbeating counts as alive; its users leave every room within this plus a second."`
	RedisPrefix        string        `default:"shardchat:" env:"SHARDCHAT_REDIS_PREFIX" help:"With --redis-url: the prefix of every Redis key and channel, to share one Redis between deployments."`
	Node               string        `env:"SHARDCHAT_NODE" help:"This host's name in welcome and among the hosts sharing Redis (default: the host name and a random suffix, new at every start)."`
	AuthHMACSecret     string        `name:"auth-hmac-secret" env:"SHARDCHAT_AUTH_HMAC_SECRET" help:"Require tokens signed with this HS256 secret (at least 32 bytes). Prefer the environment or --auth-hmac-secret-file: a flag shows in the process list."`
	AuthHMACSecretFile string        `name:"auth-hmac-secret-file" env:"SHARDCHAT_AUTH_HMAC_SECRET_FILE" type:"existingfile" help:"Require tokens signed with the HS256 secret in this file."`
	AuthPublicKey      string        `name:"auth-public-key" env:"SHARDCHAT_AUTH_PUBLIC_KEY" type:"existingfile" help:"Require tokens signed with the private half of this PEM public key: RSA (RS256) or ECDSA P-256 (ES256)."`
	AuthLeeway         time.Duration `name:"auth-leeway" default:"30s" env:"SHARDCHAT_AUTH_LEEWAY" help:"Clock skew allowed on a token's exp and nbf."`
	AuthAudience       string        `name:"auth-audience" env:"SHARDCHAT_AUTH_AUDIENCE" help:"Require this name among a token's aud (for a signing key shared with other services)."`
	AuthIssuer         string        `name:"auth-issuer" env:"SHARDCHAT_AUTH_ISSUER" help:"Require this token iss."`
	MaxConnsPerIP      int           `name:"max-conns-per-ip" default:"500" env:"SHARDCHAT_MAX_CONNS_PER_IP" help:"Open connections one client address (an IPv6 /64) may hold; past it upgrades get HTTP 429. 0: no cap (for a bench from one address)."`
	ConnectRatePerIP   float64       `name:"connect-rate-per-ip" default:"20" env:"SHARDCHAT_CONNECT_RATE_PER_IP" help:"New connections a second one client address may open, after a burst of --connect-burst-per-ip; past it upgrades get HTTP 429. 0: no bound."`
	ConnectBurstPerIP  int           `name:"connect-burst-per-ip" default:"40" env:"SHARDCHAT_CONNECT_BURST_PER_IP" help:"New connections one client address may open at once."`
	TrustedProxies     []string      `name:"trusted-proxies" env:"SHARDCHAT_TRUSTED_PROXIES" help:"CIDRs of the proxies in front of this server (such as 127.0.0.1/32 for nginx on the same host): X-Forwarded-For is believed only from them, for limits and logs."`
	DebugAddr          string        `name:"debug-addr" env:"SHARDCHAT_DEBUG_ADDR" help:"Serve Go's pprof profiles on this address, such as 127.0.0.1:6060 (off when empty; never expose it publicly)."`
	LogLevel           string        `default:"info" enum:"debug,info,warn,error" env:"SHARDCHAT_LOG_LEVEL" help:"Log level: debug, info, warn or error."`
	LogFormat          string        `default:"text" enum:"text,json" env:"SHARDCHAT_LOG_FORMAT" help:"Log format: text or json."`
}

// Validate refuses flag values that cannot work, saying what to fix.
func (c *serveCmd) Validate() error {
	if c.DebugAddr != "" {
		if _, _, err := net.SplitHostPort(c.DebugAddr); err != nil {
			return fmt.Errorf("--debug-addr %q: want host:port, such as 127.0.0.1:6060", c.DebugAddr)
		}
	}
	if c.RedisURL != "" {
		if !strings.HasPrefix(c.RedisURL, "redis://") && !strings.HasPrefix(c.RedisURL, "rediss://") {
			return fmt.Errorf("--redis-url (REDIS_URL): want redis://host:6379 or rediss://host:6380, got a URL that starts otherwise")
		}
		if c.HistoryTTL < time.Minute {
			return fmt.Errorf("--history-ttl %s: must be at least 1m", c.HistoryTTL)
		}
		if c.HostTimeout < time.Second || c.HostTimeout > 10*time.Minute {
			return fmt.Errorf("--host-timeout %s: must be from 1s to 10m", c.HostTimeout)
		}
	}
	host, port, err := net.SplitHostPort(c.Addr)
	if err != nil {
		return fmt.Errorf("--addr %q: want host:port, such as :3000 or 127.0.0.1:3000", c.Addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("--addr %q: the port must be a number from 0 to 65535", c.Addr)
	}
	if c.Port < 0 || c.Port > 65535 {
		return fmt.Errorf("--port (PORT) %d: must be from 0 to 65535", c.Port)
	}
	if c.Port > 0 {
		c.Addr = net.JoinHostPort(host, strconv.Itoa(c.Port))
	}
	checks := []struct {
		ok  bool
		msg string
	}{
		{c.Shards >= 1 && c.Shards <= 4096, fmt.Sprintf("--shards %d: must be from 1 to 4096", c.Shards)},
		{c.History >= 1 && c.History <= 100000, fmt.Sprintf("--history %d: must be from 1 to 100000 messages", c.History)},
		{c.MaxConns >= 1, fmt.Sprintf("--max-conns %d: must be at least 1", c.MaxConns)},
		{c.MaxRooms >= 1 && c.MaxRooms <= 1000, fmt.Sprintf("--max-rooms %d: must be from 1 to 1000", c.MaxRooms)},
		{c.Rate > 0 && c.Rate <= 1e6, fmt.Sprintf("--rate %g: must be above 0 and at most 1000000 messages a second", c.Rate)},
		{c.Burst >= 1 && c.Burst <= 1e6, fmt.Sprintf("--burst %d: must be from 1 to 1000000", c.Burst)},
		{c.Queue >= 16 && c.Queue <= 1<<20, fmt.Sprintf("--queue %d: must be from 16 to 1048576 objects", c.Queue)},
		{c.ShutdownTimeout > 0, fmt.Sprintf("--shutdown-timeout %s: must be above 0, such as 10s", c.ShutdownTimeout)},
	}
	for _, check := range checks {
		if !check.ok {
			return errors.New(check.msg)
		}
	}
	if c.MaxConnsPerIP < 0 || c.ConnectRatePerIP < 0 || c.ConnectBurstPerIP < 1 {
		return errors.New("--max-conns-per-ip and --connect-rate-per-ip must be 0 (no limit) or more, --connect-burst-per-ip at least 1")
	}
	secrets := 0
	for _, s := range []string{c.AuthHMACSecret, c.AuthHMACSecretFile, c.AuthPublicKey} {
		if s != "" {
			secrets++
		}
	}
	if secrets > 1 {
		return errors.New("give one of --auth-hmac-secret, --auth-hmac-secret-file and --auth-public-key")
	}
	for _, p := range c.AllowedOrigins {
		if _, err := path.Match(strings.ToLower(p), ""); err != nil || p == "" {
			return fmt.Errorf("--allowed-origins %q: not a valid host pattern (use forms such as chat.example.com or *.example.com)", p)
		}
	}
	return nil
}

func (c *serveCmd) Run() error {
	log := newLogger(c.LogLevel, c.LogFormat)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	reg := chatserver.NewRegistry()
	node := c.Node
	if node == "" {
		node = transport.DefaultNode()
	}
	verifier, err := c.verifier()
	if err != nil {
		return err
	}
	if verifier != nil {
		log.Info("authentication on", "algorithm", verifier.Algorithm())
	}
	if c.DebugAddr != "" {
		stopDebug, err := serveDebug(c.DebugAddr, log)
		if err != nil {
			return err
		}
		defer stopDebug()
	}
	hubCfg := hub.Config{
		Shards: c.Shards,
		Shard:  shard.Config{History: c.History, Batch: shard.BatchFor(c.Queue)},
		Logger: log,
	}
	if c.RedisURL != "" {
		hubCfg.NewBridge = hub.NewRedisBridge(hub.RedisConfig{
			URL:        c.RedisURL,
			Node:       node,
			History:    c.History,
			HistoryTTL: c.HistoryTTL,
			NodeTTL:    c.HostTimeout,
			KeyPrefix:  c.RedisPrefix,
			Logger:     log,
			Registerer: reg,
		})
	}
	h, srv, err := chatserver.New(reg, hubCfg, transport.Config{
		Node:           node,
		Logger:         log,
		Static:         static.FS(),
		AllowedOrigins: c.AllowedOrigins,
		MaxConns:       c.MaxConns,
		MaxRooms:       c.MaxRooms,
		Rate:           c.Rate,
		Burst:          c.Burst,
		Queue:          c.Queue,
		Auth:           verifier,
		MaxConnsPerIP:  c.MaxConnsPerIP,
		TrustedProxies: c.TrustedProxies,

		ConnectRatePerIP:  c.ConnectRatePerIP,
		ConnectBurstPerIP: c.ConnectBurstPerIP,
	})
	if err != nil {
		return err
	}
	defer h.Close()
	err = srv.ListenAndServe(ctx, c.Addr, c.ShutdownTimeout, func(addr net.Addr) {
		log.Info("shardchat listening", "addr", addr.String(), "version", versionString(), "shards", h.Shards())
	})
	if err != nil && ctx.Err() == nil {
		return err // could not listen or serve
	}
	if err != nil {
		log.Warn("shutdown was not clean", "err", err)
	}
	if err := h.Close(); err != nil {
		log.Warn("hub close", "err", err)
	}
	log.Info("shardchat stopped")
	return nil
}

// verifier builds the token verifier of the --auth flags, or nil when authentication is off.
func (c *serveCmd) verifier() (*auth.Verifier, error) {
	cfg := auth.Config{Leeway: c.AuthLeeway, Audience: c.AuthAudience, Issuer: c.AuthIssuer}
	switch {
	case c.AuthHMACSecret != "":
		cfg.HMACSecret = []byte(c.AuthHMACSecret)
	case c.AuthHMACSecretFile != "":
		secret, err := readSecret(c.AuthHMACSecretFile)
		if err != nil {
			return nil, err
		}
		cfg.HMACSecret = secret
	case c.AuthPublicKey != "":
		pem, err := os.ReadFile(c.AuthPublicKey)
		if err != nil {
			return nil, fmt.Errorf("--auth-public-key: %w", err)
		}
		cfg.PublicKeyPEM = pem
	default:
		return nil, nil
	}
	v, err := auth.NewVerifier(cfg)
	if err != nil {
		return nil, fmt.Errorf("authentication: %w", err)
	}
	return v, nil
}

// readSecret reads a secret file, without the line break an editor leaves at its end.
func readSecret(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read the secret file: %w", err)
	}
	return []byte(strings.TrimRight(string(b), "\r\n")), nil
}

// tokenCmd prints an HS256 token, for operators and tests.
type tokenCmd struct {
	SecretFile string        `name:"secret-file" type:"existingfile" help:"The HS256 secret, in a file (or set SHARDCHAT_AUTH_HMAC_SECRET)."`
	Secret     string        `name:"secret" env:"SHARDCHAT_AUTH_HMAC_SECRET" hidden:"" help:"The HS256 secret."`
	Sub        string        `required:"" help:"The user name the token is for."`
	Rooms      []string      `help:"Rooms the user may join: names or patterns with *, comma-separated (default: any room)."`
	TTL        time.Duration `name:"ttl" default:"1h" help:"How long the token is valid."`
	Audience   string        `name:"aud" help:"The token's aud, for servers run with --auth-audience."`
	Issuer     string        `name:"iss" help:"The token's iss, for servers run with --auth-issuer."`
}

func (c *tokenCmd) Run() error {
	secret := []byte(c.Secret)
	if c.SecretFile != "" {
		var err error
		if secret, err = readSecret(c.SecretFile); err != nil {
			return err
		}
	}
	if len(secret) == 0 {
		return errors.New("no secret: give --secret-file or set SHARDCHAT_AUTH_HMAC_SECRET")
	}
	tok, err := auth.SignHS256Token(secret, auth.Token{Sub: c.Sub, Rooms: c.Rooms, TTL: c.TTL, Audience: c.Audience, Issuer: c.Issuer}, time.Now())
	if err != nil {
		return err
	}
	fmt.Println(tok)
	return nil
}

// serveDebug serves net/http/pprof on addr, on a mux of its own (not the public one), until
// the returned function is called.
func serveDebug(addr string, log *slog.Logger) (func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--debug-addr: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	log.Info("pprof listening", "addr", ln.Addr().String())
	return func() {
		_ = srv.Close()
		<-done
	}, nil
}

func newLogger(level, format string) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(level)) // kong's enum already checked it
	opts := &slog.HandlerOptions{Level: lvl}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

type benchCmd struct {
	URL            []string       `name:"url" placeholder:"ws://HOST:PORT/ws" help:"Server to load; repeat it to spread the clients round robin over several. Without it, a server is started in this process on a free loopback port."`
	Scenario       string         `short:"s" default:"seed" enum:"${scenarios}" help:"Named workload: seed (500 users, 10 rooms, 10 messages each at 1/s), burst (the same as fast as the server takes them), fanout (1000 users in 1 room, 5 messages each, as fast as allowed), connections (5000 idle users ramped at 1000/s, then 1 message each), soak (500 users chatting at 1/s for --duration, default 1m). The flags below change it."`
	Users          *int           `help:"Users, one connection each (default: the scenario's)."`
	Rooms          *int           `help:"Rooms the users are spread over evenly (default: the scenario's)."`
	Messages       *int           `help:"Messages each user sends (default: the scenario's)."`
	Rate           *float64       `help:"Messages a second per user; 0 sends as fast as the server takes them (its advertised burst, then its rate) (default: the scenario's)."`
	Ramp           *float64       `help:"Connections opened a second; 0 opens them as fast as they go, up to 128 at once (default: the scenario's)."`
	Duration       *time.Duration `help:"Send for this long instead of --messages (default: the scenario's)."`
	TextSize       *int           `help:"Bytes of text per message (default 64)."`
	Procs          *int           `help:"Child processes that share the users, each with its own open-files limit (default: 1 with the embedded server, so the server's figures are its own; 0, in this process, with --url)."`
	SourceIPs      []string       `name:"source-ips" placeholder:"127.0.0.2,127.0.0.3" help:"Local addresses for client sockets, round robin, to go past the ephemeral ports of one address."`
	ConnectTimeout time.Duration  `default:"10s" help:"Bound on one client's connect, welcome and join."`
	StallTimeout   time.Duration  `default:"10s" help:"How long sending or delivery may go without progress before the run stops waiting and reports what is missing."`
	Runs           int            `default:"1" help:"Run the workload this many times and add a table of the medians of the main figures (with --json: one report per line)."`
	CPUProfile     string         `name:"cpu-profile" type:"path" help:"Write a CPU profile of this process (the clients, with --url) to this file, for go tool pprof."`
	JSON           bool           `name:"json" help:"Print the report as one JSON object instead of a table."`
	LogLevel       string         `default:"warn" enum:"debug,info,warn,error" help:"Log level: debug, info, warn or error."`
	LogFormat      string         `default:"text" enum:"text,json" help:"Log format: text or json."`
	Child          bool           `hidden:"" help:"Run as a --procs child, driven over standard input and output."`
}

func (c *benchCmd) Run() error {
	log := newLogger(c.LogLevel, c.LogFormat)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	defer context.AfterFunc(ctx, stop)() // after the first Ctrl-C, a second one kills at once
	if c.Child {
		return bench.RunChild(ctx, os.Stdin, os.Stdout, log)
	}
	workload, err := bench.Scenario(c.Scenario)
	if err != nil {
		return err
	}
	workload = workload.With(bench.Overrides{Users: c.Users, Rooms: c.Rooms, Messages: c.Messages, TextSize: c.TextSize,
		Rate: c.Rate, Ramp: c.Ramp, Duration: c.Duration})
	procs := 0
	if c.Procs != nil {
		procs = *c.Procs
	} else if len(c.URL) == 0 {
		procs = 1
	}
	var child []string
	if procs > 0 {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("find this executable to start --procs children: %w", err)
		}
		child = []string{exe, "bench", "--child", "--log-level", c.LogLevel, "--log-format", c.LogFormat}
	}
	if c.Runs < 1 || c.Runs > 100 {
		return fmt.Errorf("--runs %d: must be from 1 to 100", c.Runs)
	}
	if c.CPUProfile != "" {
		f, err := os.Create(c.CPUProfile)
		if err != nil {
			return fmt.Errorf("--cpu-profile: %w", err)
		}
		defer f.Close()
		if err := runtimepprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("--cpu-profile: %w", err)
		}
		defer runtimepprof.StopCPUProfile()
	}
	var reports []*bench.Report
	for run := range c.Runs {
		report, err := bench.Run(ctx, bench.Config{
			URLs:           c.URL,
			Scenario:       c.Scenario,
			Workload:       workload,
			Procs:          procs,
			SourceIPs:      c.SourceIPs,
			ConnectTimeout: c.ConnectTimeout,
			StallTimeout:   c.StallTimeout,
			ChildCommand:   child,
			Progress:       os.Stderr,
			Logger:         log,
			StartServer:    startBenchServer,
		})
		if err != nil {
			return err
		}
		if c.JSON {
			err = json.NewEncoder(os.Stdout).Encode(report)
		} else {
			if c.Runs > 1 {
				fmt.Printf("Run %d of %d\n\n", run+1, c.Runs)
			}
			err = report.WriteTable(os.Stdout)
		}
		if err != nil {
			return fmt.Errorf("write the report: %w", err)
		}
		if err := report.Err(); err != nil || ctx.Err() != nil {
			return err
		}
		reports = append(reports, report)
	}
	if c.Runs > 1 && !c.JSON {
		fmt.Println()
		if err := bench.WriteMedians(os.Stdout, reports); err != nil {
			return fmt.Errorf("write the medians: %w", err)
		}
	}
	return nil
}

type versionCmd struct{}

func (versionCmd) Run() error {
	fmt.Println("shardchat", versionString())
	return nil
}

// healthcheckCmd asks a server whether it is ready. Docker's HEALTHCHECK runs it in images
// that have no shell or curl; kong turns a returned error into one line on stderr and exit 1.
type healthcheckCmd struct {
	URL     string        `default:"http://127.0.0.1:3000/readyz" help:"URL that must answer 200."`
	Timeout time.Duration `default:"3s" help:"Bound on the whole request."`
}

func (c *healthcheckCmd) Run() error {
	client := &http.Client{Timeout: c.Timeout}
	resp, err := client.Get(c.URL)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		// The body says why (such as "draining"); a line of it is enough.
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
		reason, _, _ := strings.Cut(strings.TrimSpace(string(body)), "\n")
		return fmt.Errorf("healthcheck: %s answered %s: %s", c.URL, resp.Status, reason)
	}
	return nil
}

// versionString is "version (commit commit, goX)", from -ldflags or else from the build info.
func versionString() string {
	v, c := version, commit
	if info, ok := debug.ReadBuildInfo(); ok {
		if v == "" && info.Main.Version != "" {
			v = info.Main.Version
		}
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" && c == "" {
				c = s.Value
			}
		}
	}
	if v == "" {
		v = "(devel)"
	}
	if c == "" {
		c = "unknown"
	}
	return fmt.Sprintf("%s (commit %s, %s)", v, c, runtime.Version())
}

func main() {
	var c cli
	ctx := kong.Parse(&c,
		kong.Name("shardchat"),
		kong.Description("A real-time chat server: rooms, messages, typing and presence over WebSocket, on every core."),
		kongVars(),
	)
	ctx.FatalIfErrorf(ctx.Run())
}

// kongVars are the values that the flags' tags name as ${...}, worked out where they live.
func kongVars() kong.Vars {
	return kong.Vars{
		"gomaxprocs": strconv.Itoa(runtime.GOMAXPROCS(0)),
		"scenarios":  strings.Join(bench.ScenarioNames(), ","),
	}
}
