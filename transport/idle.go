package transport

import (
	"errors"
	"syscall"
)

// An idle connection costs its reader goroutine's stack, and a goroutine parked deep in the
// library's frame reader keeps the stack that reading and serving requests grew (8 KiB and
// more): the garbage collector halves a stack only while less than a quarter of it is in use.
// So the reader waits for the client's next bytes at the top of its loop, a few frames deep,
// and only then calls into the library; parked there, its stack shrinks back to the minimum.

// adopt gives the session the connection websocket.Accept hijacked, when it got one.
func (s *session) adopt(h hijacked) {
	if h.conn == nil {
		return
	}
	s.raw = h.conn
	s.buffered = h.reader
	s.early = h.early
	if sc, ok := h.conn.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			s.rawConn = rc
		}
	}
}

// waitInput returns once the client has sent something (or the socket has an error or end of
// stream for the library to read and report). It returns at once when the library's buffer
// holds bytes, or where the socket cannot be waited on this way.
func (s *session) waitInput() error {
	if s.early {
		// Bytes that came with the upgrade request wait in front of the socket, not in the
		// buffer (websocket.Accept put them there): the first read takes them all in.
		s.early = false
		return nil
	}
	if s.rawConn == nil || s.buffered == nil {
		return nil
	}
	s.bufferMu.Lock()
	buffered := s.buffered.Buffered()
	s.bufferMu.Unlock()
	if buffered > 0 {
		return nil
	}
	// Asked again after each readiness signal from the runtime's poller, which can be stale:
	// an edge seen while the library was reading, whose bytes it has read since.
	err := s.rawConn.Read(func(fd uintptr) bool { return !nothingToRead(fd) })
	if errors.Is(err, syscall.EINVAL) { // a socket the poller does not know: read as before
		return nil
	}
	return err
}
