// Package transport is shardchat's HTTP side: the routes, one WebSocket session per client
// (a reader and a writer), and the protocol codec in transport/wire.
package transport

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/shardchat/shardchat/hub"
	"github.com/shardchat/shardchat/transport/auth"
	"github.com/shardchat/shardchat/transport/sio"
	"github.com/shardchat/shardchat/transport/wire"
)

// Config configures a Server. The zero value of each field means its default, except Hub.
type Config struct {
	// Hub serves the rooms. Required.
	Hub *hub.Hub
	// Logger receives the transport's logs. Default slog.Default().
	Logger *slog.Logger
	// Metrics receives the transport's metrics. Default: collectors on a private registry.
	Metrics *Metrics
	// Gatherer is served on /metrics. Default: none, and /metrics answers 404.
	Gatherer prometheus.Gatherer
	// Static is the web UI served on /. Default: none, and / answers 404.
	Static fs.FS
	// Node names this host in welcome. Default: the host name and a random suffix.
	Node string
	// AllowedOrigins are host patterns (path.Match syntax, "*" for any) of the cross-origin
	// pages that may connect. Same-origin pages and clients without Origin always may.
	AllowedOrigins []string
	// MaxConns is how many sessions may be open at once; past it upgrades get 503. Default 100000.
	MaxConns int
	// Rate and Burst bound a connection's chat messages a second. Default 10 and 20.
	Rate  float64
	Burst int
	// RequestRate and RequestBurst bound all of a connection's frames. Default 5×Rate (at
	// least 50) and 5×Burst (at least 100).
	RequestRate  float64
	RequestBurst int
	// AbuseRate and AbuseBurst bound a connection's refused requests; past them it is
	// closed with 1008. Default 1 and 20.
	AbuseRate  float64
	AbuseBurst int
	// Queue is how many objects may wait for a connection's writer before it is closed as a
	// slow consumer (4008). Default 4096.
	Queue int
	// MaxRooms is how many rooms one connection may be in. Default 16.
	MaxRooms int
	// FrameCap is the largest frame the writer builds by joining objects. Default 64 KiB.
	FrameCap int
	// WriteTimeout bounds every write to a client. Default 10s.
	WriteTimeout time.Duration
	// PingInterval is how long a connection may be silent before it is pinged. Default 25s.
	PingInterval time.Duration
	// PingTimeout is how long a ping waits for its pong before the connection is dropped. Default 15s.
	PingTimeout time.Duration

	// Auth, when set, requires every connection to present a token it verifies; see
	// docs/security.md. Default nil: anyone may connect.
	Auth *auth.Verifier
	// MaxConnsPerIP caps the open connections of one client address (an IPv6 /64). Past it,
	// upgrades get 429. Default 0: no cap. (The command line's default is 500.)
	MaxConnsPerIP int
	// ConnectRatePerIP and ConnectBurstPerIP bound the new connections a second of one client
	// address, with a burst; past them, upgrades get 429. Default 0: no bound.
	ConnectRatePerIP  float64
	ConnectBurstPerIP int
	// TrustedProxies are the CIDRs of proxies whose X-Forwarded-For is believed. Default none:
	// the client address is the TCP peer's.
	TrustedProxies []string
}

