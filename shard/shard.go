// Package shard is the actor that owns chat rooms: one goroutine per shard holds its rooms'
// members, user names, history, sequence numbers and typing state, and is the only code that
// touches them. Callers talk to it through a bounded inbox; it answers on a channel of
// capacity one, so it never blocks on a caller, and it fans messages out through the
// non-blocking Member.Send, so it never blocks on a client.
package shard

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shardchat/shardchat/transport/wire"
)

// ErrStopped is returned for a command sent to a shard that is not running any more.
var ErrStopped = errors.New("shard stopped")

// ErrInternal is the reply to a command whose handling panicked. The caller should close
// its connection with 1011: what the command did is unknown.
var ErrInternal = errors.New("internal error in shard")

// Config configures a Shard. The zero value of each field means its default.
type Config struct {
	// ID names the shard in logs and metrics.
	ID int
	// Inbox is how many commands may wait for the shard. Default 4096; hub.New gives its
	// shards InboxFor(their number).
	Inbox int
	// History is how many messages a room keeps. Default 100.
	History int
	// IdleRoomTTL is how long a room without members keeps its history. Default 1h.
	IdleRoomTTL time.Duration
	// MaxIdleRooms is how many rooms without members the shard keeps; past it, the longest
	// idle go first. Default 10000.
	MaxIdleRooms int
	// Batch bounds how many waiting commands the shard handles before it wakes the writers
	// of the members it queued objects for: under a burst, each writer then writes many
	// objects in one frame; with nothing waiting, every command is flushed at once. A member
	// may get an object for each command of a batch before its writer runs, so keep Batch
	// well under the members' queue. Default 256 (64 made more, smaller writes in a busy
	// room: BENCHMARKS.md).
	Batch int
	// TypingRefresh is how often a typist's repeated typing-on is passed on. Default 2s.
	TypingRefresh time.Duration
	// PresenceDelay is how long a member's writer may wait to write presence (join and
	// leave) when nothing else is queued for it: the joins of many users at once then cost
	// each member one write, not one per join. Anything else queued for the member goes at
	// once, with the presence before it. Default 20ms.
	PresenceDelay time.Duration
	// Logger receives the shard's logs. Default slog.Default().
	Logger *slog.Logger
	// Metrics receives the shard's metrics. Default: collectors on a private registry.
	Metrics *Metrics
	// Remote, when set, orders messages elsewhere: the bridge between hosts. The shard then
	// takes messages, typing and presence as they come back through TryDeliver, and asks
	// Remote for a room's state when it has none or sees a gap. Nil: the shard orders.
	Remote Remote
}

// inboxTotal is how many commands InboxFor lets wait for a host's shards in all, and
// minInbox the least it gives one shard.
const (
	inboxTotal = 8192
	minInbox   = 1024
	maxInbox   = 4096 // Config.Inbox's default
)

// InboxFor is the Inbox for each of shards shards: 8,192 commands shared out, at least 1,024
// and at most 4,096 each. An inbox holds only the commands that wait in it (inbox.go), but a
// full one holds 704 KiB (commands are 176 bytes, TestCommandSize), and up to twice that
// while the shard works through a full take, all scanned by the garbage collector: at 4,096
// each, a 64-core host whose shards all fell behind would hold up to 88 MiB; shared out, 22
// MiB (1,024 each), each shard carrying a 64th of the load.
func InboxFor(shards int) int {
	return min(maxInbox, max(minInbox, inboxTotal/max(shards, 1)))
}

// defaultBatch is Config.Batch's default.
const defaultBatch = 256

// BatchFor is the Batch for members whose queues hold queue objects: a quarter of it at most,
// so that a member that keeps up is not closed as a slow consumer for what a single batch
// queued before its writer ran; 0 (the default) for a queue of 0 (its default).
func BatchFor(queue int) int {
	if queue <= 0 {
		return 0
	}
	return min(defaultBatch, max(1, queue/4))
}

