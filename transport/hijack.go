package transport

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
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
	conn   net.Conn // what to write and close: the socket, behind a greetingConn
	bare   net.Conn // the socket itself
	reader *bufio.Reader
	early  bool // the client's first bytes came with the request; see session.waitInput
}

// smallBuffers is a ResponseWriter whose Hijack gives the connection small buffers and
// records it in *to. websocket.Accept hijacks through it.
//
// It also holds the 101 response back (net/http would write it alone, at the hijack) and
// hands it to a greetingConn, so that it goes out with the server's first frame.
type smallBuffers struct {
	http.ResponseWriter
	hijacker http.Hijacker
	to       *hijacked
	switched *bool // WriteHeader(101) was called
}

// WriteHeader keeps a 101 for Hijack to write, and passes any other status on.
func (w smallBuffers) WriteHeader(code int) {
	if code == http.StatusSwitchingProtocols {
		*w.switched = true
		return
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w smallBuffers) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	bare, brw, err := w.hijacker.Hijack()
	if err != nil {
		return nil, nil, fmt.Errorf("hijack: %w", err)
	}
	var conn net.Conn = bare
	if *w.switched {
		var head bytes.Buffer
		head.WriteString("HTTP/1.1 101 Switching Protocols\r\n")
		if err := w.Header().Write(&head); err != nil {
			_ = bare.Close()
			return nil, nil, fmt.Errorf("hijack: the 101 response: %w", err)
		}
		head.WriteString("\r\n")
		conn = &greetingConn{Conn: bare, pending: head.Bytes()}
	}
	// Bytes the server read past the request (a client's first frame, say) must come first.
	// They go in the new reader's buffer, not in front of the connection as its source:
	// websocket.Accept keeps what is buffered but replaces the source with the bare
	// connection (Reader.Reset), which would lose them, and the stream with them.
	n := brw.Reader.Buffered()
	var src io.Reader = bare
	if n > 0 {
		early, _ := brw.Reader.Peek(n)
		src = io.MultiReader(bytes.NewReader(early), bare)
	}
	r := bufio.NewReaderSize(src, max(readBufferSize, n))
	if n > 0 {
		// One read fills the buffer from the bytes.Reader alone: this never waits on conn.
		if _, err := r.Peek(n); err != nil {
			return nil, nil, fmt.Errorf("hijack: keep the %d bytes read early: %w", n, err)
		}
	}
	*w.to = hijacked{conn: conn, bare: bare, reader: r, early: n > 0}
	// brw.Writer holds nothing: net/http had no header to write.
	return conn, bufio.NewReadWriter(r, bufio.NewWriterSize(conn, writeBufferSize)), nil
}

// withSmallBuffers wraps w when it can be hijacked; *to is the connection once it is.
func withSmallBuffers(w http.ResponseWriter, to *hijacked) http.ResponseWriter {
	if hj, ok := w.(http.Hijacker); ok {
		return smallBuffers{ResponseWriter: w, hijacker: hj, to: to, switched: new(bool)}
	}
	return w
}

// greetingConn writes the 101 response in front of the first bytes written on the connection:
// the server greets every client at once (welcome, or Engine.IO's open packet), so the client
// gets the upgrade and the greeting in one segment, for one write here and one read there.
// Whichever write comes first (the session's writer, or the library's close frame) takes it.
type greetingConn struct {
	net.Conn
	sent    atomic.Bool
	mu      sync.Mutex // held through the first write, so that no write overtakes it
	pending []byte     // guarded by mu; nil once written
}

func (c *greetingConn) Write(p []byte) (int, error) {
	if c.sent.Load() {
		return c.Conn.Write(p)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pending == nil {
		return c.Conn.Write(p)
	}
	head := len(c.pending)
	n, err := c.Conn.Write(append(c.pending, p...))
	c.pending = nil
	c.sent.Store(true)
	return max(0, n-head), err
}
