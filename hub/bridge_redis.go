package hub

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/rueidis"

	"github.com/shardchat/shardchat/shard"
	"github.com/shardchat/shardchat/transport/wire"
)

// RedisConfig configures the Redis bridge. The zero value of each field means its default,
// except URL.
type RedisConfig struct {
	// URL is the Redis server: redis://[user:password@]host:port[/db], rediss:// for TLS.
	// For Redis Cluster, give several seed addresses: redis://h1:7000,h2:7001 (or
	// ?addr=h2:7001). Required.
	URL string
	// Node names this host among the hosts that share Redis; it must be unique, and new at
	// every start. Default: a random name.
	Node string
	// History is how many messages a room's stream keeps (about). Default 100.
	History int
	// HistoryTTL is how long a room's history outlives its last message. Default 24h.
	HistoryTTL time.Duration
	// NodeTTL is how long a host that stopped heartbeating counts as alive: its users
	// disappear from every room after at most NodeTTL plus one Heartbeat. Default 4s.
	NodeTTL time.Duration
	// Heartbeat is how often this host says it is alive and looks for dead hosts. Default 1s.
	Heartbeat time.Duration
	// ProbeInterval is how often a probe goes round through Redis pub/sub; a probe not back
	// within ProbeTimeout marks the bridge down and resubscribes every room. Defaults 1s, 3s.
	ProbeInterval time.Duration
	ProbeTimeout  time.Duration
	// Timeout bounds each Redis call made for a client's request. Default 2s. A message
	// may wait up to Timeout for its room's earlier publish scripts, and its sender may then
	// run the next script for the others, for up to Timeout more.
	Timeout time.Duration
	// KeyPrefix starts every key and channel name. Default "shardchat:".
	KeyPrefix string
	// Logger receives the bridge's logs. Default slog.Default().
	Logger *slog.Logger
	// Registerer receives the bridge's metrics. Default: a private registry.
	Registerer prometheus.Registerer
}

