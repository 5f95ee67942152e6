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
			if d := q.depth(); d > size {
				t.Fatalf("%d commands in an inbox of %d", d, size)
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