func (c Config) withDefaults() Config {
	if c.Inbox <= 0 {
		c.Inbox = maxInbox
	}
	if c.History <= 0 {
		c.History = 100
	}
	if c.IdleRoomTTL <= 0 {
		c.IdleRoomTTL = time.Hour
	}
	if c.MaxIdleRooms <= 0 {
		c.MaxIdleRooms = 10000
	}
	if c.Batch <= 0 {
		c.Batch = defaultBatch
	}
	if c.TypingRefresh <= 0 {
		c.TypingRefresh = 2 * time.Second
	}
	if c.PresenceDelay <= 0 {
		c.PresenceDelay = 20 * time.Millisecond
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Metrics == nil {
		c.Metrics = NewMetrics(prometheus.NewRegistry())
	}
	return c
}

// Request is the argument of every shard command; each command reads the fields it names.
type Request struct {
	Member Member
	Room   string
	Ref    string
	User   string      // Join: the user name, already validated
	Since  *wire.Since // Join: the recovery position, if any
	Users  []string    // Join: the room's users on every host, when a bridge knows them; roster: the names
	Text   string      // Publish: the text, already validated
	Before uint64      // History: 0 for the newest
	Limit  int         // History: how many
	// Reply receives the outcome: nil, a *wire.Error for a refused request, or ErrInternal.
	// It must have capacity 1 and no other reply pending. Nil means the caller does not wait.
	Reply chan error
	On    bool // Typing
	Quiet bool // Leave: send no left reply, the member is gone
}

type op uint8

const (
	opJoin op = iota + 1
	opLeave
	opPublish
	opTyping
	opUsers
	opHistory
	opRooms
	opDeliver
	opSynced
	opResync
	opRoster
)

var opNames = [...]string{
	opJoin: "join", opLeave: "leave", opPublish: "publish", opTyping: "typing", opUsers: "users",
	opHistory: "history", opRooms: "rooms", opDeliver: "deliver", opSynced: "synced", opResync: "resync",
	opRoster: "roster",
}

func (o op) String() string { return opNames[o] }

// A command is what waits in a shard's inbox, copied in whole: a full inbox holds 4,096 by
// default (see InboxFor). So the Redis path's event goes by pointer, and the booleans sit
// together at the end.
type command struct {
	op op
	Request
	rooms chan []RoomInfo // opRooms: the answer, capacity 1
	event *Event          // opDeliver
	state *RoomState      // opSynced
}

// RoomInfo is a room with members and how many it has, for room directories.
type RoomInfo struct {
	Name    string `json:"room"`
	Members int    `json:"members"`
}

// Shard owns a set of rooms. Its methods may be called from any goroutine; Run must be
// running for them to be served.
type Shard struct {
	// Static after construction.
	cfg     Config
	log     *slog.Logger
	metrics *Metrics
	inbox   *inbox
	done    chan struct{} // closed when Run returns

	// Owned by Run.
	rooms   map[string]*room
	toFlush []Member  // members that got objects since the last flush and need waking
	spare   []command // the list of the last take, emptied, for the next (inbox.take)
	// later are the members that got presence into an empty queue, woken when presenceDue
	// fires (their queues wake them sooner for anything else; see Member.SendLater).
	later       []Member
	presenceDue *time.Timer
}

// New returns a shard; start it with Run.
func New(cfg Config) *Shard {
	cfg = cfg.withDefaults()
	s := &Shard{
		cfg:     cfg,
		log:     cfg.Logger.With("shard", cfg.ID),
		metrics: cfg.Metrics,
		inbox:   newInbox(cfg.Inbox),
		done:    make(chan struct{}),
		rooms:   make(map[string]*room),
	}
	s.metrics.registerShard(cfg.ID, cfg.Inbox, func() float64 { return float64(s.inbox.depth()) })
	return s
}

// Run handles commands until ctx is done. It must be called once.
func (s *Shard) Run(ctx context.Context) {
	defer close(s.done)
	sweepEvery := min(s.cfg.IdleRoomTTL/2, time.Minute)
	tick := sweepEvery
	if s.cfg.Remote != nil {
		tick = time.Second // stalled syncs are retried at this pace
	}
	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	s.presenceDue = time.NewTimer(time.Hour)
	s.presenceDue.Stop()
	defer s.presenceDue.Stop()
	defer s.flushLater()
	lastSweep := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.inbox.ready:
			s.drain()
		case <-s.presenceDue.C:
			s.flushLater()
		case now := <-ticker.C:
			s.letGoOfBursts()
			if s.cfg.Remote != nil {
				s.retrySyncs(now)
			}
			if now.Sub(lastSweep) >= sweepEvery {
				s.sweep(now)
				lastSweep = now
			}
		}
	}
}

