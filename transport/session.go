package transport

import (
	"bufio"
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/time/rate"

	"github.com/shardchat/shardchat/shard"
	"github.com/shardchat/shardchat/transport/auth"
	"github.com/shardchat/shardchat/transport/wire"
)

// errSessionClosed ends a session's loops once the writer has closed the connection.
var errSessionClosed = errors.New("session closed")

// errPingTimeout ends a session whose client stopped answering pings (WebSocket pings on /ws,
// Engine.IO pings on /socket.io/).
var errPingTimeout = errors.New("client did not answer a ping within the ping timeout")

// session is one WebSocket connection: a reader that decodes, validates and rate-limits the
// client's requests and calls the hub, and a writer that drains the outbox into frames. Its
// protocol (native, or Socket.IO) decides what goes over the wire; the rest is shared.
//
// Send, SendBestEffort, SendLater and Flush (the shard.Member side) are called by shard
// goroutines; closeWith and cut by anyone (the watchdog cuts), and unpark with them (park.go);
// alive by whichever goroutine reads a frame (the reader, or the writer during the library's
// close handshake); resume by the poller's goroutine, which starts a new reader; the rest by
// the reader of the moment alone (one at a time: a parked session has none).
type session struct {
	// Static after construction.
	id   uint64
	srv  *Server
	conn *websocket.Conn
	raw  net.Conn // the connection under conn, for data frames (frame.go)
	// The library's reader of raw and raw's file descriptor, to wait for input (idle.go);
	// rawConn is nil when raw is not a plain socket, or where there is no peek.
	buffered         *bufio.Reader
	rawConn          syscall.RawConn
	inputArrivedFunc func(fd uintptr) bool // s.inputArrived, as a value made once
	remote           string
	out              *outbox
	proto            protocol
	metrics          *protoMetrics

	// bufferMu keeps waitInput's look at buffered from racing with the library's Close,
	// which reads the close handshake through it on the writer's goroutine.
	bufferMu sync.Mutex
	early    bool // owned by the reader; see waitInput
	// Owned by the reader. parkNext: the client answered a ping (a pong, or Socket.IO's) and has
	// sent nothing else since, or its last frame came after a long silence (parkGap); the
	// reader parks when it waits for input next. lastFrame: when the last frame came (Unix
	// nanoseconds; 0 before the first).
	parkNext  bool
	lastFrame int64

	// Parking (park.go): parked says that no reader runs and the poller will start one.
	parked  atomic.Bool
	armFunc func(fd uintptr) // s.arm, as a value made once
	// Guarded by pollMu.
	pollMu     sync.Mutex
	registered bool  // the socket is in the poller's set
	noPark     bool  // the session is ending: its reader waits on the runtime's poller
	armErr     error // what the last arm reported

	lastRead     atomic.Int64 // Unix nanoseconds of the last frame read, for idle pings
	writingSince atomic.Int64 // Unix nanoseconds when the write under way began; 0 when none
	pingDue      atomic.Bool  // the watchdog found the connection idle: the writer pings it
	// writerWaiting is when the writer began to wait for something to write (Unix
	// nanoseconds; 0 while it writes, or when none runs); retireDue asks it to exit.
	writerWaiting atomic.Int64
	retireDue     atomic.Bool
	// pingSent is when the ping that awaits its pong went out (Unix nanoseconds); 0 when
	// none does, -1 once the client was dropped for not answering (awaitingPong).
	pingSent atomic.Int64

	// The session's lifetime: cancelled (cancel) when the reader or the writer ends it.
	ctx     context.Context
	stopCtx context.CancelCauseFunc

	// The writer goroutine runs only while there is something to write (writer.go).
	// Guarded by writerMu.
	writerMu    sync.Mutex
	writerOn    bool
	writersDone bool // the session is ending: no writer may start
	writers     sync.WaitGroup

	// Guarded by closeMu.
	closeMu     sync.Mutex
	closeCode   wire.CloseCode // 0 while open; the first reason given wins
	closeReason string

	// Set before run starts, or by the reader (a Socket.IO CONNECT) before any join.
	claims *auth.Claims // the token's, when authentication is on
	onEnd  func()       // the server's accounting for the end of the session; may be nil
	expiry *time.Timer  // closes the session when the token expires

	// Written by the reader alone, under roomsMu; the writer reads them under roomsMu when
	// it takes the member out of its rooms before a restart close.
	roomsMu sync.Mutex
	user    string
	rooms   map[string]struct{}

	// Owned by the reader.
	messages *rate.Limiter // chat messages: --rate and --burst
	requests *rate.Limiter // every frame, a looser bound on requests that cost the server
	abuse    *rate.Limiter // refused requests; running out closes with 1008
	reply    chan error    // shard replies; one request at a time

	// The session's logger, built on first use: most sessions never log, and the reader,
	// the writer and the watchdog may all log.
	logOnce sync.Once
	logger  *slog.Logger
}

