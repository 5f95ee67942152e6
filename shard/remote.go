package shard

import (
	"context"
	"slices"
	"time"

	"github.com/shardchat/shardchat/transport/wire"
)

// Remote is what a shard needs from a bridge that orders messages in a store shared by many
// hosts. Its methods are called from the shard goroutine and must not block.
type Remote interface {
	// Sync asks for the room's epoch, its newest seq, and the messages after seq after, at
	// most History of them (the newest History when after is 0). The answer comes back
	// through Shard.Synced; when it does not come, the shard asks again.
	Sync(room string, after uint64)
	// WantRoster asks for the room's roster, every user name held in the store, to come
	// back through Shard.TryRoster in order with the room's presence: the shard's members may
	// have missed some (presence published before the room's subscription here started, or
	// while its joins waited for the room's state).
	WantRoster(room string)
}

// EventKind says what a bridge hands a shard.
type EventKind uint8

// The kinds of Event.
const (
	EventMessage  EventKind = iota + 1 // Epoch, Seq, User, Obj
	EventTyping                        // User, On, Obj
	EventPresence                      // User, On (true: join, false: leave), Obj
)

// Event is a room event that came through the bridge, encoded once by the host it came from.
type Event struct {
	Kind  EventKind
	Epoch string
	Seq   uint64
	User  string
	On    bool
	Obj   []byte
}

// RoomState is the answer to Remote.Sync.
type RoomState struct {
	Epoch    string
	Seq      uint64  // the newest seq in the store
	After    uint64  // the after of the Sync this answers
	Messages []Event // the messages asked for, oldest first
	// Err says the store could not be read; joins waiting for the room are refused with
	// unavailable, and the shard asks again later.
	Err error
}

// syncRetry is how long an unanswered Sync waits before it is asked again.
const syncRetry = 3 * time.Second

// syncRetryAfterError is how long a Sync the store could not answer waits to be asked again.
const syncRetryAfterError = time.Second

// maxPending bounds the messages a room holds while it waits for a gap to fill; past it,
// newer messages are left to the next sync, which reads them from the store.
const maxPending = 4096

// TryDeliver hands the shard an event of room without blocking, and reports whether it was
// taken. An event that was taken is the shard's: the caller must not change it. An event
// that was not taken leaves a gap that the caller must have the shard fill (TryResync) once
// the shard has room again.
//
// The event goes by pointer, which keeps the inbox's commands small (see command): a caller
// with several events hands in pointers into one slice, one allocation for them all.
func (s *Shard) TryDeliver(room string, ev *Event) bool {
	return s.inbox.tryPut(command{op: opDeliver, Request: Request{Room: room}, event: ev})
}

// TryResync asks the shard, without blocking, to read what room may have missed from the
// store: after a subscription came back, or after TryDeliver failed. It reports whether the
// request was taken.
func (s *Shard) TryResync(room string) bool {
	return s.inbox.tryPut(command{op: opResync, Request: Request{Room: room}})
}

// TryRoster hands the shard, without blocking, the users of room on every host as the store
// holds them, read again because some host may have missed presence of the room (see
// Remote.WantRoster); the shard tells its members the difference. users must come in the
// order of the room's events: the bridge reads them in the same step as it publishes them on
// the room's channel. It reports whether the roster was taken.
func (s *Shard) TryRoster(room string, users []string) bool {
	return s.inbox.tryPut(command{op: opRoster, Request: Request{Room: room, Users: users}})
}

// Synced hands the shard the answer to its Remote.Sync for room.
func (s *Shard) Synced(ctx context.Context, room string, st RoomState) error {
	return s.inbox.put(ctx, s.done, command{op: opSynced, Request: Request{Room: room}, state: &st})
}

// unpark takes member's parked join out of r, answering it not_joined, and reports whether
// there was one: a leave (the session ended while its join waited) cancels the join.
func (s *Shard) unpark(r *room, member Member) bool {
	i := slices.IndexFunc(r.parked, func(p Request) bool { return p.Member == member })
	if i < 0 {
		return false
	}
	reply(r.parked[i].Reply, notJoined(r.name))
	r.parked = slices.Delete(r.parked, i, i+1)
	return true
}

// park holds a join until the room's state has arrived from the store, which answers it.
func (s *Shard) park(r *room, req *Request) (parked bool, err *wire.Error) {
	for _, p := range r.parked {
		if p.User == req.User && p.Member != req.Member {
			return false, wire.Errorf(wire.CodeNameTaken, "%s is already in room %s", req.User, req.Room)
		}
	}
	r.parked = append(r.parked, *req)
	s.requestSync(r, 0)
	return true, nil
}

