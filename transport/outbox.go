package transport

import "sync"

// outbox is a session's bounded queue of encoded objects. Shards and the session's reader
// push; the session's writer takes everything at once. Pushing never blocks: a push to a full
// outbox marks it overflowed instead, and the session then closes as a slow consumer.
type outbox struct {
	// Static after construction.
	limit int
	wake  chan struct{} // capacity 1: a pending wake-up for the writer

	// Guarded by mu.
	mu         sync.Mutex
	items      [][]byte
	overflowed bool
	closed     bool
}

func newOutbox(limit int) *outbox {
	return &outbox{limit: limit, wake: make(chan struct{}, 1)}
}

// push queues obj. It returns false when the outbox was full, which marks it overflowed,
// and true otherwise, also after the outbox was closed (obj is then discarded).
func (o *outbox) push(obj []byte) bool {
	o.mu.Lock()
	if o.closed || o.overflowed {
		o.mu.Unlock()
		return true
	}
	if len(o.items) >= o.limit {
		o.overflowed = true
		o.mu.Unlock()
		o.signal()
		return false
	}
	o.items = append(o.items, obj)
	n := len(o.items)
	o.mu.Unlock()
	if n == 1 {
		o.signal() // the writer was idle or is about to take; later pushes ride this wake-up
	}
	return true
}

// pushBestEffort queues obj unless the outbox is more than half full, and reports whether it did.
func (o *outbox) pushBestEffort(obj []byte) bool {
	o.mu.Lock()
	if o.closed || o.overflowed || len(o.items) > o.limit/2 {
		o.mu.Unlock()
		return false
	}
	o.items = append(o.items, obj)
	n := len(o.items)
	o.mu.Unlock()
	if n == 1 {
		o.signal()
	}
	return true
}

func (o *outbox) signal() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// take moves every queued object to the end of dst and reports whether the outbox overflowed.
// The caller passes its previous batch, emptied, so the two slices trade places and a busy
// session allocates nothing.
func (o *outbox) take(dst [][]byte) ([][]byte, bool) {
	o.mu.Lock()
	items := o.items
	o.items = dst[:0]
	overflowed := o.overflowed
	o.mu.Unlock()
	return items, overflowed
}

// close discards what is queued and makes later pushes no-ops.
func (o *outbox) close() {
	o.mu.Lock()
	o.closed = true
	clear(o.items)
	o.items = nil
	o.mu.Unlock()
}