func newSession(srv *Server, id uint64, conn *websocket.Conn, remote string, proto protocol) *session {
	cfg := &srv.cfg
	s := &session{
		id:       id,
		srv:      srv,
		conn:     conn,
		remote:   remote,
		out:      newOutbox(cfg.Queue),
		proto:    proto,
		metrics:  srv.metrics.forProto(proto.name()),
		rooms:    make(map[string]struct{}),
		messages: rate.NewLimiter(rate.Limit(cfg.Rate), cfg.Burst),
		requests: rate.NewLimiter(rate.Limit(cfg.RequestRate), cfg.RequestBurst),
		abuse:    rate.NewLimiter(rate.Limit(cfg.AbuseRate), cfg.AbuseBurst),
		reply:    make(chan error, 1),
	}
	s.ctx, s.stopCtx = context.WithCancelCause(srv.baseCtx)
	s.lastRead.Store(time.Now().UnixNano())
	return s
}

func (s *session) log() *slog.Logger {
	s.logOnce.Do(func() { s.logger = s.srv.log.With("conn", s.id, "remote", s.remote) })
	return s.logger
}

// Send queues obj in the session's protocol; see shard.Member.
func (s *session) Send(obj []byte) bool { return s.proto.deliver(s, obj, sendNow) }

// SendBestEffort queues obj unless the queue is more than half full; see shard.Member.
func (s *session) SendBestEffort(obj []byte) bool { return s.proto.deliver(s, obj, sendBestEffort) }

// SendLater queues obj to be written at the shard's late flush; see shard.Member.
func (s *session) SendLater(obj []byte) bool { return s.proto.deliver(s, obj, sendLater) }

// Flush wakes the writer; see shard.Member. A shard's late flush may find the queue written
// already: then no writer is started for nothing.
func (s *session) Flush() { s.wakeWriterIfPending() }

// add puts one frame (or object, for protocols that join them) in the outbox without waking
// the writer, and reports whether it needs waking; see shard.Member.
func (s *session) add(frame []byte, mode sendMode) bool { return s.out.add(frame, mode) }

// queue puts one frame in the outbox and wakes the writer: for what the session itself
// sends, outside any shard's batch.
func (s *session) queue(frame []byte) {
	if s.out.add(frame, sendNow) {
		s.wakeWriter()
	}
}

// answer sends a native object from the session itself (an error, a pong) in its protocol.
func (s *session) answer(obj []byte) {
	if s.proto.deliver(s, obj, sendNow) {
		s.wakeWriter()
	}
}

// Kick closes the connection with code after what is queued; see shard.Member.
func (s *session) Kick(code wire.CloseCode, reason string) { s.closeWith(code, reason) }

// closeWith asks the writer to close the connection with code once it has written what is
// queued (at once, for a slow consumer).
func (s *session) closeWith(code wire.CloseCode, reason string) {
	s.closeMu.Lock()
	if s.closeCode == 0 {
		s.closeCode, s.closeReason = code, reason
	}
	s.closeMu.Unlock()
	s.wakeWriter()
}

