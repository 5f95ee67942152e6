package transport

import (
	"context"
	"time"

	"github.com/coder/websocket"

	"github.com/shardchat/shardchat/transport/wire"
)

// protocol is what one wire protocol brings to a session: what the server says first, how a
// client frame is read, how an object for the member (always a native protocol object, from
// a shard or from the session) goes over the wire, and how the connection is kept alive.
type protocol interface {
	// name labels the protocol's metrics: "ws" or "socketio".
	name() string
	// greet queues what the server sends first.
	greet(s *session)
	// serve handles one client frame, on the reader's goroutine; an error ends the session.
	serve(ctx context.Context, s *session, typ websocket.MessageType, frame []byte) error
	// deliver queues obj in the protocol's form without waking the writer, and reports
	// whether the writer needs waking (see shard.Member). Shard goroutines call it: it must
	// not block.
	deliver(s *session, obj []byte, mode sendMode) (wake bool)
	// joinFrames reports whether the writer may join several queued items into one frame.
	joinFrames() bool
	// keepalive runs on the server's watchdog goroutine, often (see Server.watchSessions):
	// it pings an idle client and drops one that stopped answering. It must not block.
	keepalive(s *session, now time.Time)
}

// native is the shardchat protocol of docs/protocol.md, on /ws.
type native struct{}

func (native) name() string { return "ws" }

func (native) greet(s *session) { s.queue(s.srv.welcome) }

func (native) serve(ctx context.Context, s *session, typ websocket.MessageType, frame []byte) error {
	if typ != websocket.MessageText {
		s.refuse("", wire.Errorf(wire.CodeBadRequest, "binary frames are not accepted; send JSON in text frames"))
		return nil
	}
	return s.handle(ctx, frame)
}

func (native) deliver(s *session, obj []byte, mode sendMode) bool {
	return s.add(obj, mode)
}

func (native) joinFrames() bool { return true }

// keepalive has the writer ping a client that sent nothing for PingInterval, and drops one
// whose pong has not come within PingTimeout. The writer only sends the ping; the pong comes
// to session.alive (from the library's reader, or from waitInput), so no goroutine waits.
func (native) keepalive(s *session, now time.Time) {
	if s.awaitingPong(now) {
		return
	}
	if now.Sub(time.Unix(0, s.lastRead.Load())) >= s.srv.cfg.PingInterval && !s.pingDue.Load() {
		s.pingDue.Store(true)
		s.wakeWriter()
	}
}
