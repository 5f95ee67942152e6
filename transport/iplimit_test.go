package transport

import (
	"net/netip"
	"testing"
	"time"
)

func TestIPLimits(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	a := netip.MustParseAddr("192.0.2.1")
	tests := []struct {
		name string
		run  func(t *testing.T, l *ipLimits)
	}{
		{"connections cap", func(t *testing.T, l *ipLimits) {
			for i := range 3 {
				if ok, _, _ := l.acquire(a, now.Add(time.Duration(i)*time.Second)); !ok {
					t.Fatalf("connection %d refused", i)
				}
			}
			if ok, reason, _ := l.acquire(a, now.Add(3*time.Second)); ok || reason != refuseIPConns {
				t.Fatalf("a 4th connection: %v %q, want refused with %s", ok, reason, refuseIPConns)
			}
			l.release(a)
			if ok, _, _ := l.acquire(a, now.Add(4*time.Second)); !ok {
				t.Fatal("refused after a release")
			}
		}},
		{"rate", func(t *testing.T, l *ipLimits) {
			for range 2 { // the burst
				if ok, _, _ := l.acquire(a, now); !ok {
					t.Fatal("refused within the burst")
				}
				l.release(a)
			}
			ok, reason, wait := l.acquire(a, now)
			if ok || reason != refuseIPRate || wait != 500*time.Millisecond {
				t.Fatalf("past the burst: %v %q %v, want refused with %s for 500ms", ok, reason, wait, refuseIPRate)
			}
			if ok, _, _ := l.acquire(a, now.Add(500*time.Millisecond)); !ok {
				t.Fatal("refused after the bucket refilled")
			}
		}},
		{"ipv6 counts by /64", func(t *testing.T, l *ipLimits) {
			for i := range 3 {
				addr := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i)})
				if ok, _, _ := l.acquire(addr, now.Add(time.Duration(i)*time.Second)); !ok {
					t.Fatalf("address %v refused", addr)
				}
			}
			other := netip.MustParseAddr("2001:db8:0:0:ffff::1")
			if ok, _, _ := l.acquire(other, now.Add(5*time.Second)); ok {
				t.Fatal("a 4th address of the same /64 was let in")
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t, newIPLimits(3, 2, 2))
		})
	}
}

// TestIPLimitsTableIsBounded: a flood from more addresses than the table holds neither grows
// it past its bound nor sweeps it on every new address. A table full of open connections
// refuses newcomers; one full of closed connections with drained buckets forgets them rather
// than lock newcomers out.
func TestIPLimitsTableIsBounded(t *testing.T) {
	t.Parallel()
	l := newIPLimits(10, 0.1, 1) // a bucket takes 10 s to refill
	now := time.Unix(1_700_000_000, 0)
	addr := func(i int) netip.Addr {
		return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
	}
	for i := range maxTrackedAddrs {
		if ok, _, _ := l.acquire(addr(i), now); !ok {
			t.Fatalf("address %d refused before the table was full", i)
		}
	}
	ok, reason, _ := l.acquire(addr(maxTrackedAddrs), now)
	if ok || reason != refuseIPTable {
		t.Fatalf("a new address with the table full of open connections: %v %q, want %s", ok, reason, refuseIPTable)
	}
	if n := len(l.addrs); n != maxTrackedAddrs {
		t.Fatalf("the table holds %d addresses, want %d", n, maxTrackedAddrs)
	}
	// Every connection closes, the buckets still empty (each address spent its one token).
	for i := range maxTrackedAddrs {
		l.release(addr(i))
	}
	if ok, _, _ := l.acquire(addr(maxTrackedAddrs), now.Add(100*time.Millisecond)); ok {
		t.Fatal("a sweep ran again within a second of the last")
	}
	later := now.Add(time.Second + 100*time.Millisecond) // the next sweep; no bucket has refilled
	if ok, _, _ := l.acquire(addr(maxTrackedAddrs), later); !ok {
		t.Fatal("a new address refused though every tracked address had closed its connections")
	}
	if n := len(l.addrs); n != 1 {
		t.Fatalf("the table holds %d addresses after the sweep, want 1", n)
	}
}