// cut drops the connection at once, without a close frame. It closes the socket itself: the
// library's CloseNow waits for a close handshake under way, and the watchdog that cuts must
// not wait on any one client.
func (s *session) cut() {
	s.unpark()
	_ = s.raw.Close()
}

func (s *session) closing() (wire.CloseCode, string) {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	return s.closeCode, s.closeReason
}

// run serves the session on the caller's goroutine until it ends, or until its reader parks
// (park.go): then the session goes on without a goroutine of its own, and the poller starts
// a reader when the client sends something. The writer runs only while there is something to
// write. At the end the member leaves its rooms, and onEnd runs.
func (s *session) run() {
	if s.claims != nil {
		s.watchExpiry()
	}
	s.proto.greet(s)
	s.read()
}

// read runs the reader until the session ends (and then ends it), or until it parks.
func (s *session) read() {
	s.parkNext = false // the poller saw input: look at it before parking again
	parked, err := s.readLoop(s.ctx)
	if !parked {
		s.end(err)
	}
}

// cancel ends the session's context with err as the cause, and wakes the writer: it waits on
// its outbox alone (a receive costs less than a select, and it waits once a delivery). Every
// end of a session goes through here, after the server's own stop too (end).
func (s *session) cancel(err error) {
	s.stopCtx(err)
	s.out.signal()
}

// end ends the session, which err ended, on the reader's goroutine.
func (s *session) end(err error) {
	s.cancel(err)
	s.stopWriters()
	// The library does not close the socket after every read error (a frame over the read
	// limit, say: it only sends its close frame).
	s.cut()
	s.out.close()
	s.leaveAll()
	if s.expiry != nil {
		s.expiry.Stop()
	}

	switch {
	case errors.Is(err, websocket.ErrMessageTooBig):
		s.metrics.closed(wire.CloseTooBig)
	case websocket.CloseStatus(err) != -1 && s.srv.log.Enabled(context.Background(), slog.LevelDebug):
		// Asked first: the session's logger is made at its first use, and most clients close.
		s.log().Debug("client closed", "code", int(websocket.CloseStatus(err)))
	}
	if s.onEnd != nil {
		s.onEnd()
	}
}

// watchExpiry closes the session with 4003 when its token expires. The reader calls it once
// it has the session's claims.
func (s *session) watchExpiry() {
	s.expiry = time.AfterFunc(time.Until(s.srv.cfg.Auth.Deadline(s.claims)), func() {
		s.closeWith(wire.CloseTokenExpired, "token expired; reconnect with a fresh token")
	})
}

// leaveAll takes the member out of every room it joined, telling the others.
// It may run twice (before a restart close, and at the end): a second leave is not_joined.
func (s *session) leaveAll() {
	ctx, cancel := context.WithTimeout(context.Background(), s.srv.cfg.WriteTimeout)
	defer cancel()
	s.roomsMu.Lock()
	user := s.user
	rooms := make([]string, 0, len(s.rooms))
	for room := range s.rooms {
		rooms = append(rooms, room)
	}
	s.roomsMu.Unlock()
	// A fresh channel: s.reply may hold the late answer to a request the reader gave up on.
	reply := make(chan error, 1)
	for _, room := range rooms {
		err := s.srv.cfg.Hub.Leave(ctx, shard.Request{Member: s, Room: room, User: user, Quiet: true, Reply: reply})
		if _, refused := errors.AsType[*wire.Error](err); err != nil && !refused { // not_joined: a join cut short, nothing to undo
			s.log().Warn("leave on disconnect failed", "err", err)
		}
	}
}

