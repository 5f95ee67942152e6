package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// upgradeTransport is the bench's http.RoundTripper. It makes a plain WebSocket upgrade
// itself: it dials, writes the request, reads the response and hands the connection over as
// the response's body, which is what websocket.Dial takes. Any other request (the server's
// /metrics, or an upgrade over TLS) goes to net/http's Transport.
//
// net/http's Transport runs two goroutines a connection and a pool's bookkeeping for every
// upgrade, though the bench never reuses a connection. In a connection storm the bench
// shares the machine's cores with the server, so its cost a connection is the server's
// loss: a bench that cannot keep up makes the server's connect times look longer than they
// are.
type upgradeTransport struct {
	dial  func(ctx context.Context, network, addr string) (net.Conn, error)
	other http.RoundTripper
}

// handshakeReadSize is the buffer the response is read through: a 101 response is about
// 150 bytes, and what a server may send right behind it lands here too.
const handshakeReadSize = 1024

// RoundTrip makes the upgrade req asks for, or hands req to net/http.
func (t *upgradeTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "http" || !strings.EqualFold(req.Header.Get("Upgrade"), "websocket") {
		return t.other.RoundTrip(req)
	}
	ctx := req.Context()
	addr := req.URL.Host
	if req.URL.Port() == "" {
		addr = net.JoinHostPort(req.URL.Hostname(), "80")
	}
	conn, err := t.dial(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	// Until the response is read (a refusal's body too), the request's context ends the
	// handshake: its deadline or its cancellation puts the connection's in the past. After
	// an upgrade, the WebSocket library looks after the connection.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	resp, r, err := handshake(conn, req)
	if err != nil {
		stop()
		_ = conn.Close()
		if ctxErr := ctx.Err(); ctxErr != nil {
			// The context's reason, not the socket's timeout, whose text names the local
			// port: the bench counts failures by their text.
			return nil, fmt.Errorf("upgrade: %w", ctxErr)
		}
		return nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		resp.Body = refusedBody{ReadCloser: resp.Body, conn: conn, stop: stop}
		return resp, nil
	}
	if !stop() {
		// The context ended as the response came: the connection's deadline may be past.
		_ = conn.Close()
		return nil, fmt.Errorf("upgrade: %w", ctx.Err())
	}
	resp.Body = &upgradedConn{Conn: conn, early: r}
	return resp, nil
}

// handshake writes req on conn, as net/http writes a request, and reads the response, and
// the reader it read it through.
func handshake(conn net.Conn, req *http.Request) (*http.Response, *bufio.Reader, error) {
	var b bytes.Buffer // one write; and req.Write takes a buffer of its own for a bare conn
	if err := req.Write(&b); err != nil {
		return nil, nil, fmt.Errorf("upgrade request: %w", err)
	}
	if _, err := conn.Write(b.Bytes()); err != nil {
		return nil, nil, fmt.Errorf("send the upgrade request: %w", err)
	}
	r := bufio.NewReaderSize(conn, handshakeReadSize)
	resp, err := http.ReadResponse(r, req)
	if err != nil {
		return nil, nil, fmt.Errorf("read the upgrade response: %w", err)
	}
	return resp, r, nil
}

// upgradedConn is an upgraded connection, whose first bytes (the server's first frames, sent
// with the 101) may be in the reader that read the response.
type upgradedConn struct {
	net.Conn
	early *bufio.Reader // nil once empty
}

func (c *upgradedConn) Read(p []byte) (int, error) {
	if c.early != nil {
		if c.early.Buffered() > 0 {
			return c.early.Read(p)
		}
		c.early = nil
	}
	return c.Conn.Read(p)
}

// refusedBody is the body of a refused upgrade, read under the request's context; closing
// it closes the connection.
type refusedBody struct {
	io.ReadCloser
	conn net.Conn
	stop func() bool
}

func (b refusedBody) Close() error {
	b.stop()
	_ = b.ReadCloser.Close()
	return b.conn.Close()
}
