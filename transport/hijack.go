package transport

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
)

// The buffers of a WebSocket connection. net/http hands a hijacked connection 4 KiB for
// reading and 4 KiB for writing, and an idle connection holds both for as long as it stays
// open: at many thousands of connections, they are most of the memory.
//
// Client frames are small (a chat message is a few hundred bytes; larger reads bypass the
// buffer), so 1 KiB costs nothing in reads. The session writes data frames straight to the
// connection (frame.go); the library writes only control frames through its buffer, and a
// control frame is at most 127 bytes with its header.
const (
	readBufferSize  = 1024
	writeBufferSize = 256
)

// hijacked is what the server keeps of a connection websocket.Accept hijacked: the socket,
// on which the session's writer writes data frames itself (frame.go), and the buffered
// reader the library reads it through, whose emptiness tells when the reader may wait for
// the client at a shallow depth (idle.go).
type hijacked struct {
	conn   net.Conn
	reader *bufio.Reader
	early  bool // the client's first bytes came with the request; see session.waitInput
	// response is the 101 response, not written yet: it goes out in front of the session's
	// first frame, in one write (session.greet). held says that the library asked for it, until
	// Hijack makes it.
	response []byte
	held     bool
}

// responseRoom is the room left after a 101 response for the first frame that follows it
// in the same buffer (a welcome is about 110 bytes, a Socket.IO open packet about 120).
const responseRoom = 256

// smallBuffers is a ResponseWriter whose Hijack gives the connection small buffers and
// records it in *to. websocket.Accept hijacks through it.
type smallBuffers struct {
	http.ResponseWriter
	hijacker http.Hijacker
	to       *hijacked
}

// WriteHeader holds a 101 back for Hijack, which puts it in front of the session's first
// frame: net/http would write it alone as it lets go of the connection, one write call and
// one packet more for every connection, and the client would wait on a second read for its
// welcome. Any other status is net/http's to write.
func (w smallBuffers) WriteHeader(code int) {
	if code == http.StatusSwitchingProtocols {
		w.to.held = true
		return
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w smallBuffers) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := w.hijacker.Hijack()
	if err != nil {
		return nil, nil, fmt.Errorf("hijack: %w", err)
	}
	// Bytes the server read past the request (a client's first frame, say) must come first.
	// They go in the new reader's buffer, not in front of the connection as its source:
	// websocket.Accept keeps what is buffered but replaces the source with the bare
	// connection (Reader.Reset), which would lose them, and the stream with them.
	n := brw.Reader.Buffered()
	var src io.Reader = conn
	if n > 0 {
		early, _ := brw.Reader.Peek(n)
		src = io.MultiReader(bytes.NewReader(early), conn)
	}
	r := bufio.NewReaderSize(src, max(readBufferSize, n))
	if n > 0 {
		// One read fills the buffer from the bytes.Reader alone: this never waits on conn.
		if _, err := r.Peek(n); err != nil {
			return nil, nil, fmt.Errorf("hijack: keep the %d bytes read early: %w", n, err)
		}
	}
	var response []byte
	if w.to.held {
		response = switchingProtocols(w.Header())
	}
	*w.to = hijacked{conn: conn, reader: r, early: n > 0, response: response}
	// brw.Writer holds nothing: net/http writes a response's header only once it is told
	// the status, and the 101 was held back.
	return conn, bufio.NewReadWriter(r, bufio.NewWriterSize(conn, writeBufferSize)), nil
}

// withSmallBuffers wraps w when it can be hijacked; *to is the connection once it is. Like
// websocket.Accept, it looks for the Hijacker under any middleware that hides it behind
// Unwrap, so that every session that upgrades writes to its socket itself.
func withSmallBuffers(w http.ResponseWriter, to *hijacked) http.ResponseWriter {
	for under := w; ; {
		switch t := under.(type) {
		case http.Hijacker:
			return smallBuffers{ResponseWriter: w, hijacker: t, to: to}
		case interface{ Unwrap() http.ResponseWriter }:
			under = t.Unwrap()
		default:
			return w // not hijackable (HTTP/2, say): websocket.Accept refuses the upgrade
		}
	}
}

// switchingProtocols is the 101 response with header h, as net/http would write it (less
// the Date, which a 1xx response need not carry), with room behind it for the first frame.
func switchingProtocols(h http.Header) []byte {
	b := appender(append(make([]byte, 0, 128+responseRoom), "HTTP/1.1 101 Switching Protocols\r\n"...))
	_ = h.Write(&b) // net/http's own writer: it drops bad names and newlines in values
	return append(b, "\r\n"...)
}

// appender is an io.Writer that appends to itself.
type appender []byte

func (a *appender) Write(p []byte) (int, error) {
	*a = append(*a, p...)
	return len(p), nil
}

func (a *appender) WriteString(s string) (int, error) {
	*a = append(*a, s...)
	return len(s), nil
}