// drain handles the commands waiting in the inbox, and takes those that came meanwhile while
// fewer than Batch have been handled (one take may hold the whole inbox), waking the
// members' writers (flush) after every Batch commands and at the end: a burst costs each
// writer a wake a batch, not one a command.
func (s *Shard) drain() {
	handled, sinceFlush := 0, 0
	for handled < s.cfg.Batch {
		cmds := s.inbox.take(s.spare)
		if len(cmds) == 0 {
			break
		}
		for i := range cmds {
			s.inbox.done() // its slot is free once it is handled, as a channel's once received
			s.handle(cmds[i])
			cmds[i] = command{} // nothing the command held stays reachable from the list
			if sinceFlush++; sinceFlush == s.cfg.Batch {
				s.flush()
				sinceFlush = 0
			}
		}
		handled += len(cmds)
		s.spare = cmds[:0]
	}
	s.flush()
}

// letGoOfBursts drops the lists of commands a burst made long, the shard's spare and the
// inbox's, once nothing waits in them. On the ticker, not as each drain ends: a saturated
// shard reuses them from drain to drain, where letting go of them at every drain's end made
// every drain grow a new one (BenchmarkInbox without replies: 257 → 645 ns and 15 → 620
// bytes a command). They stay up to a tick after a burst: a second with Redis, at most a
// minute without.
func (s *Shard) letGoOfBursts() {
	if cap(s.spare) > maxIdleList {
		s.spare = nil
	}
	s.inbox.letGo()
}

// send queues obj for m, to be woken at the next flush.
func (s *Shard) send(m Member, obj []byte) {
	if m.Send(obj) {
		s.toFlush = append(s.toFlush, m)
	}
}

// flush wakes the writers of the members that got objects.
func (s *Shard) flush() {
	for i, m := range s.toFlush {
		m.Flush()
		s.toFlush[i] = nil
	}
	s.toFlush = s.toFlush[:0]
}

// flushLater wakes the writers of the members that got presence (some may have been woken
// since: a Flush with nothing queued costs little).
func (s *Shard) flushLater() {
	for i, m := range s.later {
		m.Flush()
		s.later[i] = nil
	}
	s.later = s.later[:0]
}

// broadcast hands obj to every member of r but the one named except, and returns how many
// got it.
func (s *Shard) broadcast(r *room, obj []byte, except string) int {
	n := 0
	for _, seat := range r.members {
		if seat.user != except {
			if seat.member.Send(obj) {
				s.toFlush = append(s.toFlush, seat.member)
			}
			n++
		}
	}
	return n
}

// broadcastBestEffort is broadcast for objects that may be dropped (typing).
func (s *Shard) broadcastBestEffort(r *room, obj []byte, except string) {
	for _, seat := range r.members {
		if seat.user != except && seat.member.SendBestEffort(obj) {
			s.toFlush = append(s.toFlush, seat.member)
		}
	}
}

// broadcastPresence is broadcast for presence, which may wait up to PresenceDelay for the
// members' writers (see Config.PresenceDelay). A member whose queue it does not start is
// woken anyway, or its writer is under way.
func (s *Shard) broadcastPresence(r *room, obj []byte, except string) {
	for _, seat := range r.members {
		if seat.user != except && seat.member.SendLater(obj) {
			if len(s.later) == 0 {
				s.presenceDue.Reset(s.cfg.PresenceDelay)
			}
			s.later = append(s.later, seat.member)
		}
	}
}