// readLoop reads and serves the client's frames until the session must end (err) or the
// reader parks (parked).
func (s *session) readLoop(ctx context.Context) (parked bool, err error) {
	for {
		if s.waitInput() {
			return true, nil
		}
		// Not ctx: the library would register a callback on it for every frame (an
		// allocation and a lock); whatever cancels the session closes the socket instead.
		typ, r, err := s.conn.Reader(context.Background())
		if err != nil {
			return false, err
		}
		s.alive()
		now := s.lastRead.Load() // what alive stored: one clock read a frame
		s.parkNext = s.lastFrame == 0 || now-s.lastFrame >= int64(parkGap)
		s.lastFrame = now
		s.metrics.received.Inc()
		bufp := s.srv.readBufs.Get().(*[]byte)
		frame, err := wire.AppendRead((*bufp)[:0], r) // the read limit bounds it
		if err != nil {
			return false, err
		}
		err = s.proto.serve(ctx, s, typ, frame)
		*bufp = frame[:0]
		s.srv.readBufs.Put(bufp)
		if err != nil {
			return false, err
		}
	}
}

// handle serves one client frame. It returns an error only when the session must end.
func (s *session) handle(ctx context.Context, frame []byte) error {
	req, perr := wire.Decode(frame)
	return s.serveRequest(ctx, &req, perr)
}

// serveRequest serves one request, which perr refused if it is not nil: a decoded frame, or a
// request a compatibility layer made (Socket.IO). It returns an error only when the session
// must end.
func (s *session) serveRequest(ctx context.Context, req *wire.Request, perr *wire.Error) error {
	// Limited after the decode, which is bounded by the frame size: the refusal carries the
	// request's ref, as every error does.
	if !s.requests.Allow() {
		s.refuse(req.Ref, wire.Errorf(wire.CodeRateLimited, "too many requests; slow down"))
		return nil
	}
	if perr != nil {
		s.refuse(req.Ref, perr)
		return nil
	}
	if req.Type == wire.TypePing {
		s.answer(wire.AppendPong(nil, req.Ref))
		return nil
	}
	return s.dispatch(ctx, req)
}

// dispatch serves one decoded request.
func (s *session) dispatch(ctx context.Context, req *wire.Request) error {
	if req.Type == wire.TypeJoin {
		return s.join(ctx, req)
	}
	if _, ok := s.rooms[req.Room]; !ok {
		s.refuse(req.Ref, wire.Errorf(wire.CodeNotJoined, "join room %s first", req.Room))
		return nil
	}
	hubReq := shard.Request{Member: s, Room: req.Room, Ref: req.Ref, User: s.user, Reply: s.reply}
	hub := s.srv.cfg.Hub
	var err error
	switch req.Type {
	case wire.TypeLeave:
		err = hub.Leave(ctx, hubReq)
		// Forgotten only once the shard has let go: a leave that timed out is retried by
		// leaveAll when the connection ends, so the member does not linger in the room.
		if werr, ok := errors.AsType[*wire.Error](err); err == nil || ok && werr.Code == wire.CodeNotJoined {
			s.roomsMu.Lock()
			delete(s.rooms, req.Room)
			s.roomsMu.Unlock()
		}
	case wire.TypeMessage:
		if !s.messages.Allow() {
			s.refuse(req.Ref, wire.Errorf(wire.CodeRateLimited, "at most %g messages a second", s.srv.cfg.Rate))
			return nil
		}
		hubReq.Text = req.Text
		s.metrics.messages.Inc()
		err = hub.Publish(ctx, hubReq)
	case wire.TypeTyping:
		hubReq.On = req.On
		err = hub.Typing(ctx, hubReq)
	case wire.TypeUsers:
		err = hub.Users(ctx, hubReq)
	case wire.TypeHistory:
		hubReq.Before, hubReq.Limit = req.Before, req.Limit
		err = hub.History(ctx, hubReq)
	}
	return s.outcome(req.Ref, err)
}

