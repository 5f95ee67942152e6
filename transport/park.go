package transport

import "time"

// Most connections of a chat server are idle most of the time, and a goroutine that waits
// for one costs its stack (4 KiB at the least, after idle.go's care) and its runtime state:
// a third of an idle connection's memory. So an idle reader parks: it hands the socket to
// the server's poller (one epoll set and one goroutine for all, poller_linux.go) and its
// goroutine ends. The poller starts a reader again at the client's next bytes; an idle
// session then holds no goroutine at all (its writer, too, runs only while there is
// something to write).
//
// A park and the resume after it cost an epoll_ctl, a goroutine start and its stack's growth:
// parking after every frame made the server spend 4% more CPU with 500 users sending one
// message a second (bench seed, medians of 4 A/B runs; 12% while the poller's goroutine
// blocked in epoll_wait), for 4 MiB less RSS. So a reader parks only where the client looks
// idle: after a frame that came after a silence of parkGap or more (the first frame too: a
// join, typically, after which most clients say nothing for a long time), and after a pong
// with nothing else (the server pings a connection silent for PingInterval; Socket.IO's
// pings come every PingInterval). A client that talks more often keeps its reader; one that
// talks less pays a resume per frame, at most one every parkGap.
//
// A parked socket that closes leaves the epoll set without a word, and no reader would come
// to end the session. So whatever closes the socket (cut, close) unparks first: parking ends
// for good, and a reader is started that sees the close, as on a connection never parked.

// parkGap is the silence after which a client's next frame is taken as a sign that it talks
// seldom, and its reader parks after serving it.
const parkGap = 2 * time.Second

// park hands the socket to the poller and reports whether it did; the reader must then
// return at once: the poller, or unpark, starts the next. Arming is level-triggered: input
// that is already waiting resumes the session at once. It reports false where there is no
// poller, or once the session is ending: the reader waits on the runtime's poller then.
func (s *session) park() bool {
	if s.srv.poller == nil {
		return false
	}
	s.pollMu.Lock()
	defer s.pollMu.Unlock()
	if s.noPark {
		return false
	}
	// Before arming: the event may come, and resume look, before Control returns.
	s.srv.metrics.parked.Inc()
	s.parked.Store(true)
	if err := s.rawConn.Control(s.armFunc); err != nil || s.armErr != nil {
		// The socket closed (the reader's next read reports it), or the poller stopped or
		// failed: this session does not try again.
		s.noPark = true
		if !s.parked.CompareAndSwap(true, false) {
			return true // a stopping poller resumed the session meanwhile: that reader goes on
		}
		s.srv.metrics.parked.Dec()
		return false
	}
	s.registered = true
	return true
}

// arm is park's Control callback, as a method value made once (armFunc): a closure passed
// to Control would be allocated at every park.
func (s *session) arm(fd uintptr) { s.armErr = s.srv.poller.arm(int(fd), s, s.registered) }

// resume starts a reader for a parked session; it does nothing for one whose reader runs.
// The poller calls it at input, unpark when the session ends.
func (s *session) resume() {
	if s.parked.CompareAndSwap(true, false) {
		s.srv.metrics.parked.Dec()
		go s.read()
	}
}

// unpark ends parking for good and makes sure a reader runs, to see the socket close and end
// the session. Whatever closes the socket calls it first; it may be called more than once,
// from any goroutine.
func (s *session) unpark() {
	if s.srv.poller == nil || s.rawConn == nil {
		return
	}
	s.pollMu.Lock()
	s.noPark = true
	if s.registered {
		// Out of the set while the socket is surely open: after a close, its number may
		// belong to another connection. Control fails once the socket closed, which took
		// it out of the set already: then only the poller's record of it is left to drop.
		if err := s.rawConn.Control(func(fd uintptr) { s.srv.poller.disarm(int(fd), s.id) }); err != nil {
			s.srv.poller.forget(s.id)
		}
		s.registered = false
	}
	s.pollMu.Unlock()
	s.resume()
}