func (c Config) withDefaults() (Config, error) {
	if c.Hub == nil {
		return c, errors.New("transport: Config.Hub is required")
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Metrics == nil {
		c.Metrics = NewMetrics(prometheus.NewRegistry())
	}
	if c.Node == "" {
		c.Node = DefaultNode()
	}
	for _, p := range c.AllowedOrigins {
		if _, err := path.Match(strings.ToLower(p), ""); err != nil {
			return c, fmt.Errorf("transport: allowed origin pattern %q: %w", p, err)
		}
	}
	if c.ConnectRatePerIP > 0 && c.ConnectBurstPerIP <= 0 {
		c.ConnectBurstPerIP = max(1, int(2*c.ConnectRatePerIP))
	}
	setDefault(&c.MaxConns, 100000)
	setDefault(&c.Rate, 10)
	setDefault(&c.Burst, 20)
	setDefault(&c.RequestRate, max(5*c.Rate, 50))
	setDefault(&c.RequestBurst, max(5*c.Burst, 100))
	setDefault(&c.AbuseRate, 1)
	setDefault(&c.AbuseBurst, 20)
	setDefault(&c.Queue, 4096)
	setDefault(&c.MaxRooms, 16)
	setDefault(&c.FrameCap, 64<<10)
	setDefault(&c.WriteTimeout, 10*time.Second)
	setDefault(&c.PingInterval, 25*time.Second)
	setDefault(&c.PingTimeout, 15*time.Second)
	return c, nil
}

func setDefault[T int | float64 | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

func randomSuffix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// DefaultNode names a host: its host name and a suffix new at every start, so that hosts
// sharing Redis can tell a restarted host from the one that was there before.
func DefaultNode() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "shardchat"
	}
	var b [3]byte
	_, _ = rand.Read(b[:])
	return host + "-" + hex.EncodeToString(b[:])
}

// Server serves shardchat over HTTP. Handler may serve requests from many goroutines;
// Drain and Shutdown may be called from any goroutine, more than once.
type Server struct {
	// Static after construction.
	cfg       Config
	log       *slog.Logger
	metrics   *Metrics
	welcome   []byte
	handler   http.Handler
	readBufs  sync.Pool // *[]byte for client frames
	frameBufs sync.Pool // *[]byte for joined server frames
	baseCtx   context.Context
	stop      context.CancelFunc
	proxies   proxies
	ipLimits  *ipLimits
	derived   *derivedCache // Socket.IO forms of fanned-out objects
	poller    *poller       // parked sessions' sockets (park.go); nil: none park

	nextID   atomic.Uint64
	conns    atomic.Int64
	draining atomic.Bool

	watchdogDone chan struct{} // closed when watchWrites returns

	// Guarded by mu.
	mu       sync.Mutex
	sessions map[*session]struct{}
	idle     chan struct{} // closed when draining and the last session ended
}

// New returns a server for cfg.
func New(cfg Config) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:      cfg,
		log:      cfg.Logger,
		metrics:  cfg.Metrics,
		sessions: make(map[*session]struct{}),
		idle:     make(chan struct{}),
	}
	s.welcome = wire.AppendWelcome(nil, cfg.Node, wire.Limits{Text: wire.MaxText, Rooms: cfg.MaxRooms, Rate: cfg.Rate, Burst: cfg.Burst})
	s.readBufs.New = func() any { b := make([]byte, 0, 1024); return &b }
	s.frameBufs.New = func() any { b := make([]byte, 0, 4096); return &b }
	s.baseCtx, s.stop = context.WithCancel(context.Background())
	if s.proxies, err = parseProxies(cfg.TrustedProxies); err != nil {
		return nil, fmt.Errorf("transport: %w", err)
	}
	s.ipLimits = newIPLimits(cfg.MaxConnsPerIP, cfg.ConnectRatePerIP, cfg.ConnectBurstPerIP)
	s.derived = newDerivedCache()

	mux := http.NewServeMux()
	mux.HandleFunc("GET /ws", s.serveWS)
	mux.HandleFunc("GET /socket.io/", s.serveSocketIO)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", s.serveReady)
	if cfg.Gatherer != nil {
		// Uncompressed: the page is about 16 KB, and a gzip writer is about 800 KB of heap,
		// made again whenever the garbage collector has emptied promhttp's pool (under load,
		// at every scrape).
		mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{DisableCompression: true}))
	}
	mux.Handle("GET /api/rooms", &roomDirectory{srv: s})
	if cfg.Static != nil {
		static, err := staticHandler(cfg.Static)
		if err != nil {
			return nil, err
		}
		mux.Handle("GET /", static)
	}
	s.handler = mux
	// Last: nothing may fail after the poller's goroutine starts.
	if s.poller, err = newPoller(s.log); err != nil {
		s.log.Warn("idle connections will keep a goroutine each", "err", err)
	}
	s.watchdogDone = make(chan struct{})
	go s.watchSessions()
	return s, nil
}

