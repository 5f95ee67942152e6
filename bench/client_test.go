package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/shardchat/shardchat/transport/wire"
)

// TestServerBucket follows the sender's bucket through bursts, waits and refusals: it lets a
// message go when the server's bucket (at rateMargin of its rate) would take it, and not before.
func TestServerBucket(t *testing.T) {
	t.Parallel()
	rate := 10 * rateMargin
	interval := time.Duration(float64(time.Second) / rate) // a token at 10/s, less the margin
	type step struct {
		at    time.Duration // since the start
		empty bool          // the server refused a message: its bucket is empty
		want  time.Duration // the wait; 0 sends the message
	}
	tests := []struct {
		name   string
		limits wire.Limits
		steps  []step
	}{
		{"burst, then the rate", wire.Limits{Rate: 10, Burst: 3}, []step{
			{at: 0}, {at: 0}, {at: 0},
			{at: 0, want: interval},
			{at: interval / 2, want: interval - interval/2}, // the same token, reserved: no second one
			{at: interval},
			{at: interval, want: interval},
		}},
		{"refilled while idle, up to the burst", wire.Limits{Rate: 10, Burst: 2}, []step{
			{at: 0}, {at: 0},
			{at: time.Minute}, {at: time.Minute},
			{at: time.Minute, want: interval},
		}},
		{"a refusal empties it", wire.Limits{Rate: 10, Burst: 3}, []step{
			{at: 0},
			{at: time.Millisecond, empty: true},
			{at: time.Millisecond, want: interval},
			{at: time.Millisecond + interval},
		}},
		{"a refusal drops the reserved token", wire.Limits{Rate: 10, Burst: 1}, []step{
			{at: 0},
			{at: 0, want: interval},
			{at: interval / 2, empty: true},
			{at: interval / 2, want: interval},
		}},
		{"no limit announced", wire.Limits{Rate: 0, Burst: 1}, []step{
			{at: 0}, {at: 0}, {at: 0},
			{at: 0, empty: true},
			{at: 0}, {at: 0},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
			b := newServerBucket(tt.limits)
			for i, s := range tt.steps {
				now := start.Add(s.at)
				if s.empty {
					b.empty(now)
					continue
				}
				got := b.wait(now)
				if d := got - s.want; d < -time.Microsecond || d > time.Microsecond {
					t.Fatalf("step %d at %v: wait %v, want %v", i, s.at, got, s.want)
				}
				if got == 0 {
					b.sent()
				}
			}
		})
	}
}

// TestSendAllocs holds what a sender does per message, building it and taking its token,
// to no allocation.
func TestSendAllocs(t *testing.T) {
	prefix := messagePrefix("bench-0000-1", fillerText(64))
	buf := make([]byte, 0, len(prefix)+48)
	for _, limits := range []wire.Limits{{Rate: 1e9, Burst: 1 << 30}, {}} {
		b := newServerBucket(limits)
		now := time.Now()
		allocs := testing.AllocsPerRun(1000, func() {
			now = now.Add(time.Microsecond)
			if b.wait(now) != 0 {
				t.Fatal("no token")
			}
			b.sent()
			buf = appendRef(append(buf[:0], prefix...), 7, now.UnixNano())
			buf = append(buf, `"}`...)
		})
		if allocs != 0 {
			t.Errorf("limits %+v: %v allocations a message, want 0", limits, allocs)
		}
	}
}

func TestShortError(t *testing.T) {
	t.Parallel()
	local := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 38098}
	server := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 3000}
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"reset, with the local port", fmt.Errorf("failed to get reader: %w", &net.OpError{Op: "read", Net: "tcp", Source: local, Addr: server, Err: syscall.ECONNRESET}), "read tcp 127.0.0.1:3000: connection reset by peer"},
		{"refused dial", &net.OpError{Op: "dial", Net: "tcp", Addr: server, Err: syscall.ECONNREFUSED}, "dial tcp 127.0.0.1:3000: connection refused"},
		{"deadline", fmt.Errorf("upgrade: %w", context.DeadlineExceeded), "timed out"},
		{"close", websocket.CloseError{Code: 4008, Reason: "slow"}, "closed with 4008"},
		{"other", errors.New("frame too big"), "frame too big"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := shortError(tc.err); got != tc.want {
				t.Errorf("shortError = %q, want %q", got, tc.want)
			}
		})
	}
}
