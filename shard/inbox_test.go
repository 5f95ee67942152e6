package shard

import (
	"context"
	"runtime"
	"sync"
	"testing"
	"time"
)

// TestInbox: what many senders put, waiting for room or trying, all comes out, each sender's
// in the order it put it; never more than the inbox's size wait; every
// command that waits has woken the taker; and a take with nothing waiting changes nothing
// (the list it was offered does not become the one senders append to).
func TestInbox(t *testing.T) {
	t.Parallel()
	const senders, each, size = 8, 3000, 16
	q := newInbox(size)
	stop := make(chan struct{})
	defer close(stop)
	var wg sync.WaitGroup
	for sender := range senders {
		wg.Go(func() {
			for n := range each {
				cmd := command{Request: Request{Before: uint64(sender), Limit: n}}
				if n%2 == 0 {
					if err := q.put(context.Background(), stop, cmd); err != nil {
						t.Error(err)
						return
					}
					continue
				}
				for !q.tryPut(cmd) {
					runtime.Gosched()
				}
			}
		})
	}
	next := make([]int, senders)
	var spare []command
	for got := 0; got < senders*each; {
		select {
		case <-q.ready:
		case <-time.After(10 * time.Second):
			t.Fatalf("commands wait and nothing woke the taker (%d of %d taken)", got, senders*each)
		}
		for {
			cmds := q.take(spare)
			if cmds == nil {
				break
			}
			if len(cmds) > size { // each still holds its slot
				t.Fatalf("took %d commands from an inbox of %d", len(cmds), size)
			}
			for i, cmd := range cmds {
				if s := cmd.Before; cmd.Limit != next[s] {
					t.Fatalf("sender %d: command %d came after %d", s, cmd.Limit, next[s]-1)
				}
				next[cmd.Before]++
				cmds[i] = command{}
			}
			got += len(cmds)
			for range cmds {
				q.done()
			}
			spare = cmds[:0]
		}
	}
	wg.Wait()
	if q.depth() != 0 || q.take(nil) != nil {
		t.Fatalf("after every command was taken: depth %d", q.depth())
	}
}

// TestInboxPutGivesUp: a sender that waits for room in a full inbox gives up when its context
// ends or the shard stops, and puts nothing.
func TestInboxPutGivesUp(t *testing.T) {
	t.Parallel()
	q := newInbox(1)
	if !q.tryPut(command{}) || q.tryPut(command{}) {
		t.Fatal("an inbox of one took other than one command")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := q.put(ctx, nil, command{}); err != context.DeadlineExceeded {
		t.Fatalf("put into a full inbox until the deadline = %v", err)
	}
	stopped := make(chan struct{})
	close(stopped)
	if err := q.put(context.Background(), stopped, command{}); err != ErrStopped {
		t.Fatalf("put into a full inbox of a stopped shard = %v", err)
	}
	if cmds := q.take(nil); len(cmds) != 1 {
		t.Fatalf("took %d commands, want the one put", len(cmds))
	}
}

// TestInboxLetsGoAfterABurst: the lists that held a burst of commands go once the shard has
// caught up, and are not kept (and scanned by every collection) while it idles.
func TestInboxLetsGoAfterABurst(t *testing.T) {
	t.Parallel()
	s, stop := run(Config{IdleRoomTTL: 20 * time.Millisecond}) // a tick every 10 ms
	t.Cleanup(stop)                                            // on a failure before the stop below; a second stop does nothing
	// The joined reply stalls the shard while the burst queues up behind it.
	g := &gate{entered: make(chan struct{}), open: make(chan struct{})}
	joined := make(chan error, 1)
	go func() {
		joined <- s.Join(context.Background(), Request{Member: g, Room: "r", User: "g", Reply: make(chan error, 1)})
	}()
	<-g.entered
	const burst = 3 * maxIdleList
	for range burst {
		if err := s.Typing(context.Background(), Request{Member: g, Room: "r", On: true}); err != nil {
			t.Fatal(err)
		}
	}
	close(g.open)
	if err := <-joined; err != nil {
		t.Fatal(err)
	}
	// Nothing comes after the burst: the shard idles, and only its ticker runs.
	for s.inbox.depth() > 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // ticks
	stop()
	s.inbox.mu.Lock()
	waiting := cap(s.inbox.waiting)
	s.inbox.mu.Unlock()
	if cap(s.spare) > maxIdleList || waiting > maxIdleList {
		t.Fatalf("after a burst of %d, the shard keeps lists of %d and %d commands", burst, cap(s.spare), waiting)
	}
}

// TestInboxLetGo: letGo drops the list senders append to only once a burst made it long and
// nothing waits in it.
func TestInboxLetGo(t *testing.T) {
	t.Parallel()
	const burst = 3 * maxIdleList
	q := newInbox(burst)
	for range burst {
		if !q.tryPut(command{}) {
			t.Fatal("a full inbox")
		}
	}
	q.letGo()
	if q.depth() != burst || len(q.waiting) != burst {
		t.Fatalf("letGo with %d commands waiting left %d", burst, len(q.waiting))
	}
	long := q.take(nil)
	for range long {
		q.done()
	}
	if !q.tryPut(command{}) || q.take(long) == nil { // senders now append to long's array
		t.Fatal("no command to take")
	}
	q.done()
	q.letGo()
	q.mu.Lock()
	defer q.mu.Unlock()
	if cap(q.waiting) > maxIdleList {
		t.Fatalf("an idle inbox keeps a list of %d commands", cap(q.waiting))
	}
}
