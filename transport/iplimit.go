package transport

import (
	"math"
	"net/netip"
	"sync"
	"time"
)

// ipLimits bounds what one client address may hold and open: open connections, and new
// connections a second (a token bucket). IPv6 addresses count by their /64, which one client
// usually owns whole. It is safe for concurrent use.
type ipLimits struct {
	// Static after construction.
	maxConns int     // 0: no cap
	rate     float64 // connections a second; 0: no cap
	burst    float64

	// Guarded by mu.
	mu        sync.Mutex
	addrs     map[netip.Addr]*ipState
	lastSweep time.Time
}

type ipState struct {
	conns  int
	tokens float64
	last   time.Time
}

// maxTrackedAddrs bounds the table; past it, addresses with nothing open and a full bucket are
// forgotten, as they would be refilled anyway. When a flood from that many addresses keeps
// their buckets from refilling, the addresses with nothing open are forgotten too (they get a
// fresh burst: the rate bound weakens for a while rather than locking newcomers out). Only a
// table full of open connections refuses new addresses. A sweep costs a pass over the table,
// so it runs at most once per sweepEvery.
const (
	maxTrackedAddrs = 100000
	sweepEvery      = time.Second
)

func newIPLimits(maxConns int, rate float64, burst int) *ipLimits {
	return &ipLimits{maxConns: maxConns, rate: rate, burst: float64(max(burst, 1)), addrs: make(map[netip.Addr]*ipState)}
}

func ipKey(a netip.Addr) netip.Addr {
	if a.Is6() && !a.Is4In6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}

// acquire takes a connection slot for addr. When refused it says why and how long to wait.
func (l *ipLimits) acquire(addr netip.Addr, now time.Time) (ok bool, reason string, retryAfter time.Duration) {
	if l.maxConns <= 0 && l.rate <= 0 {
		return true, "", 0
	}
	key := ipKey(addr)
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.addrs[key]
	if st == nil {
		if len(l.addrs) >= maxTrackedAddrs && now.Sub(l.lastSweep) >= sweepEvery {
			l.lastSweep = now
			l.forgetIdleLocked(now)
		}
		if len(l.addrs) >= maxTrackedAddrs {
			return false, refuseIPTable, sweepEvery
		}
		st = &ipState{tokens: l.burst, last: now}
		l.addrs[key] = st
	}
	if l.maxConns > 0 && st.conns >= l.maxConns {
		return false, refuseIPConns, 5 * time.Second
	}
	if l.rate > 0 {
		st.tokens = math.Min(l.burst, st.tokens+now.Sub(st.last).Seconds()*l.rate)
		st.last = now
		if st.tokens < 1 {
			wait := time.Duration((1 - st.tokens) / l.rate * float64(time.Second))
			return false, refuseIPRate, wait
		}
		st.tokens--
	}
	st.conns++
	return true, "", 0
}

// release gives back a slot that acquire gave.
func (l *ipLimits) release(addr netip.Addr) {
	if l.maxConns <= 0 && l.rate <= 0 {
		return
	}
	key := ipKey(addr)
	l.mu.Lock()
	defer l.mu.Unlock()
	if st := l.addrs[key]; st != nil && st.conns > 0 {
		st.conns--
	}
}

func (l *ipLimits) forgetIdleLocked(now time.Time) {
	for key, st := range l.addrs {
		if st.conns == 0 && (l.rate <= 0 || st.tokens+now.Sub(st.last).Seconds()*l.rate >= l.burst) {
			delete(l.addrs, key)
		}
	}
	if len(l.addrs) >= maxTrackedAddrs*9/10 {
		for key, st := range l.addrs {
			if st.conns == 0 {
				delete(l.addrs, key)
			}
		}
	}
}