// watchSessions is the server's watchdog: it has idle clients pinged and drops dead ones
// (each protocol's keepalive), and closes the connections whose write has been stuck for more
// than WriteTimeout (their clients stopped reading, and their writers would wait forever).
// One sweep over all sessions every tick replaces a timer per connection and per write. It
// runs until Shutdown ends.
func (s *Server) watchSessions() {
	defer close(s.watchdogDone)
	cfg := &s.cfg
	every := min(cfg.WriteTimeout/2, cfg.PingInterval/2, cfg.PingTimeout/4, time.Second)
	tick := time.NewTicker(max(every, 10*time.Millisecond))
	defer tick.Stop()
	var sessions []*session
	for {
		select {
		case <-s.baseCtx.Done():
			return
		case now := <-tick.C:
			limit := now.Add(-cfg.WriteTimeout).UnixNano()
			sessions = sessions[:0]
			s.mu.Lock()
			for sess := range s.sessions {
				sessions = append(sessions, sess)
			}
			s.mu.Unlock()
			for _, sess := range sessions {
				if since := sess.writingSince.Load(); since != 0 && since < limit {
					sess.log().Info("closing a client whose write was stuck", "timeout", cfg.WriteTimeout)
					sess.cut()
					continue
				}
				sess.proto.keepalive(sess, now)
				sess.retireIdleWriter(now)
			}
			clear(sessions)
		}
	}
}

// Handler returns the HTTP handler of every route.
func (s *Server) Handler() http.Handler { return s.handler }

func (s *Server) serveReady(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		http.Error(w, "draining", http.StatusServiceUnavailable)
		return
	}
	if err := s.cfg.Hub.Ready(); err != nil {
		http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ready\n"))
}

func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	s.upgrade(w, r, true, func(uint64) protocol { return native{} })
}

// serveSocketIO takes socket.io-client v4 connections: Engine.IO 4 over WebSocket only. The
// polling transport, other Engine.IO versions and session resumption are refused with the
// HTTP status and error body that Engine.IO clients understand.
func (s *Server) serveSocketIO(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	switch {
	case q.Get("EIO") != "4":
		s.refuseHandshake(w, sio.ErrUnsupportedVersion)
	case q.Get("transport") != "websocket":
		s.refuseHandshake(w, sio.ErrTransportUnknown) // set transports: ["websocket"] in the client
	case q.Get("sid") != "":
		s.refuseHandshake(w, sio.ErrUnknownSID) // no polling sessions to resume
	case !strings.EqualFold(r.Header.Get("Upgrade"), "websocket"):
		s.refuseHandshake(w, sio.ErrBadRequest)
	default:
		// With authentication on, the token may come in the CONNECT packet instead.
		s.upgrade(w, r, false, func(id uint64) protocol {
			return newSocketIO("sc"+strconv.FormatUint(id, 36)+"-"+randomSuffix(), s.derived)
		})
	}
}

func (s *Server) refuseHandshake(w http.ResponseWriter, e sio.HandshakeError) {
	s.metrics.upgradesRefused.WithLabelValues(refuseUpgrade).Inc()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadRequest)
	_ = json.NewEncoder(w).Encode(e)
}