// Join adds req.Member to req.Room as req.User and sends it joined, or refuses with
// name_taken. Joining a room again answers joined again.
func (s *Shard) Join(ctx context.Context, req Request) error { return s.do(ctx, opJoin, req) }

// Leave takes req.Member out of req.Room and sends it left (unless req.Quiet).
func (s *Shard) Leave(ctx context.Context, req Request) error { return s.do(ctx, opLeave, req) }

// Publish gives req.Text the room's next seq, keeps it in history and fans it out to every
// member, the sender too.
func (s *Shard) Publish(ctx context.Context, req Request) error { return s.do(ctx, opPublish, req) }

// Typing passes a typing state on to the other members of the room.
func (s *Shard) Typing(ctx context.Context, req Request) error { return s.do(ctx, opTyping, req) }

// Users sends req.Member the sorted user names of the room.
func (s *Shard) Users(ctx context.Context, req Request) error { return s.do(ctx, opUsers, req) }

// History sends req.Member up to req.Limit messages before req.Before, oldest first.
func (s *Shard) History(ctx context.Context, req Request) error { return s.do(ctx, opHistory, req) }

// Rooms returns up to limit of the shard's rooms with members, the busiest first (ties by
// name).
func (s *Shard) Rooms(ctx context.Context, limit int) ([]RoomInfo, error) {
	reply := make(chan []RoomInfo, 1)
	if err := s.inbox.put(ctx, s.done, command{op: opRooms, Request: Request{Limit: limit}, rooms: reply}); err != nil {
		return nil, err
	}
	select {
	case rooms := <-reply:
		return rooms, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-s.done:
		return nil, ErrStopped
	}
}

// SortRooms orders rooms busiest first, then by name.
func SortRooms(rooms []RoomInfo) {
	slices.SortFunc(rooms, func(a, b RoomInfo) int {
		if a.Members != b.Members {
			return b.Members - a.Members
		}
		return strings.Compare(a.Name, b.Name)
	})
}

// do queues a command and, when req.Reply is set, waits for its outcome. A full inbox blocks
// the caller: that is the backpressure on a client that sends faster than its room's shard
// can serve. It gives up when ctx is done or the shard stops.
func (s *Shard) do(ctx context.Context, o op, req Request) error {
	if err := s.inbox.put(ctx, s.done, command{op: o, Request: req}); err != nil {
		return err
	}
	if req.Reply == nil {
		return nil
	}
	select {
	case err := <-req.Reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-s.done:
		return ErrStopped
	}
}