func (s *Shard) requestSync(r *room, after uint64) {
	if !r.syncDue.IsZero() {
		return // one is on its way, and answers this asker too
	}
	r.syncDue = time.Now().Add(syncRetry)
	r.syncAgain = false
	s.cfg.Remote.Sync(r.name, after)
}

// resync reads what a room may have missed (a subscription came back, or a hand-off
// overflowed), or its whole state when it has none yet.
func (s *Shard) resync(r *room) {
	after := uint64(0)
	if r.synced {
		after = r.seq
	}
	s.requestSync(r, after)
}

// resyncAsked reads what room r may have missed, as TryResync asked: its subscription was
// lost and is back, or an event for it could not be handed over. r may be nil (the room is
// gone).
func (s *Shard) resyncAsked(r *room) {
	switch {
	case r == nil || !r.synced && len(r.parked) == 0:
		return // nothing synced, nor waiting for a sync
	case !r.syncDue.IsZero():
		// A sync is in flight or due: it may read the store from before what was missed
		// (before the subscription came back, or the event was dropped): ask again when it
		// answers.
		r.syncAgain = true
	default:
		s.resync(r)
	}
}

// retrySyncs asks again for the syncs that went unanswered.
func (s *Shard) retrySyncs(now time.Time) {
	for _, r := range s.rooms {
		if !r.syncDue.IsZero() && !now.Before(r.syncDue) {
			r.syncDue = time.Time{}
			s.resync(r)
		}
	}
}

func (s *Shard) deliver(name string, ev Event) {
	r := s.rooms[name]
	if r == nil || (len(r.members) == 0 && len(r.parked) == 0) {
		return // nobody here listens to this room
	}
	switch ev.Kind {
	case EventMessage:
		s.deliverMessage(r, ev)
	case EventTyping:
		if r.synced {
			s.passTyping(r, ev.User, ev.On, ev.Obj)
		}
	case EventPresence:
		if !r.synced || len(r.members) == 0 || r.roster == nil {
			// Joins waiting for the room get the user list with their joined; members
			// seated before a reset are on their way out.
			return
		}
		if !ev.On {
			s.stopTyping(r, ev.User)
		}
		if r.setInRoster(ev.User, ev.On) { // else the members here know it already
			s.broadcastPresence(r, ev.Obj, ev.User)
		}
	}
}

// enterRoster puts the user that req seats in r into the roster. The first member here takes
// the roster from its joined's users, and asks for the store's to come after it. A later one
// that presence has not brought yet is announced to the others here now; its presence from
// the bridge then changes nothing.
func (s *Shard) enterRoster(r *room, req *Request, first bool) {
	if first || r.roster == nil {
		roster := append(make([]string, 0, len(req.Users)+1), req.Users...)
		roster = append(roster, req.User)
		slices.Sort(roster)
		r.roster = slices.Compact(roster)
		// The list is the claim's: presence published after it and before the room's
		// subscription here, or while the room waited for its state, never came.
		s.cfg.Remote.WantRoster(r.name)
		return
	}
	if r.setInRoster(req.User, true) {
		s.broadcastPresence(r, wire.AppendPresence(nil, r.name, req.User, wire.PresenceJoin), req.User)
	}
}

// reconcileRoster tells r's members how users, the room's users read again from the store,
// differ from what they were told, and takes users as r's roster. users is the shard's to
// sort. r may be nil (the room is gone).
func (s *Shard) reconcileRoster(r *room, users []string) {
	if r == nil || !r.synced || len(r.members) == 0 || r.roster == nil {
		return // nobody here to tell (or only members on their way out after a reset)
	}
	slices.Sort(users)
	users = slices.Compact(users)
	// Both lists are sorted: one walk through them finds what came and what went.
	next := make([]string, 0, len(users))
	var came, gone []string
	old := r.roster
	for len(old) > 0 || len(users) > 0 {
		switch {
		case len(users) == 0 || len(old) > 0 && old[0] < users[0]:
			// A member seated here holds its name in the store: a roster without it was
			// read before its claim, and its own release announces its leave.
			if r.has(old[0]) {
				next = append(next, old[0])
			} else {
				gone = append(gone, old[0])
			}
			old = old[1:]
		case len(old) == 0 || users[0] < old[0]:
			next = append(next, users[0])
			came = append(came, users[0])
			users = users[1:]
		default:
			next = append(next, old[0])
			old, users = old[1:], users[1:]
		}
	}
	r.roster = next
	for _, u := range came {
		s.broadcastPresence(r, wire.AppendPresence(nil, r.name, u, wire.PresenceJoin), u)
	}
	for _, u := range gone {
		s.stopTyping(r, u)
		s.broadcastPresence(r, wire.AppendPresence(nil, r.name, u, wire.PresenceLeave), u)
	}
}

