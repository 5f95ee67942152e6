package transport

import "sync"

// outbox is a session's bounded queue of encoded objects. Shards and the session's reader
// add; the session's writer takes everything at once. Adding never blocks: an add to a full
// outbox marks it overflowed instead, and the session then closes as a slow consumer.
type outbox struct {
	// Static after construction.
	limit int
	wake  chan struct{} // capacity 1: a pending wake-up for a writer that waits

	// Guarded by mu.
	mu         sync.Mutex
	items      [][]byte
	overflowed bool
	closed     bool
	dropped    int  // best-effort objects dropped, not yet counted in metrics
	deferred   bool // the queue holds only objects sent later: only a late wake-up was asked for (meaningless when empty: the next add sets it)
}

// sendMode is how an object goes into an outbox.
type sendMode uint8

const (
	// sendNow objects wake the writer (at the end of the shard's batch).
	sendNow sendMode = iota
	// sendBestEffort objects do too, but are dropped when the outbox is more than half full.
	sendBestEffort
	// sendLater objects may wait for the shard's late flush (shard.Config.PresenceDelay);
	// anything else added meanwhile wakes the writer for all of them.
	sendLater
)

func newOutbox(limit int) *outbox {
	return &outbox{limit: limit, wake: make(chan struct{}, 1)}
}

// add queues obj without waking the writer, and reports whether the writer needs waking:
// the outbox was empty, or held only objects sent later (or it overflowed, which the writer
// must act on). For a sendLater object, wake asks for a late flush: the outbox was empty, or
// it overflowed (the slow consumer then closes at the late flush, within PresenceDelay). add
// never blocks.
func (o *outbox) add(obj []byte, mode sendMode) (wake bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	switch {
	case o.closed || o.overflowed:
		return false
	case mode == sendBestEffort && len(o.items) > o.limit/2:
		o.dropped++
		return false
	case len(o.items) >= o.limit:
		o.overflowed = true
		return true
	}
	o.items = append(o.items, obj)
	if mode == sendLater {
		o.deferred = o.deferred || len(o.items) == 1
		return len(o.items) == 1
	}
	wake = len(o.items) == 1 || o.deferred
	o.deferred = false
	return wake
}

func (o *outbox) signal() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// take moves every queued object to the end of dst and reports whether the outbox overflowed
// and how many best-effort objects were dropped since the last take. The caller passes its
// previous batch, emptied, so the two slices trade places and a busy session allocates nothing.
func (o *outbox) take(dst [][]byte) ([][]byte, bool, int) {
	o.mu.Lock()
	items := o.items
	o.items = dst[:0]
	overflowed, dropped := o.overflowed, o.dropped
	o.dropped = 0
	o.mu.Unlock()
	return items, overflowed, dropped
}

// pending reports whether a writer has work: objects queued, or an overflow to act on.
func (o *outbox) pending() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.items) > 0 || (o.overflowed && !o.closed)
}

// quietQueue is the capacity of a queue's slice that an idle member may keep (384 bytes).
const quietQueue = 16

// shrink lets go of an empty queue's slice when it is larger than a quiet member needs: the
// retiring writer calls it, so that an idle session keeps no burst's slice.
func (o *outbox) shrink() {
	o.mu.Lock()
	if len(o.items) == 0 && cap(o.items) > quietQueue {
		o.items = nil
	}
	o.mu.Unlock()
}

// close discards what is queued and makes later pushes no-ops.
func (o *outbox) close() {
	o.mu.Lock()
	o.closed = true
	clear(o.items)
	o.items = nil
	o.mu.Unlock()
}