func (s *Shard) handle(cmd command) {
	defer func() {
		if p := recover(); p != nil {
			s.metrics.panics.Inc()
			s.log.Error("shard recovered from a panic", "op", cmd.op.String(), "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			reply(cmd.Reply, ErrInternal)
		}
	}()
	var err *wire.Error
	switch cmd.op {
	case opJoin:
		var parked bool
		parked, err = s.join(&cmd.Request)
		if parked {
			return // answered when the room's state arrives
		}
	case opLeave:
		err = s.leave(&cmd.Request)
	case opPublish:
		err = s.publish(&cmd.Request)
	case opTyping:
		err = s.typing(&cmd.Request)
	case opUsers:
		err = s.users(&cmd.Request)
	case opHistory:
		err = s.history(&cmd.Request)
	case opRooms:
		cmd.rooms <- s.busiest(cmd.Limit) // capacity 1, and only this send
	case opDeliver:
		s.deliver(cmd.Room, *cmd.event)
	case opSynced:
		s.synced(cmd.Room, cmd.state)
	case opResync:
		s.resyncAsked(s.rooms[cmd.Room])
	case opRoster:
		s.reconcileRoster(s.rooms[cmd.Room], cmd.Users)
	}
	if err != nil {
		reply(cmd.Reply, err)
		return
	}
	reply(cmd.Reply, nil)
}

// reply never blocks: the channel has room for the one reply its caller waits for.
func reply(ch chan error, err error) {
	if ch == nil {
		return
	}
	select {
	case ch <- err:
	default:
	}
}

func notJoined(room string) *wire.Error {
	return wire.Errorf(wire.CodeNotJoined, "not in room %s", room)
}

// seatOf finds the room and the member's user name in it.
func (s *Shard) seatOf(req *Request) (*room, string, *wire.Error) {
	r := s.rooms[req.Room]
	if r == nil {
		return nil, "", notJoined(req.Room)
	}
	user, ok := r.userOf(req.Member)
	if !ok {
		return nil, "", notJoined(req.Room)
	}
	return r, user, nil
}

// join seats req.Member, or parks the join (parked) while the room waits for its state.
func (s *Shard) join(req *Request) (parked bool, err *wire.Error) {
	r := s.rooms[req.Room]
	if r == nil {
		r = newRoom(req.Room, s.cfg.History, s.cfg.Remote == nil)
		s.rooms[req.Room] = r
		s.metrics.idleRooms.Inc()
	}
	if !r.synced {
		return s.park(r, req)
	}
	return false, s.seat(r, req)
}

// seat gives req.Member a seat in r, a synced room, and sends it joined.
func (s *Shard) seat(r *room, req *Request) *wire.Error {
	if _, already := r.userOf(req.Member); !already {
		if r.has(req.User) {
			return wire.Errorf(wire.CodeNameTaken, "%s is already in room %s", req.User, req.Room)
		}
		first := len(r.members) == 0
		if first {
			s.metrics.idleRooms.Dec()
			s.metrics.rooms.Inc()
		}
		if s.cfg.Remote == nil { // with a bridge, presence comes back through it
			s.broadcastPresence(r, wire.AppendPresence(nil, r.name, req.User, wire.PresenceJoin), req.User)
		} else {
			s.enterRoster(r, req, first)
		}
		r.add(req.Member, req.User)
	}

	joined := wire.Joined{Ref: req.Ref, Room: r.name, User: req.User, Epoch: r.epoch, Seq: r.seq, Users: req.Users}
	switch {
	case s.cfg.Remote != nil && r.roster != nil: // nil: a member seated before a reset joins again
		// Every member here is told the one roster that presence is then measured against:
		// a later join's own list may hold names whose presence never came here.
		joined.Users = r.roster // encoded below, before anything changes it
	case joined.Users == nil:
		joined.Users = r.users()
	}
	if since := req.Since; since != nil && since.Epoch == r.epoch && since.Seq <= r.seq && r.hist.retainedAfter(since.Seq) {
		joined.History = r.hist.between(since.Seq, 0, r.hist.size)
		joined.Recovered = true
	} else {
		joined.History = r.hist.between(0, 0, wire.DefHistoryLimit)
	}
	s.send(req.Member, wire.AppendJoined(nil, &joined))
	return nil
}

func (s *Shard) leave(req *Request) *wire.Error {
	r := s.rooms[req.Room]
	if r == nil {
		return notJoined(req.Room)
	}
	user, ok := r.remove(req.Member, time.Now())
	if !ok {
		if !s.unpark(r, req.Member) {
			return notJoined(req.Room)
		}
		if !req.Quiet {
			s.send(req.Member, wire.AppendLeft(nil, req.Ref, r.name))
		}
		if len(r.members) == 0 && len(r.parked) == 0 {
			delete(s.rooms, r.name) // only a remote room parks joins
			s.metrics.idleRooms.Dec()
		}
		return nil
	}
	if s.cfg.Remote == nil { // with a bridge, presence comes back through it
		s.stopTyping(r, user)
		s.broadcastPresence(r, wire.AppendPresence(nil, r.name, user, wire.PresenceLeave), "")
	}
	if !req.Quiet {
		s.send(req.Member, wire.AppendLeft(nil, req.Ref, r.name))
	}
	if len(r.members) == 0 {
		s.metrics.rooms.Dec()
		if s.cfg.Remote != nil && len(r.parked) == 0 {
			// The room's state lives in the store; a copy here would go stale as soon as
			// the bridge stops listening to the room.
			delete(s.rooms, r.name)
			return nil
		}
		s.metrics.idleRooms.Inc()
	}
	return nil
}

func (s *Shard) publish(req *Request) *wire.Error {
	r, user, err := s.seatOf(req)
	if err != nil {
		return err
	}
	msg := wire.Message{Room: r.name, Seq: r.seq + 1, User: user, Text: req.Text, TS: time.Now().UnixMilli(), Ref: req.Ref}
	obj := wire.AppendMessage(make([]byte, 0, wire.MessageOverhead+len(msg.Room)+len(msg.User)+len(msg.Text)+len(msg.Ref)), &msg)
	s.fanout(r, Event{Kind: EventMessage, Epoch: r.epoch, Seq: msg.Seq, User: user, Obj: obj})
	return nil
}

// fanout delivers the next message of r to its members.
func (s *Shard) fanout(r *room, ev Event) {
	start := time.Now()
	s.stopTyping(r, ev.User)
	r.seq = ev.Seq
	r.hist.add(ev.Seq, ev.Obj)
	n := s.broadcast(r, ev.Obj, "")
	s.metrics.messages.Inc()
	s.metrics.deliveries.Add(float64(n))
	s.metrics.fanout.Observe(time.Since(start).Seconds())
}

func (s *Shard) typing(req *Request) *wire.Error {
	r, user, err := s.seatOf(req)
	if err != nil {
		return err
	}
	s.passTyping(r, user, req.On, nil)
	return nil
}

// passTyping tells the others in r that user started or stopped typing. A repeated start is
// passed on at most every TypingRefresh, and a stop only after a start. obj is the encoded
// typing object, or nil to encode it here.
func (s *Shard) passTyping(r *room, user string, on bool, obj []byte) {
	if on {
		now := time.Now()
		if last, ok := r.typing[user]; ok && now.Sub(last) < s.cfg.TypingRefresh {
			return
		}
		if r.typing == nil {
			r.typing = make(map[string]time.Time)
		}
		r.typing[user] = now
	} else {
		if _, ok := r.typing[user]; !ok {
			return
		}
		delete(r.typing, user)
	}
	if obj == nil {
		obj = wire.AppendTyping(nil, r.name, user, on)
	}
	s.broadcastBestEffort(r, obj, user)
}

// stopTyping tells the others that user stopped typing, if they were told it started.
func (s *Shard) stopTyping(r *room, user string) { s.passTyping(r, user, false, nil) }

func (s *Shard) users(req *Request) *wire.Error {
	r, _, err := s.seatOf(req)
	if err != nil {
		return err
	}
	s.send(req.Member, wire.AppendUsers(nil, req.Ref, r.name, r.users()))
	return nil
}

func (s *Shard) history(req *Request) *wire.Error {
	r, _, err := s.seatOf(req)
	if err != nil {
		return err
	}
	s.send(req.Member, wire.AppendHistory(nil, req.Ref, r.name, r.hist.between(0, req.Before, req.Limit)))
	return nil
}

func (s *Shard) busiest(limit int) []RoomInfo {
	var rooms []RoomInfo
	for _, r := range s.rooms {
		if len(r.members) > 0 {
			rooms = append(rooms, RoomInfo{Name: r.name, Members: len(r.members)})
		}
	}
	SortRooms(rooms)
	if len(rooms) > limit {
		rooms = rooms[:limit]
	}
	return rooms
}

// sweep forgets rooms that have been empty longer than IdleRoomTTL, and the longest-idle
// ones past MaxIdleRooms, so that memory follows the rooms in use.
func (s *Shard) sweep(now time.Time) {
	var idle []*room
	for name, r := range s.rooms {
		if len(r.members) > 0 {
			continue
		}
		if now.Sub(r.emptySince) >= s.cfg.IdleRoomTTL {
			delete(s.rooms, name)
			s.metrics.idleRooms.Dec()
			continue
		}
		idle = append(idle, r)
	}
	if excess := len(idle) - s.cfg.MaxIdleRooms; excess > 0 {
		slices.SortFunc(idle, func(a, b *room) int { return a.emptySince.Compare(b.emptySince) })
		for _, r := range idle[:excess] {
			delete(s.rooms, r.name)
			s.metrics.idleRooms.Dec()
		}
	}
}