func (c RedisConfig) withDefaults() RedisConfig {
	if c.Node == "" {
		c.Node = "node-" + randomID()
	}
	setDefault(&c.History, 100)
	setDefault(&c.HistoryTTL, 24*time.Hour)
	setDefault(&c.NodeTTL, 4*time.Second)
	setDefault(&c.Heartbeat, time.Second)
	setDefault(&c.ProbeInterval, time.Second)
	setDefault(&c.ProbeTimeout, 3*time.Second)
	setDefault(&c.Timeout, 2*time.Second)
	if c.KeyPrefix == "" {
		c.KeyPrefix = "shardchat:"
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Registerer == nil {
		c.Registerer = prometheus.NewRegistry()
	}
	return c
}

func setDefault[T int | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

func randomID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// RedisBridge shares rooms between hosts through Redis: it orders messages with a Lua
// script (next seq, append to the room's stream, publish on the room's channel), listens to
// the channels of the rooms that have members here and hands what comes to their shards,
// keeps who is in which room on which host, and finds hosts that died.
//
// Its Bridge methods are called from sessions' readers and may block them on Redis; the
// shard.Remote method never blocks, and nothing here ever waits on a shard in a Redis hook.
type RedisBridge struct {
	// Static after construction.
	cfg     RedisConfig
	client  rueidis.Client
	sharded bool // Redis Cluster: sharded pub/sub
	keys    keys
	args    scriptArgs
	local   Local
	log     *slog.Logger
	metrics *redisMetrics
	subs    *subscriber
	syncs   chan syncRequest // Sync requests from shards, served by syncWorkers
	ctx     context.Context  // cancelled by Close
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	dead        atomic.Pointer[[]string] // nodes whose heartbeat ran out, from the last heartbeat
	live        atomic.Pointer[[]string] // nodes alive at the last heartbeat
	clockOffset atomic.Int64             // Redis' clock minus this host's, in ms, from the last heartbeat
	heartbeatOK atomic.Bool
	probeOK     atomic.Bool
	unreachable atomic.Bool // the last call failed for want of a connection

	// names serializes, per room and user name, this host's claim of the name with its
	// release: a reconnect that claims the name while the old connection's release is under
	// way (or queued for a retry) must not lose it to that release.
	names [nameStripes]sync.Mutex

	beat          heartbeatState // owned by the heartbeat goroutine
	reclaimWanted atomic.Bool    // this host's time in Redis ran out: claim its names again
	choresDue     chan struct{}  // the heartbeat wakes choresLoop

	lanes [laneStripes]publishLanes // by lanesOf; each safe for concurrent use, guarded by its own mu

	// Guarded by mu.
	mu      sync.Mutex
	held    map[roomUser]shard.Member // the names this host's members hold, by room
	retries map[roomUser]struct{}     // releases (and their leaves) that failed, tried again on heartbeats
	resyncs map[string]struct{}

	// Guarded by rostersMu, a lock of their own: shards take it (WantRoster), and must not
	// wait behind mu's longer holders.
	rostersMu sync.Mutex
	rosters   map[string]struct{} // rooms whose roster is to be published (WantRoster)

	closeOnce sync.Once
}

// scriptArgs are the scripts' arguments that never change, formatted once.
type scriptArgs struct {
	history string // cfg.History
	ttl     string // cfg.HistoryTTL in ms
	publish string // the scripts' publish command: PUBLISH, or SPUBLISH on a Redis Cluster
}

type syncRequest struct {
	room  string
	after uint64
}

// roomUser names a user in a room: a name held here, or one whose release (and presence
// leave) could not reach Redis.
type roomUser struct {
	room, user string
}

// nameStripes is how many locks names has; names share a lock only by chance, and briefly.
const nameStripes = 256

// syncWorkers serve the shards' Sync requests; a few, because each waits on Redis.
const syncWorkers = 4

// NewRedisBridge returns a NewBridgeFunc that connects to Redis per cfg. It fails when Redis
// cannot be reached at start; later outages are survived.
func NewRedisBridge(cfg RedisConfig) NewBridgeFunc {
	return func(local Local) (Bridge, error) {
		cfg := cfg.withDefaults()
		opt, err := parseRedisURL(cfg.URL)
		if err != nil {
			return nil, fmt.Errorf("redis bridge: %w", err)
		}
		opt.DisableCache = true
		opt.ClientName = "shardchat-" + cfg.Node
		client, err := rueidis.NewClient(opt)
		if err != nil {
			return nil, fmt.Errorf("connect to redis at %s: %w", redactURL(cfg.URL), err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		b := &RedisBridge{
			cfg:     cfg,
			client:  client,
			sharded: client.Mode() == rueidis.ClientModeCluster,
			keys:    keys{prefix: cfg.KeyPrefix},
			args: scriptArgs{
				history: strconv.Itoa(cfg.History),
				ttl:     strconv.FormatInt(cfg.HistoryTTL.Milliseconds(), 10),
				publish: publishVerb(client.Mode() == rueidis.ClientModeCluster),
			},
			local:     local,
			log:       cfg.Logger.With("node", cfg.Node),
			metrics:   newRedisMetrics(cfg.Registerer),
			syncs:     make(chan syncRequest, 4096),
			ctx:       ctx,
			cancel:    cancel,
			resyncs:   make(map[string]struct{}),
			rosters:   make(map[string]struct{}),
			retries:   make(map[roomUser]struct{}),
			held:      make(map[roomUser]shard.Member),
			choresDue: make(chan struct{}, 1),
		}
		b.dead.Store(&[]string{})
		b.live.Store(&[]string{})
		b.subs = newSubscriber(b)
		if err := b.heartbeat(ctx); err != nil {
			cancel()
			client.Close()
			return nil, fmt.Errorf("first heartbeat to redis at %s: %w", redactURL(cfg.URL), err)
		}
		b.probeOK.Store(true)
		b.setUp()
		b.log.Info("redis bridge started", "redis", redactURL(cfg.URL), "cluster", b.sharded)
		return b, nil
	}
}

// Start runs the heartbeat, the chores, the probe and the sync workers, which use the
// shards; see Bridge.Start.
func (b *RedisBridge) Start() {
	b.wg.Go(b.heartbeatLoop)
	b.wg.Go(b.choresLoop)
	b.wg.Go(b.subs.runProbe)
	for range syncWorkers {
		b.wg.Go(b.syncWorker)
	}
}

// parseRedisURL reads redis:// and rediss:// URLs, with comma-separated seed addresses. Its
// errors never show the password, whole or in part.
func parseRedisURL(raw string) (rueidis.ClientOption, error) {
	if raw == "" {
		return rueidis.ClientOption{}, errors.New("redis URL is empty; want redis://host:6379")
	}
	given := raw
	fail := func(why error) (rueidis.ClientOption, error) {
		return rueidis.ClientOption{}, fmt.Errorf("redis URL %s: %w (want redis://[user:password@]host:port[/db])", redactURL(given), why)
	}
	// A / or ? in the credentials (or any #: Redis URLs have none) is a password or a value
	// that needs percent-encoding, which a parser would otherwise read as a host, a path, a
	// query or a fragment: a wrong host at best, a password quoted in an error at worst.
	scheme, creds, _, _ := cutRedisURL(raw)
	if strings.Contains(raw[len(scheme):], "#") || strings.ContainsAny(creds, "/?") {
		return fail(errors.New("percent-encode / ? # @ % in the password and in query values (# is %23)"))
	}
	raw, err := seedsToQuery(raw)
	if err != nil {
		return fail(err)
	}
	opt, err := rueidis.ParseURL(raw)
	switch {
	case err == nil:
		return opt, nil
	case creds != "":
		// A parser's reason may quote the URL or a piece of it: say what to check instead.
		return fail(errors.New("it does not parse: check the host, the port and the database, and percent-encode / ? # @ % in the password"))
	}
	if uerr, ok := errors.AsType[*url.Error](err); ok {
		err = uerr.Err // its URL is in the message already
	}
	return fail(err)
}

// cutRedisURL cuts a Redis URL where its parts end, by hand: url.Parse misreads a password
// with an unescaped / ? or #. scheme is up to and with "://" (empty when the URL has none
// before its credentials), creds up to and with the last @ (empty without one), hosts up to
// the first / or ? after them, and tail the rest: they add up to raw.
func cutRedisURL(raw string) (scheme, creds, hosts, tail string) {
	if i := strings.Index(raw, "://"); i >= 0 && !strings.Contains(raw[:i], "@") {
		scheme, raw = raw[:i+len("://")], raw[i+len("://"):]
	}
	if at := strings.LastIndex(raw, "@"); at >= 0 {
		creds, raw = raw[:at+1], raw[at+1:]
	}
	hosts = raw
	if i := strings.IndexAny(raw, "/?"); i >= 0 {
		hosts, tail = raw[:i], raw[i:]
	}
	return scheme, creds, hosts, tail
}

// seedsToQuery moves the addresses after the first of a seed list (redis://h1:7000,h2:7001)
// into addr= query values, where rueidis reads them: url.Parse takes "7000,h2:7001" for a bad
// port. An address in the list without a port gets Redis' 6379 here, where rueidis would
// give it the first address's host.
func seedsToQuery(raw string) (string, error) {
	scheme, creds, hosts, tail := cutRedisURL(raw)
	if scheme == "" || !strings.Contains(hosts, ",") {
		return raw, nil
	}
	list := strings.Split(hosts, ",")
	if slices.Contains(list, "") {
		return "", errors.New("an empty address in the list of hosts")
	}
	var b strings.Builder
	b.WriteString(scheme + creds + list[0] + tail)
	sep := "?"
	if strings.Contains(tail, "?") {
		sep = "&"
	}
	for _, addr := range list[1:] {
		addr, err := seedAddress(addr)
		if err != nil {
			return "", err
		}
		b.WriteString(sep + "addr=" + url.QueryEscape(addr))
		sep = "&"
	}
	return b.String(), nil
}

// seedAddress checks a seed address after the first, host:port or a bare host (Redis' 6379
// then), an IPv6 one in brackets. rueidis would dial the first address's host for one it
// cannot split, so those are refused here.
func seedAddress(addr string) (string, error) {
	bad := fmt.Errorf("seed address %q is not host:port (an IPv6 address in brackets)", addr)
	host, port, err := net.SplitHostPort(addr)
	if err != nil { // no port, or not an address
		host, port = addr, "6379"
		if inner, ok := strings.CutPrefix(addr, "["); ok {
			if host, ok = strings.CutSuffix(inner, "]"); !ok {
				return "", bad
			}
		} else if strings.Contains(addr, ":") {
			return "", bad // a second port, or an IPv6 address without brackets
		}
	}
	if n, err := strconv.Atoi(port); host == "" || strings.ContainsAny(host, " []") || err != nil || n < 1 || n > 65535 {
		return "", bad
	}
	return net.JoinHostPort(host, port), nil
}

// redactURL hides the credentials of a Redis URL for logs and errors: everything between the
// scheme and the last @, whether or not the URL parses. url.Parse is no help here: a password
// with an unescaped # or / makes it see a fragment or a path, and no credentials at all. An
// @ later in the URL hides more than it must, never less (parseRedisURL refuses those URLs).
func redactURL(raw string) string {
	scheme, creds, hosts, tail := cutRedisURL(raw)
	if creds == "" {
		return raw
	}
	return scheme + "xxxxx@" + hosts + tail
}

func unavailable(what string) *wire.Error {
	return wire.Errorf(wire.CodeUnavailable, "%s: the cluster store cannot be reached; try again", what)
}

func (b *RedisBridge) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, b.cfg.Timeout)
}

// noteCall records whether a Redis call got an answer. The first answer after calls failed
// for want of a connection wakes the subscriptions that wait to be made again: each moment
// they wait is messages their rooms' streams must still hold when they come back.
func (b *RedisBridge) noteCall(err error) {
	if err == nil {
		if b.unreachable.CompareAndSwap(true, false) {
			b.subs.wakeAll()
		}
		return
	}
	if _, isRedisErr := rueidis.IsRedisErr(err); !isRedisErr {
		b.unreachable.Store(true)
	}
}

// Join claims the name in Redis, listens to the room, seats the member in the room's shard
// and tells every host.
func (b *RedisBridge) Join(ctx context.Context, req shard.Request) error {
	names := b.nameLock(req.Room, req.User)
	names.Lock()
	defer names.Unlock()
	cctx, cancel := b.callCtx(ctx)
	defer cancel()
	code, users, err := b.claim(cctx, req.Room, req.User)
	if err != nil {
		b.metrics.errors.WithLabelValues("claim").Inc()
		return unavailable("cannot join now")
	}
	if code == 0 {
		return wire.Errorf(wire.CodeNameTaken, "%s is already in room %s", req.User, req.Room)
	}
	// A release still queued from an earlier leave would take the name from this join.
	b.mu.Lock()
	_, queued := b.retries[roomUser{room: req.Room, user: req.User}]
	delete(b.retries, roomUser{room: req.Room, user: req.User})
	b.mu.Unlock()
	// Nobody on this host held the name before this call: a failure gives it back.
	claimedHere := code == 1 || queued
	added, err := b.subs.watch(cctx, req.Room, req.Member)
	if err != nil {
		b.metrics.errors.WithLabelValues("subscribe").Inc()
		if claimedHere {
			b.release(req.Room, req.User)
		}
		return unavailable("cannot join now")
	}
	req.Users = users
	err = b.local.Shard(req.Room).Join(ctx, req)
	var werr *wire.Error
	if errors.As(err, &werr) {
		if added {
			b.subs.unwatch(req.Room, req.Member)
		}
		if claimedHere && werr.Code != wire.CodeNameTaken { // name_taken here: a member of this host holds the name
			b.release(req.Room, req.User)
		}
		return err
	}
	if err != nil {
		// Gave up waiting: a first join is undone; a rejoin (not added) keeps its seat.
		if added {
			b.undoJoin(req, claimedHere)
		}
		return err
	}
	b.mu.Lock()
	b.held[roomUser{room: req.Room, user: req.User}] = req.Member
	b.mu.Unlock()
	return nil // the claim announced the join
}

// undoJoin takes back a join whose caller gave up before the shard answered. The join may
// or may not have reached the shard; a quiet leave queued behind it settles which.
func (b *RedisBridge) undoJoin(req shard.Request, claimedHere bool) {
	ctx, cancel := b.callCtx(context.Background())
	defer cancel()
	leave := shard.Request{Member: req.Member, Room: req.Room, User: req.User, Quiet: true, Reply: make(chan error, 1)}
	err := b.local.Shard(req.Room).Leave(ctx, leave)
	var werr *wire.Error
	if err != nil && !errors.As(err, &werr) {
		// The shard is too busy to say: the session's own leave, when it ends, tries again.
		b.log.Warn("cannot undo a join cut short", "room", req.Room, "err", err)
		return
	}
	if claimedHere {
		b.release(req.Room, req.User)
	}
	b.subs.unwatch(req.Room, req.Member)
}

// nameLock returns the lock that serializes the claim and release of user in room here.
func (b *RedisBridge) nameLock(room, user string) *sync.Mutex {
	h := xxhash.Sum64String(room) ^ bits.RotateLeft64(xxhash.Sum64String(user), 31)
	return &b.names[h%nameStripes]
}

// redisDeadline is the time, on Redis' clock in ms, after which a script called with ctx
// must do nothing: the caller has given up by then and told its client so. The margin covers
// the reply's way back and the error of the clock offset.
func (b *RedisBridge) redisDeadline(ctx context.Context) string {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(b.cfg.Timeout)
	}
	deadline = deadline.Add(-b.cfg.Timeout / 4)
	return strconv.FormatInt(deadline.UnixMilli()+b.clockOffset.Load(), 10)
}

// claim runs claimScript and answers its code and the room's users on live hosts, sorted.
func (b *RedisBridge) claim(ctx context.Context, room, user string) (int64, []string, error) {
	join := presencePayload(user, true, wire.AppendPresence(nil, room, user, wire.PresenceJoin))
	args := []string{user, b.cfg.Node, b.args.ttl, b.redisDeadline(ctx), b.args.publish, join}
	args = append(args, *b.dead.Load()...)
	res, err := claimScript.Exec(ctx, b.client,
		[]string{b.keys.users(room), b.keys.meta(room), b.keys.log(room), b.keys.channel(room)}, args).ToArray()
	b.noteCall(err)
	if err != nil {
		return 0, nil, fmt.Errorf("claim %s in room %s: %w", user, room, err)
	}
	if len(res) == 0 {
		return 0, nil, fmt.Errorf("claim %s in room %s: empty answer", user, room)
	}
	code, err := res[0].AsInt64()
	if err != nil {
		return 0, nil, fmt.Errorf("claim %s in room %s: code: %w", user, room, err)
	}
	if code < 0 {
		b.metrics.errors.WithLabelValues("claim_late").Inc()
		return 0, nil, fmt.Errorf("claim %s in room %s: redis ran the claim after its deadline", user, room)
	}
	if code == 0 {
		return 0, nil, nil
	}
	pairs := make([]string, 0, len(res)-1)
	for _, m := range res[1:] {
		s, err := m.ToString()
		if err != nil {
			return 0, nil, fmt.Errorf("claim %s in room %s: holders: %w", user, room, err)
		}
		pairs = append(pairs, s)
	}
	return code, b.liveUsers(pairs), nil
}

// liveUsers turns name, node pairs into the sorted names held by hosts not known dead.
func (b *RedisBridge) liveUsers(pairs []string) []string {
	dead := *b.dead.Load()
	names := make([]string, 0, len(pairs)/2)
	for i := 0; i+1 < len(pairs); i += 2 {
		if !slices.Contains(dead, pairs[i+1]) {
			names = append(names, pairs[i])
		}
	}
	slices.Sort(names)
	return names
}

// Leave takes the member out of the room's shard, stops listening to the room when it was
// the last member here, gives the name back and tells every host.
func (b *RedisBridge) Leave(ctx context.Context, req shard.Request) error {
	names := b.nameLock(req.Room, req.User)
	names.Lock()
	defer names.Unlock()
	if err := b.local.Shard(req.Room).Leave(ctx, req); err != nil {
		return err
	}
	b.mu.Lock()
	delete(b.held, roomUser{room: req.Room, user: req.User})
	b.mu.Unlock()
	// Released before unwatch drops the room from this host's room set: should the release
	// fail and this host die, its pruning finds the name through that set.
	b.release(req.Room, req.User)
	b.subs.unwatch(req.Room, req.Member)
	return nil
}

// release gives a name back and announces the leave; when Redis cannot be reached, it is
// tried again on later heartbeats.
func (b *RedisBridge) release(room, user string) {
	ctx, cancel := b.callCtx(context.Background())
	defer cancel()
	if _, err := b.tryRelease(ctx, room, user, b.cfg.Node); err != nil {
		b.metrics.errors.WithLabelValues("release").Inc()
		b.mu.Lock()
		b.retries[roomUser{room: room, user: user}] = struct{}{}
		b.mu.Unlock()
	}
}

// tryRelease gives back user's name in room if node holds it, and announces the leave in the
// same step; it reports whether node held the name.
func (b *RedisBridge) tryRelease(ctx context.Context, room, user, node string) (bool, error) {
	release := b.releaseExec(room, user, node)
	released, err := releaseScript.Exec(ctx, b.client, release.Keys, release.Args).AsInt64()
	if err != nil {
		return false, fmt.Errorf("release %s in room %s: %w", user, room, err)
	}
	return released == 1, nil
}

// releaseExec is the call of releaseSource that gives user's name in room back if node holds
// it, announcing the leave: one release, for releaseScript's Exec or, several at once,
// releaseBatchScript's ExecMulti.
func (b *RedisBridge) releaseExec(room, user, node string) rueidis.LuaExec {
	leave := presencePayload(user, false, wire.AppendPresence(nil, room, user, wire.PresenceLeave))
	return rueidis.LuaExec{Keys: []string{b.keys.users(room), b.keys.channel(room)}, Args: []string{user, node, b.args.publish, leave}}
}

// announce publishes an event on a room's channel, best effort; op names it in the error
// count.
func (b *RedisBridge) announce(op, room, payload string) {
	ctx, cancel := b.callCtx(context.Background())
	defer cancel()
	if err := b.client.Do(ctx, b.publishCmd(b.keys.channel(room), payload)).Error(); err != nil {
		b.metrics.errors.WithLabelValues(op).Inc()
	}
}

// publishVerb is the command that publishes on a room's channel: sharded pub/sub on a
// Redis Cluster, where a channel lives in its room's slot.
func publishVerb(cluster bool) string {
	if cluster {
		return "SPUBLISH"
	}
	return "PUBLISH"
}

func (b *RedisBridge) publishCmd(channel, payload string) rueidis.Completed {
	if b.sharded {
		return b.client.B().Spublish().Channel(channel).Message(payload).Build()
	}
	return b.client.B().Publish().Channel(channel).Message(payload).Build()
}

// Typing publishes the typing state on the room's channel; typing is best effort.
func (b *RedisBridge) Typing(ctx context.Context, req shard.Request) error {
	b.announce("typing", req.Room, typingPayload(req.User, req.On, wire.AppendTyping(nil, req.Room, req.User, req.On)))
	return nil
}

// Users sends the member the room's users on every live host.
func (b *RedisBridge) Users(ctx context.Context, req shard.Request) error {
	cctx, cancel := b.callCtx(ctx)
	defer cancel()
	all, err := b.client.Do(cctx, b.client.B().Hgetall().Key(b.keys.users(req.Room)).Build()).AsStrMap()
	if err != nil {
		b.metrics.errors.WithLabelValues("users").Inc()
		return unavailable("cannot list users now")
	}
	pairs := make([]string, 0, 2*len(all))
	for name, node := range all {
		pairs = append(pairs, name, node)
	}
	if req.Member.Send(wire.AppendUsers(nil, req.Ref, req.Room, b.liveUsers(pairs))) {
		req.Member.Flush()
	}
	return nil
}

// Rooms sums the room counts that every live host keeps in Redis.
func (b *RedisBridge) Rooms(ctx context.Context, limit int) ([]shard.RoomInfo, error) {
	live := *b.live.Load()
	cmds := make(rueidis.Commands, 0, len(live))
	for _, node := range live {
		cmds = append(cmds, b.client.B().Hgetall().Key(b.keys.nodeCounts(node)).Build())
	}
	totals := make(map[string]int)
	for _, res := range b.client.DoMulti(ctx, cmds...) {
		counts, err := res.AsIntMap()
		if err != nil {
			b.metrics.errors.WithLabelValues("rooms").Inc()
			return nil, fmt.Errorf("room counts: %w", err)
		}
		for room, n := range counts {
			totals[room] += int(n)
		}
	}
	rooms := make([]shard.RoomInfo, 0, len(totals))
	for room, n := range totals {
		rooms = append(rooms, shard.RoomInfo{Name: room, Members: n})
	}
	shard.SortRooms(rooms)
	if len(rooms) > limit {
		rooms = rooms[:limit]
	}
	return rooms, nil
}

// Ready reports whether heartbeats reach Redis and probes come back through its pub/sub.
func (b *RedisBridge) Ready() error {
	switch {
	case !b.heartbeatOK.Load():
		return errors.New("redis bridge down: heartbeats fail")
	case !b.probeOK.Load():
		return errors.New("redis bridge down: pub/sub probes do not come back")
	}
	return nil
}

func (b *RedisBridge) setUp() {
	if b.Ready() == nil {
		b.metrics.up.Set(1)
	} else {
		b.metrics.up.Set(0)
	}
}

// Sync asks a sync worker for the room's state; see shard.Remote. It never blocks: a request
// that does not fit is dropped, and the shard asks again.
func (b *RedisBridge) Sync(room string, after uint64) {
	select {
	case b.syncs <- syncRequest{room: room, after: after}:
	default:
		b.metrics.errors.WithLabelValues("state").Inc()
	}
}

func (b *RedisBridge) syncWorker() {
	for {
		select {
		case <-b.ctx.Done():
			return
		case req := <-b.syncs:
			st := b.readState(req.room, req.after)
			if err := b.local.Shard(req.room).Synced(b.ctx, req.room, st); err != nil {
				return // stopping
			}
		}
	}
}

// readState runs stateScript for a shard.
func (b *RedisBridge) readState(room string, after uint64) shard.RoomState {
	b.metrics.syncs.Inc()
	ctx, cancel := b.callCtx(b.ctx)
	defer cancel()
	res, err := stateScript.Exec(ctx, b.client, []string{b.keys.meta(room), b.keys.log(room)},
		[]string{strconv.FormatUint(after, 10), b.args.history, b.args.ttl}).ToArray()
	b.noteCall(err)
	if err == nil && len(res) != 3 {
		err = errors.New("want 3 values")
	}
	if err != nil {
		b.metrics.errors.WithLabelValues("state").Inc()
		return shard.RoomState{Err: fmt.Errorf("read the state of room %s: %w", room, err)}
	}
	st := shard.RoomState{After: after}
	if st.Epoch, err = res[0].ToString(); err != nil {
		return shard.RoomState{Err: fmt.Errorf("read the state of room %s: %w", room, err)}
	}
	seq, err := res[1].AsInt64()
	if err != nil {
		return shard.RoomState{Err: fmt.Errorf("read the state of room %s: %w", room, err)}
	}
	st.Seq = uint64(seq)
	entries, err := res[2].AsXRange()
	if err != nil {
		return shard.RoomState{Err: fmt.Errorf("read the state of room %s: %w", room, err)}
	}
	for _, e := range entries {
		idSeq, _, _ := strings.Cut(e.ID, "-")
		seq, err := strconv.ParseUint(idSeq, 10, 64)
		if err != nil {
			return shard.RoomState{Err: fmt.Errorf("stream entry %q: %w", e.ID, err)}
		}
		st.Messages = append(st.Messages, shard.Event{Kind: shard.EventMessage, Epoch: st.Epoch, Seq: seq, User: e.FieldValues["u"], Obj: []byte(e.FieldValues["m"])})
	}
	return st
}

// resync asks the room's shard to fill what it may have missed; when the shard is too busy
// to take the request, it is tried again on the next heartbeat.
func (b *RedisBridge) resync(room string) {
	if !b.local.Shard(room).TryResync(room) {
		b.mu.Lock()
		b.resyncs[room] = struct{}{}
		b.mu.Unlock()
	}
}

// deliver hands the events of a payload from a room's channel to the room's shard without
// blocking: it runs in a rueidis receive loop, which must never wait (rueidis issue 596). When
// the shard cannot take one, the rest are dropped too, and a message among them has the shard
// read the gap from the room's stream. So does a payload it cannot read, which may hold
// messages in a format of a newer host.
func (b *RedisBridge) deliver(room, payload string) {
	if strings.HasPrefix(payload, "R ") {
		b.deliverRoster(room, payload)
		return
	}
	// The shards keep pointers into evs: one allocation for the payload's events, however
	// many (a publish script's payload holds up to 128).
	evs, err := parsePayload(payload, nil)
	if err != nil {
		b.metrics.errors.WithLabelValues("payload").Inc()
		b.resync(room)
		b.WantRoster(room) // it may have held presence
		return
	}
	sh := b.local.Shard(room)
	for i := range evs {
		if !sh.TryDeliver(room, &evs[i]) {
			lost := evs[i:]
			b.metrics.handoffDropped.Add(float64(len(lost)))
			if slices.ContainsFunc(lost, func(ev shard.Event) bool { return ev.Kind == shard.EventMessage }) {
				b.resync(room)
			}
			if slices.ContainsFunc(lost, func(ev shard.Event) bool { return ev.Kind == shard.EventPresence }) {
				b.WantRoster(room)
			}
			return
		}
	}
}

// Close takes this host's users out of every room, tells the other hosts, stops listening
// and disconnects. It is safe to call twice.
func (b *RedisBridge) Close() error {
	b.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*b.cfg.Timeout)
		defer cancel()
		if err := b.prune(ctx, b.cfg.Node); err != nil {
			b.log.Warn("could not take this host's users out of their rooms; other hosts will", "err", err)
		}
		_ = b.client.Do(ctx, b.client.B().Zrem().Key(b.keys.nodes()).Member(b.cfg.Node).Build()).Error()
		b.cancel()
		b.subs.stop()
		b.wg.Wait()
		b.client.Close()
		b.metrics.up.Set(0)
		b.log.Info("redis bridge stopped")
	})
	return nil
}
