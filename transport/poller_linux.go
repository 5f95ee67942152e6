//go:build linux

package transport

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// poller watches the sockets of parked sessions (park.go) in one epoll set, on one goroutine,
// and starts a session's reader again when its client sends something. A socket is armed for
// one event at a time (EPOLLONESHOT), so a session's reader runs at most once for it; the
// reader arms it again when it parks again.
//
// The runtime's own poller cannot watch the sockets themselves: it hands readiness only to a
// goroutine that waits, and the goroutine is what a parked session saves. It does watch the
// epoll set, which is readable while a socket in it is ready: so the poller's goroutine waits
// like any reader, with no thread blocked in epoll_wait (a thread in a blocking system call
// holds on to its P until the runtime's monitor takes it away, and wakes up the monitor).
type poller struct {
	epfd int
	// epfd, for the runtime's poller. Never call file.Fd: it puts the descriptor back in
	// blocking mode, and the poller's goroutine would then block a thread again.
	file *os.File
	raw  syscall.RawConn // file's, to wait for readiness and read the events
	log  *slog.Logger
	done chan struct{} // closed when run returns

	// Guarded by mu.
	mu       sync.Mutex
	sessions map[uint64]*session // the sessions whose socket is in the set, by id
	closed   bool                // no more arming: run has stopped or is stopping
	warned   bool                // an arm failed and was logged: later ones are not
}

// newPoller starts a poller; close stops it.
func newPoller(log *slog.Logger) (*poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	// Non-blocking, so that os.NewFile hands it to the runtime's poller.
	if err := unix.SetNonblock(epfd, true); err != nil {
		_ = unix.Close(epfd)
		return nil, fmt.Errorf("epoll set non-blocking: %w", err)
	}
	file := os.NewFile(uintptr(epfd), "epoll")
	raw, err := file.SyscallConn()
	if err == nil {
		// os.ErrNoDeadline when the runtime's poller did not take the set: waiting for it
		// would fail at once, and parking had better be off from the start.
		err = file.SetReadDeadline(time.Time{})
	}
	if err != nil {
		_ = file.Close()
		return nil, fmt.Errorf("epoll set in the runtime's poller: %w", err)
	}
	p := &poller{epfd: epfd, file: file, raw: raw, log: log, done: make(chan struct{}), sessions: make(map[uint64]*session)}
	go p.run()
	return p, nil
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
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT}
	ev.Fd, ev.Pad = int32(uint32(s.id)), int32(uint32(s.id>>32))
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

// run waits for input on parked sockets and resumes their sessions, until close.
func (p *poller) run() {
	defer close(p.done)
	events := make([]unix.EpollEvent, 128)
	resumed := make([]*session, 0, len(events))
	var waitErr error
	err := p.raw.Read(func(fd uintptr) bool {
		for {
			n, err := unix.EpollWait(int(fd), events, 0)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil {
				waitErr = err
				return true
			}
			resumed = p.resume(events[:n], resumed[:0])
			if n < len(events) {
				return false // all read: wait for the set to be ready again
			}
		}
	})
	p.mu.Lock()
	closing := p.closed
	p.mu.Unlock()
	if err = errors.Join(err, waitErr); err != nil && !closing {
		// Cannot happen with a valid set and buffer; if it does, no parked session may be
		// left waiting for an event that will not come.
		p.log.Error("epoll_wait failed; idle connections keep a goroutine from now on", "err", err)
	}
	p.stop()
}

// resume resumes the sessions of events, collecting them in resumed (returned, emptied, for
// the next call).
func (p *poller) resume(events []unix.EpollEvent, resumed []*session) []*session {
	if len(events) == 0 {
		return resumed
	}
	p.mu.Lock()
	for _, ev := range events {
		if s := p.sessions[uint64(uint32(ev.Fd))|uint64(uint32(ev.Pad))<<32]; s != nil {
			resumed = append(resumed, s)
		}
	}
	p.mu.Unlock()
	for _, s := range resumed {
		s.resume()
	}
	clear(resumed)
	return resumed[:0]
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
// on goroutines of their own. It may be called more than once, from any goroutine.
func (p *poller) close() {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.closed = true // before the close: no epoll_ctl on a number that may be reused
	p.mu.Unlock()
	_ = p.file.Close() // ends the wait in run; a second close reports an error, ignored
	<-p.done
}
