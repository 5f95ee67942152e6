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
}

// smallBuffers is a ResponseWriter whose Hijack gives the connection small buffers and
// records it in *to. websocket.Accept hijacks through it.
type smallBuffers struct {
	http.ResponseWriter
	hijacker http.Hijacker
	to       *hijacked
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
	*w.to = hijacked{conn: conn, reader: r, early: n > 0}
	// brw.Writer holds nothing: net/http flushed the 101 response before it let go.
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
