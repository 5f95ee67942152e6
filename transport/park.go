package transport

// Most connections of a chat server are idle most of the time, and a goroutine that waits
// for one costs its stack (4 KiB at the least, after idle.go's care) and its runtime state:
// a third of an idle connection's memory. So an idle reader parks: once the client has sent
// nothing new, it hands the socket to the server's poller (one epoll set and one goroutine
// for all, poller_linux.go) and its goroutine ends. The poller starts a reader again at the
// client's next bytes; an idle session then holds no goroutine at all (its writer, too, runs
// only while there is something to write).
//
// A parked socket that closes leaves the epoll set without a word, and no reader would come
// to end the session. So whatever closes the socket (cut, close) unparks first: parking ends
// for good, and a reader is started that sees the close, as on a connection never parked.

// park hands the socket to the poller and reports whether it did; the reader must then
// return at once: the poller, or unpark, starts the next. The client has sent nothing since
// the reader last looked. It reports false where there is no poller, or once the session is
// ending: the reader waits on the runtime's poller then.
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
	s.parked.Store(true)
	if err := s.rawConn.Control(s.armFunc); err != nil || s.armErr != nil {
		// The socket closed (the reader's next read reports it), or the poller stopped.
		s.parked.Store(false)
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
		// it out of the set already.
		_ = s.rawConn.Control(func(fd uintptr) { s.srv.poller.disarm(int(fd), s.id) })
		s.srv.poller.forget(s.id)
		s.registered = false
	}
	s.pollMu.Unlock()
	s.resume()
}