// upgrade runs the checks every connection passes, upgrades it and serves the session.
// needToken says whether a token must come with the upgrade (when authentication is on).
func (s *Server) upgrade(w http.ResponseWriter, r *http.Request, needToken bool, newProto func(id uint64) protocol) {
	client := s.proxies.clientAddr(r)
	if s.draining.Load() {
		s.refuseUpgrade(w, refuseDraining, http.StatusServiceUnavailable, "server is restarting; try again", 0)
		return
	}
	if err := checkOrigin(r, s.cfg.AllowedOrigins); err != nil {
		s.refuseUpgrade(w, refuseOrigin, http.StatusForbidden, err.Error(), 0)
		return
	}
	// Before the token: a signature check costs more than the bucket, and bad tokens spend
	// the address's connection budget.
	if ok, reason, wait := s.ipLimits.acquire(client, time.Now()); !ok {
		s.refuseUpgrade(w, reason, http.StatusTooManyRequests, "too many connections from your address; try again later", wait)
		return
	}
	var claims *auth.Claims
	if s.cfg.Auth != nil {
		var err error
		claims, err = s.verify(r)
		var refusal *auth.Refusal
		missing := errors.As(err, &refusal) && refusal.Reason == auth.ReasonMissing
		if err != nil && (needToken || !missing) {
			reason := auth.ReasonClaims
			if refusal != nil {
				reason = refusal.Reason
			}
			s.log.Debug("token refused", "remote", client, "reason", reason.Metric, "err", err)
			s.ipLimits.release(client)
			s.refuseUpgrade(w, reason.Metric, http.StatusUnauthorized, reason.Message, 0)
			return
		}
	}
	if s.conns.Add(1) > int64(s.cfg.MaxConns) {
		s.conns.Add(-1)
		s.ipLimits.release(client)
		s.refuseUpgrade(w, refuseMaxConns, http.StatusServiceUnavailable, "too many connections; try again later", 0)
		return
	}
	release := func() {
		s.conns.Add(-1)
		s.ipLimits.release(client)
	}

	var hj hijacked
	// Set before anything reads a frame: the session's goroutines, or the close below.
	var sess *session
	// checkOrigin has run above (and counted and explained its refusals): the library's own
	// origin check, the same rules, is not run twice.
	conn, err := websocket.Accept(withSmallBuffers(w, &hj), r, &websocket.AcceptOptions{
		InsecureSkipVerify: true,
		OnPongReceived:     func(context.Context, []byte) { sess.alive() },
	})
	if err != nil {
		release()
		s.metrics.upgradesRefused.WithLabelValues(refuseUpgrade).Inc()
		s.log.Debug("websocket upgrade failed", "remote", client, "err", err)
		return
	}
	if hj.conn == nil {
		// Accept hijacks through withSmallBuffers' wrapper when it hijacks at all; a library
		// that found another way would leave the session no socket to write to.
		release()
		s.log.Error("websocket upgrade without the server's hijack; closing it", "remote", client)
		_ = conn.CloseNow()
		return
	}
	conn.SetReadLimit(wire.MaxFrame)
	id := s.nextID.Add(1)
	sess = newSession(s, id, conn, client.String(), newProto(id))
	sess.adopt(hj)
	sess.claims = claims
	// The session runs on a goroutine of its own and this handler returns: net/http's
	// goroutine has a deep, grown stack that an idle connection would otherwise keep. The
	// server owns the session (Shutdown waits for it).
	if !s.track(sess) {
		release()
		sess.metrics.closed(wire.CloseRestart)
		_ = conn.Close(websocket.StatusCode(wire.CloseRestart), "server is restarting")
		return
	}
	sess.metrics.connections.Inc()
	sess.metrics.connectionsTotal.Inc()
	sess.onEnd = func() {
		sess.metrics.connections.Dec()
		s.untrack(sess)
		release()
	}
	go sess.run()
}

// verify reads and checks the request's token.
func (s *Server) verify(r *http.Request) (*auth.Claims, error) {
	token, err := auth.TokenFromRequest(r.URL.Query().Get("token"), r.Header.Get("Authorization"))
	if err != nil {
		return nil, err
	}
	return s.cfg.Auth.Verify(token)
}

// refuseUpgrade answers a WebSocket upgrade that will not happen, with a one-line reason,
// and counts it.
func (s *Server) refuseUpgrade(w http.ResponseWriter, reason string, status int, msg string, retryAfter time.Duration) {
	s.metrics.upgradesRefused.WithLabelValues(reason).Inc()
	if retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(retryAfter.Seconds()))))
	}
	http.Error(w, msg, status)
}

func (s *Server) track(sess *session) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining.Load() {
		return false
	}
	s.sessions[sess] = struct{}{}
	return true
}

