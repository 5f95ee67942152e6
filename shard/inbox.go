package shard

import (
	"context"
	"sync"
)

// inbox is a shard's bounded queue of commands: any goroutine puts, the shard's goroutine
// takes. A buffered channel of commands would do the same, but its buffer is a ring of its
// whole capacity, made at once and written all round as commands pass: once the ring has
// gone round, all of it is resident and scanned by every garbage collection however few
// commands wait (704 KiB a shard at 4,096 commands of 176 bytes). Here the commands wait in
// a list that grows only as deep as they queue up, and the bound is kept by a channel of
// empty tokens, which takes no memory for its capacity.
//
// Senders may run on any goroutine; take and done run on the shard's goroutine only. A
// command waits from its put until the shard, having taken it, begins to handle it (done).
type inbox struct {
	// Static after construction.

	// slots holds a token for each command that waits: its capacity is the inbox's, and a
	// full one makes put wait. Its tokens take no memory.
	slots chan struct{}
	// ready holds a token once commands wait, for the shard to wait on.
	ready chan struct{}

	mu      sync.Mutex
	waiting []command // guarded by mu
}

func newInbox(size int) *inbox {
	return &inbox{slots: make(chan struct{}, size), ready: make(chan struct{}, 1)}
}

// put queues cmd, waiting for room until ctx is done or stop is closed.
func (q *inbox) put(ctx context.Context, stop <-chan struct{}, cmd command) error {
	select {
	case q.slots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-stop:
		return ErrStopped
	}
	q.push(cmd)
	return nil
}

// tryPut queues cmd if there is room, and reports whether there was.
func (q *inbox) tryPut(cmd command) bool {
	select {
	case q.slots <- struct{}{}:
		q.push(cmd)
		return true
	default:
		return false
	}
}

// push appends cmd, whose slot the caller holds, and wakes the shard when it is the first
// to wait: after that, the shard takes whatever came since with it.
func (q *inbox) push(cmd command) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.waiting = append(q.waiting, cmd)
	if len(q.waiting) == 1 {
		// Under the lock: a sender stopped between its append and this would leave the
		// commands after it waiting unseen.
		select {
		case q.ready <- struct{}{}:
		default: // a token waits already
		}
	}
}

// maxIdleList is the longest list the inbox and the shard keep once the shard has caught up:
// the lists of a burst, which may hold thousands of commands, then go to the garbage collector.
const maxIdleList = 1024

// take hands the shard every command waiting, in the order they were put, or nil when none
// waits; senders then append to spare, emptied, which must never be that list already. A
// busy shard trades the same two lists back and forth.
func (q *inbox) take(spare []command) []command {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.waiting) == 0 {
		return nil
	}
	cmds := q.waiting
	q.waiting = spare[:0]
	return cmds
}

// letGo drops the list senders append to when nothing waits in it and a burst made it longer
// than maxIdleList.
func (q *inbox) letGo() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.waiting) == 0 && cap(q.waiting) > maxIdleList {
		q.waiting = nil
	}
}

// done frees the slot of a command the shard has taken and is about to handle.
func (q *inbox) done() { <-q.slots }

// depth is how many commands wait.
func (q *inbox) depth() int { return len(q.slots) }
