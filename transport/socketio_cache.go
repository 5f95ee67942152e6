package transport

import (
	"sync"
	"unsafe"
)

// derivedCache remembers, for the objects a shard fans out, their Socket.IO form: a shard
// hands the same bytes to every member of a room, so the first Socket.IO member to get them
// converts them and every other one reuses the result. A message is thus encoded once for each
// protocol however many members receive it, and the shards know nothing of Socket.IO.
//
// Entries are keyed by the address of the object's bytes and keep those bytes alive, so an
// address cannot be reused by another object while its entry is here. The cache holds the
// most recent objects of each stripe; stripes keep shards from contending. It is safe for
// concurrent use.
type derivedCache struct {
	stripes [derivedStripes]derivedStripe
}

const (
	derivedStripes   = 16
	derivedPerStripe = 256
)

type derivedStripe struct {
	mu    sync.Mutex
	items map[*byte]*derived
	ring  [derivedPerStripe]*byte // insertion order, for eviction
	next  int
}

// derived is what a broadcast object becomes for Socket.IO members.
type derived struct {
	src   []byte // keeps the key's memory alive
	frame []byte // the Engine.IO frame of the event
	kind  string // the native type: message, typing or presence
	room  string
	user  string
	ref   string
	seq   uint64
	join  bool // presence: a join

	// Presence: the room's users after it, and their users event. Every member of the room
	// gets presence in the shard's order, so the list after it is the same for all: the
	// first member to deliver it works it out from its own list, the others take it.
	usersOnce  sync.Once
	users      []string // shared by the members' lists: never changed in place
	usersFrame []byte
}

// newDerivedCache returns an empty cache. Its stripes make their maps at their first entry:
// a server that no Socket.IO client uses holds none (16 maps of 256 entries are 157 KB of
// heap, which the collector's goal counts twice).
func newDerivedCache() *derivedCache { return &derivedCache{} }

// get returns obj's derived form, made by convert the first time.
func (c *derivedCache) get(obj []byte, convert func([]byte) (*derived, error)) (*derived, error) {
	if len(obj) == 0 {
		return convert(obj)
	}
	key := unsafe.SliceData(obj)
	st := &c.stripes[(uintptr(unsafe.Pointer(key))>>4)%derivedStripes]
	st.mu.Lock()
	if d, ok := st.items[key]; ok && len(d.src) == len(obj) {
		st.mu.Unlock()
		return d, nil
	}
	st.mu.Unlock()

	d, err := convert(obj) // outside the lock: members of other rooms need not wait
	if err != nil {
		return nil, err
	}
	d.src = obj
	st.mu.Lock()
	if st.items == nil {
		st.items = make(map[*byte]*derived, derivedPerStripe)
	}
	if old := st.ring[st.next]; old != nil {
		delete(st.items, old)
	}
	st.ring[st.next] = key
	st.next = (st.next + 1) % derivedPerStripe
	st.items[key] = d
	st.mu.Unlock()
	return d, nil
}