func (s *Server) untrack(sess *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.sessions, sess)
	if len(s.sessions) == 0 && s.draining.Load() {
		s.closeIdleLocked()
	}
}

func (s *Server) closeIdleLocked() {
	select {
	case <-s.idle:
	default:
		close(s.idle)
	}
}

// Drain makes /readyz answer 503 and refuses new upgrades, so a load balancer moves new
// clients elsewhere; open sessions go on.
func (s *Server) Drain() { s.draining.Store(true) }

// Shutdown drains, then asks every session to write what it has queued and close with
// 1012, and waits for them until ctx is done; sessions still open then are cut.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.draining.Store(true)
	for sess := range s.sessions {
		sess.closeWith(wire.CloseRestart, "server is restarting")
	}
	if len(s.sessions) == 0 {
		s.closeIdleLocked()
	}
	s.mu.Unlock()

	select {
	case <-s.idle:
		s.stop()
		<-s.watchdogDone
		s.poller.close()
		return nil
	case <-ctx.Done():
	}
	s.stop() // cancels every session's context
	// A writer blocked in a close handshake or a raw write does not watch the context:
	// closing the connections themselves is what frees it; not under s.mu, which the
	// ending sessions take to leave.
	s.mu.Lock()
	sessions := slices.Collect(maps.Keys(s.sessions))
	s.mu.Unlock()
	for _, sess := range sessions {
		sess.cut()
	}
	<-s.idle
	<-s.watchdogDone
	s.poller.close()
	return fmt.Errorf("shutdown: sessions cut after the drain timeout: %w", ctx.Err())
}

// checkOrigin allows requests without Origin, same-origin requests, and origins whose host
// (or scheme://host, for patterns with "://") matches a pattern.
func checkOrigin(r *http.Request, patterns []string) error {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return nil
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return fmt.Errorf("origin %q is not a URL with a host", origin)
	}
	if strings.EqualFold(u.Host, r.Host) {
		return nil
	}
	for _, p := range patterns {
		target := u.Host
		if strings.Contains(p, "://") {
			target = u.Scheme + "://" + u.Host
		}
		if ok, _ := path.Match(strings.ToLower(p), strings.ToLower(target)); ok {
			return nil
		}
	}
	return fmt.Errorf("origin %s may not connect; the server allows cross-origin pages only with --allowed-origins", u.Host)
}

// httpShutdownTimeout bounds the wait for plain HTTP requests under way once the sessions
// have drained.
const httpShutdownTimeout = 2 * time.Second

// ListenAndServe serves on addr until ctx is done, then shuts down: it stops accepting,
// drains sessions for up to drainTimeout, and returns. onListen, when set, gets the bound
// address (useful with port 0).
func (s *Server) ListenAndServe(ctx context.Context, addr string, drainTimeout time.Duration, onListen func(net.Addr)) error {
	// No TCP keepalive on accepted connections: it costs four setsockopt calls a connection,
	// and the pings of PingInterval find a peer that went away, sooner.
	lc := net.ListenConfig{KeepAlive: -1}
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	if onListen != nil {
		onListen(ln.Addr())
	}
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	select {
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	s.log.Info("shutting down", "drain_timeout", drainTimeout)
	s.Drain()
	sctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
	defer cancel()
	// Sessions drain first, while the listener still answers: /readyz says 503 and new
	// upgrades are refused with 503, so that a load balancer sees the drain and moves new
	// clients elsewhere. Then http.Server.Shutdown closes the listener and idle HTTP
	// connections; it would not have waited for hijacked WebSockets anyway (its doc says so).
	wsErr := s.Shutdown(sctx)
	// Its own bound: the drain may have used all of sctx, and requests under way (a
	// /metrics scrape, say) still deserve a moment to finish.
	hctx, hcancel := context.WithTimeout(context.Background(), httpShutdownTimeout)
	defer hcancel()
	httpErr := srv.Shutdown(hctx)
	<-serveErr // Serve returns ErrServerClosed at once after Shutdown began
	return errors.Join(httpErr, wsErr)
}
