package transport

import "net"

// A reader that waits for its client keeps its goroutine's stack (where sessions do not park,
// park.go: another platform, or a client that talks often), and a goroutine waiting deep in
// the library's frame reader keeps the stack that reading and serving requests grew (8 KiB
// and more): the garbage collector halves a stack only while less than a quarter of it is in
// use. So the reader waits for the client's next bytes at the top of its loop, a few frames
// deep, and only then calls into the library; waiting there, its stack shrinks back to 4 KiB.
//
// The library handles control frames inside its Reader and goes on waiting for a data frame,
// deep: a pong, which every idle client sends once per PingInterval, would put the reader back
// there for good. So the wait takes a whole pong off the socket itself (idle_unix.go).

// adopt gives the session the connection websocket.Accept hijacked.
func (s *session) adopt(h hijacked) {
	s.raw = h.conn
	s.buffered = h.reader
	s.early = h.early
	// Only sockets whose Read is the kernel's: a wrapper that buffers in its Read (a PROXY
	// protocol listener, say) would hold bytes the peek cannot see.
	switch c := h.conn.(type) {
	case *net.TCPConn:
		s.rawConn, _ = c.SyscallConn()
	case *net.UnixConn:
		s.rawConn, _ = c.SyscallConn()
	}
	if !canPeek {
		s.rawConn = nil
	}
	// Made once: a method value allocates.
	s.inputArrivedFunc = s.inputArrived
	s.armFunc = s.arm
}

// waitInput returns false once the client has sent something other than a pong (or the
// socket has an error or end of stream for the library to read and report), and true when
// the reader parked (park.go) and must return: it parks when the client looks idle
// (s.parkNext). It returns false at once when the library's buffer holds bytes, or where the
// socket cannot be waited on this way.
func (s *session) waitInput() (parked bool) {
	if s.early {
		// Bytes that came with the upgrade request wait in front of the socket, not in the
		// buffer (websocket.Accept put them there): the first read takes them all in.
		s.early = false
		return false
	}
	if s.rawConn == nil {
		return false
	}
	s.bufferMu.Lock()
	buffered := s.takeBufferedPongs()
	s.bufferMu.Unlock()
	if buffered > 0 {
		return false
	}
	for {
		if s.parkNext {
			if s.park() {
				return true
			}
			s.parkNext = false // parking refused: wait here
		}
		// An error (the socket closed) is left for the library's read to report.
		_ = s.rawConn.Read(s.inputArrivedFunc)
		if !s.parkNext {
			return false
		}
	}
}

// takeBufferedPongs takes the whole pongs at the front of the library's buffer off it, and
// returns how many bytes are left there. A pong gets there when it came right behind a frame
// and one read took both: the library would read it and then wait for the next data frame
// deep in its reader, where the session cannot park (nor its stack shrink). The caller holds
// bufferMu.
func (s *session) takeBufferedPongs() int {
	for {
		n := s.buffered.Buffered()
		if n == 0 {
			return 0
		}
		b, _ := s.buffered.Peek(min(n, maxPong)) // no more than is buffered: it does not read
		size := wholePong(b)
		if size == 0 {
			return n
		}
		_, _ = s.buffered.Discard(size)
		s.alive()
		s.parkNext = true
	}
}

// inputArrived is waitInput's test, run again after each readiness signal from the runtime's
// poller (which can be stale: an edge seen while the library was reading, whose bytes it has
// read since). It reports whether there is input for the library, taking pongs off the
// socket, or, where sessions park, a pong and nothing after it (s.parkNext). After a pong it
// looks again at once: bytes that came with it bring no new signal.
func (s *session) inputArrived(fd uintptr) bool {
	for {
		switch peekInput(fd) {
		case inputNone:
			return s.parkNext && s.srv.poller != nil
		case inputPong:
			s.alive()
			s.parkNext = true
			continue
		}
		s.parkNext = false
		return true
	}
}

// input is what peekInput found waiting on a socket.
type input int

const (
	inputNone  input = iota // nothing yet
	inputPong               // a whole pong, which peekInput took off the socket
	inputOther              // anything else, an error or the end of the stream included
)

// maxPong is the longest pong a client sends: two header bytes, the mask key, and a control
// frame's payload of at most 125 bytes (RFC 6455, 5.5).
const maxPong = 2 + 4 + 125

// wholePong returns the length of the pong frame b starts with, or 0 when b does not start
// with a whole, final, masked pong with a short length (RFC 6455, 5.2).
func wholePong(b []byte) int {
	const finPong, masked = 0x8a, 0x80
	if len(b) < 2 || b[0] != finPong || b[1]&masked == 0 {
		return 0
	}
	size := 2 + 4 + int(b[1]&0x7f) // 126 and 127 (extended lengths) pass maxPong
	if size > maxPong || len(b) < size {
		return 0
	}
	return size
}
