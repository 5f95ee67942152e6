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

// handshakeReadSize is the buffer the response is read through: a 101 response and the
// welcome that comes with it are a few hundred bytes.
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
	// The request's deadline and cancellation hold until the response is read; after that,
	// the WebSocket library looks after the connection.
	if deadline, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(deadline)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	resp, err := handshake(conn, req)
	if !stop() && err == nil {
		err = ctx.Err() // cancelled as the response came: the deadline may be in the past
	}
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	_ = conn.SetDeadline(time.Time{})
	return resp, nil
}

// handshake writes req on conn and reads the response. A 101's body is the connection
// itself; any other response's body is what the server sent with it, and closing it closes
// the connection.
func handshake(conn net.Conn, req *http.Request) (*http.Response, error) {
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	var b bytes.Buffer
	b.Grow(256)
	b.WriteString("GET ")
	b.WriteString(req.URL.RequestURI())
	b.WriteString(" HTTP/1.1\r\nHost: ")
	b.WriteString(host)
	b.WriteString("\r\n")
	if err := req.Header.Write(&b); err != nil {
		return nil, fmt.Errorf("upgrade request: %w", err)
	}
	b.WriteString("\r\n")
	if _, err := conn.Write(b.Bytes()); err != nil {
		return nil, fmt.Errorf("send the upgrade request: %w", err)
	}
	r := bufio.NewReaderSize(conn, handshakeReadSize)
	resp, err := http.ReadResponse(r, req)
	if err != nil {
		return nil, fmt.Errorf("read the upgrade response: %w", err)
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		resp.Body = &upgradedConn{Conn: conn, early: r}
	} else {
		resp.Body = bodyAndConn{ReadCloser: resp.Body, conn: conn}
	}
	return resp, nil
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

// bodyAndConn is the body of a refused upgrade; closing it closes the connection too.
type bodyAndConn struct {
	io.ReadCloser
	conn net.Conn
}

func (b bodyAndConn) Close() error {
	_ = b.ReadCloser.Close()
	return b.conn.Close()
}