func (s *session) join(ctx context.Context, req *wire.Request) error {
	user := req.User
	if s.claims != nil {
		if user != "" && user != s.claims.Subject {
			s.refuse(req.Ref, wire.Errorf(wire.CodeUnauthorized, "your token is for %s; join as %s or without user", s.claims.Subject, s.claims.Subject))
			return nil
		}
		if !s.claims.MayJoin(req.Room) {
			s.refuse(req.Ref, wire.Errorf(wire.CodeUnauthorized, "your token does not allow room %s", req.Room))
			return nil
		}
		user = s.claims.Subject
	}
	switch {
	case s.user == "" && user == "":
		s.refuse(req.Ref, wire.Errorf(wire.CodeInvalidUser, "user is required on the first join"))
		return nil
	case s.user != "" && user == "":
		user = s.user
	case s.user != "" && user != s.user:
		s.refuse(req.Ref, wire.Errorf(wire.CodeInvalidUser, "this connection is %s; a later join must give the same user or none", s.user))
		return nil
	}
	_, already := s.rooms[req.Room]
	if !already && len(s.rooms) >= s.srv.cfg.MaxRooms {
		s.refuse(req.Ref, wire.Errorf(wire.CodeRoomLimit, "at most %d rooms per connection", s.srv.cfg.MaxRooms))
		return nil
	}
	// Recorded before the call, so that a join cut short by a disconnect is still undone.
	s.roomsMu.Lock()
	s.rooms[req.Room] = struct{}{}
	s.roomsMu.Unlock()
	err := s.srv.cfg.Hub.Join(ctx, shard.Request{
		Member: s, Room: req.Room, Ref: req.Ref, User: user, Since: req.Since, Reply: s.reply,
	})
	s.roomsMu.Lock()
	if _, refused := errors.AsType[*wire.Error](err); refused && !already {
		delete(s.rooms, req.Room)
	}
	if err == nil {
		s.user = user
	}
	s.roomsMu.Unlock()
	return s.outcome(req.Ref, err)
}

// outcome turns a hub error into an error object, a 1011 close, or the end of the session.
func (s *session) outcome(ref string, err error) error {
	if err == nil {
		return nil
	}
	// AsType, not As: As's pointer argument would put werr on the heap for every request.
	if werr, ok := errors.AsType[*wire.Error](err); ok {
		s.refuse(ref, werr)
		return nil
	}
	switch {
	case errors.Is(err, shard.ErrInternal):
		s.closeWith(wire.CloseInternal, "internal error")
		return nil
	default:
		return err // the session or the server is ending
	}
}

// refuse answers a request with an error object, counts it, and closes a client that keeps
// sending bad requests with 1008.
func (s *session) refuse(ref string, e *wire.Error) {
	s.srv.metrics.refused.WithLabelValues(string(e.Code), s.proto.name()).Inc()
	s.answer(wire.AppendError(nil, ref, e))
	if !s.abuse.Allow() {
		s.closeWith(wire.ClosePolicy, "too many bad requests")
	}
}

// alive records a sign of life from the client: a frame read, or a pong (any pong, answer to
// our ping or not), which waitInput takes off the socket or the library reads and hands to
// its OnPongReceived, on whichever goroutine reads.
func (s *session) alive() {
	s.lastRead.Store(time.Now().UnixNano())
	// Not a dropped client's -1: a frame it sent before the cut must not have it pinged, and
	// counted, again.
	if sent := s.pingSent.Load(); sent > 0 {
		s.pingSent.CompareAndSwap(sent, 0)
	}
}

// awaitingPong reports whether a ping sent to the client still awaits an answer, and drops
// the client once that answer is PingTimeout late. Each protocol's keepalive asks it before it
// thinks of another ping. Any frame or pong from the client answers (alive, above): it shows
// the client is there, as a pong would.
func (s *session) awaitingPong(now time.Time) bool {
	sent := s.pingSent.Load()
	if sent == 0 {
		return false
	}
	// -1 marks a client already dropped, for the ticks until its session ends.
	if timeout := s.srv.cfg.PingTimeout; sent > 0 && now.Sub(time.Unix(0, sent)) > timeout && s.pingSent.CompareAndSwap(sent, -1) {
		s.log().Debug("closing a client that did not answer a ping", "timeout", timeout)
		s.metrics.pingTimeouts.Inc()
		s.cancel(errPingTimeout) // first: the reader's error on the cut socket is not the cause
		s.cut()
	}
	return true
}
