package shard

import (
	"crypto/rand"
	"encoding/base64"
	"slices"
	"time"
)

// room is one chat room. It belongs to its shard's goroutine alone.
type room struct {
	name  string
	epoch string
	seq   uint64 // newest seq in this epoch, 0 before the first message
	hist  history

	// members is a slice, not a map, because fan-out walks it for every message.
	members []seat
	index   map[Member]int // position of a member in members
	// names is the members' user names, unique in the room and sorted: joined's and users'
	// list as it stands, kept by a binary search and a move at each seat and leave instead of
	// a sort at each join.
	names []string

	// typing holds the users of this room who said they are typing, with the time their
	// last typing-on was passed on, so a typist's repeats are passed on at a bounded rate.
	typing map[string]time.Time

	emptySince time.Time // when the last member left; zero while it has members

	// With a bridge between hosts, the room mirrors a room ordered elsewhere.
	synced    bool      // epoch, seq and hist hold the room's state; always true without a bridge
	syncDue   time.Time // when an unanswered Remote.Sync is asked again; zero when none is pending
	syncAgain bool      // another sync was wanted while one was on its way
	pending   []Event   // messages past seq+1, oldest first, waiting for the gap to fill
	parked    []Request // joins waiting for the room's first state
	// roster holds, with a bridge, the room's users on every host as the members here were
	// told them, sorted: joined's users, then presence. Presence that would not change it is
	// not passed on, and a roster read again from the store is passed on as the difference,
	// so presence lost on the way (a full inbox, a subscription that came late) is made good.
	// Sorted, it is joined's users as it stands, and a change costs a search and a move,
	// not a sort of the whole room on every join. Nil until the first member here is seated,
	// and again after a reset.
	roster []string
}

type seat struct {
	member Member
	user   string
}

func newRoom(name string, historySize int, local bool) *room {
	r := &room{
		name:   name,
		hist:   newHistory(historySize),
		index:  make(map[Member]int),
		synced: local,
	}
	if local {
		r.epoch = newEpoch()
	}
	return r
}

// newEpoch names one lifetime of a room's sequence numbers: a room that is created anew (after
// a restart, or after it was evicted while empty) starts another epoch, so a client's old
// seq cannot be mistaken for a position in the new one.
func newEpoch() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never returns an error
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func (r *room) userOf(m Member) (string, bool) {
	i, ok := r.index[m]
	if !ok {
		return "", false
	}
	return r.members[i].user, true
}

func (r *room) add(m Member, user string) {
	r.index[m] = len(r.members)
	r.members = append(r.members, seat{member: m, user: user})
	setSorted(&r.names, user, true)
	r.emptySince = time.Time{}
}

// remove takes m out of the room and returns its user name.
func (r *room) remove(m Member, now time.Time) (string, bool) {
	i, ok := r.index[m]
	if !ok {
		return "", false
	}
	user := r.members[i].user
	last := len(r.members) - 1
	if i != last {
		r.members[i] = r.members[last]
		r.index[r.members[i].member] = i
	}
	r.members[last] = seat{}
	r.members = r.members[:last]
	delete(r.index, m)
	setSorted(&r.names, user, false)
	if len(r.members) == 0 {
		r.emptySince = now
		r.members, r.names = nil, nil // an empty room keeps only its history
	}
	return user, true
}

// users returns the sorted user names of the room. The slice is the room's: encode it before
// the room changes.
func (r *room) users() []string { return r.names }

// has reports whether a member of the room has the user name.
func (r *room) has(user string) bool {
	_, found := slices.BinarySearch(r.names, user)
	return found
}

// setInRoster puts user in r's roster (in) or takes it out, and reports whether that changed
// the roster.
func (r *room) setInRoster(user string, in bool) bool { return setSorted(&r.roster, user, in) }

// setSorted puts name in the sorted list (in) or takes it out, by a binary search and a move,
// and reports whether that changed the list.
func setSorted(list *[]string, name string, in bool) bool {
	i, was := slices.BinarySearch(*list, name)
	switch {
	case was == in:
		return false
	case in:
		*list = slices.Insert(*list, i, name)
	default:
		*list = slices.Delete(*list, i, i+1)
	}
	return true
}
