//go:build linux

package transport

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"golang.org/x/sys/unix"
)

// poller watches the sockets of parked sessions (park.go) in one epoll set, on one goroutine,
// and starts a session's reader again when its client sends something. A socket is armed for
// one event at a time (EPOLLONESHOT), so a session's reader runs at most once for it; the
// reader arms it again when it parks again.
//
// The runtime's own poller cannot be used for this: it hands readiness only to a goroutine
// that waits, and the goroutine is what a parked session saves.
type poller struct {
	epfd   int
	wakefd int // an eventfd: close writes to it to stop run
	log    *slog.Logger
	done   chan struct{} // closed when run returns

	// Guarded by mu.
	mu       sync.Mutex
	sessions map[uint64]*session // the sessions whose socket is in the set, by id
	closed   bool                // no more arming: run has stopped or is stopping
	wakeSent bool                // close has written to wakefd
	warned   bool                // an arm failed and was logged: later ones are not
}

// stopID is the event data of the wake-up eventfd: session ids start at 1.
const stopID = 0

// newPoller starts a poller; close stops it.
func newPoller(log *slog.Logger) (*poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	wakefd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		_ = unix.Close(epfd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	ev := pollEvent(unix.EPOLLIN, stopID)
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wakefd, &ev); err != nil {
		_ = unix.Close(epfd)
		_ = unix.Close(wakefd)
		return nil, fmt.Errorf("epoll_ctl add eventfd: %w", err)
	}
	p := &poller{epfd: epfd, wakefd: wakefd, log: log, done: make(chan struct{}), sessions: make(map[uint64]*session)}
	go p.run()
	return p, nil
}

// pollEvent is an epoll event for events that carries id as its data.
func pollEvent(events uint32, id uint64) unix.EpollEvent {
	ev := unix.EpollEvent{Events: events}
	ev.Fd, ev.Pad = int32(uint32(id)), int32(uint32(id>>32))
	return ev
}

// arm has the poller resume s at the next input on fd, the socket of s: it adds fd to the set
// the first time (registered false), and enables it again afterwards. fd must stay open for
// the call (session.park holds it through RawConn.Control).
func (p *poller) arm(fd int, s *session, registered bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errPollerClosed
	}
	op := unix.EPOLL_CTL_MOD
	if !registered {
		op = unix.EPOLL_CTL_ADD
	}
	ev := pollEvent(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLONESHOT, s.id)
	if err := unix.EpollCtl(p.epfd, op, fd, &ev); err != nil {
		if !p.warned {
			// ENOSPC (fs.epoll.max_user_watches), say: sessions that cannot park keep a
			// goroutine each, which costs memory, not service.
			p.warned = true
			p.log.Warn("an idle connection could not park; it keeps a goroutine", "err", err)
		}
		return fmt.Errorf("epoll_ctl: %w", err)
	}
	p.sessions[s.id] = s
	return nil
}

// disarm takes fd, the socket of session id, out of the set for good, before it closes
// (session.unpark holds it open through RawConn.Control). A socket closed without it leaves
// the set by itself, but then forget must still drop the session.
func (p *poller) disarm(fd int, id uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.closed {
		_ = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, fd, nil)
	}
	delete(p.sessions, id)
}

// forget drops session id, whose socket left the set.
func (p *poller) forget(id uint64) {
	p.mu.Lock()
	delete(p.sessions, id)
	p.mu.Unlock()
}

var errPollerClosed = errors.New("poller closed")

// run waits for input on parked sockets and resumes their sessions. epoll_wait blocks a
// thread of its own, not a P: the runtime hands the P on while it waits.
func (p *poller) run() {
	defer close(p.done)
	events := make([]unix.EpollEvent, 128)
	for {
		n, err := unix.EpollWait(p.epfd, events, -1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			// Cannot happen with a valid set and buffer; if it does, no parked session may
			// be left waiting for an event that will not come.
			p.log.Error("epoll_wait failed; idle connections keep a goroutine from now on", "err", err)
			p.stop()
			return
		}
		p.mu.Lock()
		resumed := make([]*session, 0, n)
		stopping := false
		for _, ev := range events[:n] {
			id := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			if id == stopID {
				stopping = true
			} else if s := p.sessions[id]; s != nil {
				resumed = append(resumed, s)
			}
		}
		p.mu.Unlock()
		for _, s := range resumed {
			s.resume()
		}
		if stopping {
			p.stop()
			return
		}
	}
}

// stop refuses further arming and resumes every session still parked.
func (p *poller) stop() {
	p.mu.Lock()
	p.closed = true
	left := make([]*session, 0, len(p.sessions))
	for _, s := range p.sessions {
		left = append(left, s)
	}
	clear(p.sessions)
	p.mu.Unlock()
	for _, s := range left {
		s.resume()
	}
}

// close stops run and releases the set. Sessions still parked are resumed, to wait for input
// on goroutines of their own. It may be called more than once.
func (p *poller) close() {
	if p == nil {
		return
	}
	p.mu.Lock()
	if !p.closed && !p.wakeSent {
		// Under mu: a concurrent close must not write to a closed, maybe reused, number.
		p.wakeSent = true
		var one [8]byte
		one[0] = 1 // the eventfd counter is a native-endian uint64; any non-zero value wakes
		_, _ = unix.Write(p.wakefd, one[:])
	}
	p.mu.Unlock()
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.epfd >= 0 {
		_ = unix.Close(p.epfd)
		_ = unix.Close(p.wakefd)
		p.epfd, p.wakefd = -1, -1
	}
}