func (s *Shard) deliverMessage(r *room, ev Event) {
	if !r.synced {
		r.addPending(ev)
		return
	}
	if ev.Epoch != r.epoch {
		s.reset(r, "the room's history was reset")
		r.addPending(ev)
		return
	}
	switch {
	case ev.Seq <= r.seq:
		return // delivered already, or part of the state the room started from
	case ev.Seq == r.seq+1:
		s.fanout(r, ev)
		s.drainPending(r)
	default:
		r.addPending(ev)
		s.requestSync(r, r.seq)
	}
}

// drainPending delivers the pending messages that now follow on, and asks for a sync when a
// gap remains.
func (s *Shard) drainPending(r *room) {
	i := 0
	for ; i < len(r.pending); i++ {
		ev := r.pending[i]
		if ev.Seq <= r.seq || ev.Epoch != r.epoch {
			continue // delivered already, or of an epoch the room left behind
		}
		if ev.Seq != r.seq+1 {
			break
		}
		s.fanout(r, ev)
	}
	r.pending = slices.Delete(r.pending, 0, i)
	if len(r.pending) > 0 {
		s.requestSync(r, r.seq)
	}
}

func (r *room) addPending(ev Event) {
	i, found := slices.BinarySearchFunc(r.pending, ev.Seq, func(e Event, seq uint64) int {
		switch {
		case e.Seq < seq:
			return -1
		case e.Seq > seq:
			return 1
		}
		return 0
	})
	if found || (len(r.pending) >= maxPending && i == len(r.pending)) {
		return
	}
	r.pending = slices.Insert(r.pending, i, ev)
	if len(r.pending) > maxPending {
		r.pending = r.pending[:maxPending]
	}
}

// reset forgets r's state and closes its members' connections: what they have seen can no
// longer be continued (the store lost the room, or the messages they missed). They reconnect
// and join again with since, and learn that recovery was not possible.
func (s *Shard) reset(r *room, reason string) {
	s.log.Warn("room state reset; closing its members", "room", r.name, "reason", reason, "members", len(r.members))
	for _, seat := range r.members {
		seat.member.Kick(wire.CloseInternal, reason)
	}
	r.synced = false
	r.epoch, r.seq = "", 0
	r.hist = newHistory(r.hist.size)
	r.typing = nil
	r.pending = nil
	r.roster = nil // the next seat takes it from its claim, and asks for the store's
	r.syncDue = time.Time{}
	s.requestSync(r, 0)
}

func (s *Shard) synced(name string, st *RoomState) {
	r := s.rooms[name]
	if r == nil {
		return
	}
	r.syncDue = time.Time{}
	if st.Err != nil {
		for _, req := range r.parked {
			reply(req.Reply, wire.Errorf(wire.CodeUnavailable, "cannot reach the cluster store; try again"))
		}
		r.parked = nil
		if len(r.members) == 0 {
			delete(s.rooms, name)
			s.metrics.idleRooms.Dec()
			return
		}
		// Ask again soon: a gap may wait for this answer, and in a quiet room no later
		// message would reveal it.
		r.syncDue = time.Now().Add(syncRetryAfterError)
		return
	}
	switch {
	case !r.synced:
		s.baseline(r, st)
	case st.Epoch != r.epoch:
		s.reset(r, "the room's history was reset")
		return // the reset asked for a fresh state
	case st.Seq < st.After:
		// The store went back in time (restored from an older copy): the seqs to come
		// would look like ones already delivered and vanish. (Compared with what the room
		// had when it asked: messages delivered since make any answer look old.)
		s.reset(r, "the cluster store lost the room's newest messages")
		return
	default:
		for _, ev := range st.Messages {
			if ev.Seq <= r.seq {
				continue
			}
			if ev.Seq != r.seq+1 {
				s.reset(r, "messages were missed and are no longer kept")
				return
			}
			s.fanout(r, ev)
		}
	}
	s.drainPending(r)

	parked := r.parked
	r.parked = nil
	for i := range parked {
		req := &parked[i]
		err := s.seat(r, req)
		if err != nil {
			reply(req.Reply, err)
			continue
		}
		reply(req.Reply, nil)
	}
	if len(r.members) == 0 {
		delete(s.rooms, name)
		s.metrics.idleRooms.Dec()
		return
	}
	if r.syncAgain {
		s.resync(r)
	}
}

// baseline starts r from the store's state.
func (s *Shard) baseline(r *room, st *RoomState) {
	r.epoch, r.seq = st.Epoch, st.Seq
	r.hist = newHistory(r.hist.size)
	for _, ev := range st.Messages {
		r.hist.add(ev.Seq, ev.Obj)
	}
	r.synced = true
}
