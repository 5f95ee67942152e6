package transport

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/shardchat/shardchat/transport/auth"
	"github.com/shardchat/shardchat/transport/sio"
	"github.com/shardchat/shardchat/transport/wire"
)

// socketIO is the protocol of socket.io-client v4 front ends: Socket.IO v5 over Engine.IO v4
// on a WebSocket, at /socket.io/. Its events (those of the Node.js app shardchat replaces) map
// onto the same requests as the native protocol: the session builds a native request from
// each event and runs it through the same validation, limits and hub calls, and turns the
// native objects it is sent into Socket.IO events and acknowledgements. docs/socketio.md has
// the mapping.
type socketIO struct {
	// Static after construction.
	sid   string
	cache *derivedCache

	lastPing atomic.Int64 // Unix ns of the last Engine.IO ping (or of the session's start)

	// Owned by the reader.
	connected bool

	// Guarded by mu: the reader and shard goroutines both use them.
	mu      sync.Mutex
	user    string              // from the first joined
	current string              // the room a bare message or typing goes to: the last joined
	rooms   map[string][]string // the sorted users of each room joined, kept up by presence
}

// ackRefPrefix marks the refs of requests that asked for an acknowledgement; the ack id
// follows. Refs are opaque to the server, and copied into replies and the sender's message.
const ackRefPrefix = "sio-ack:"

func newSocketIO(sid string, cache *derivedCache) *socketIO {
	p := &socketIO{sid: sid, cache: cache, rooms: make(map[string][]string)}
	// From the start: the watchdog may look at the session before greet has sent the open
	// packet, and a ping must not go before it.
	p.lastPing.Store(time.Now().UnixNano())
	return p
}

func (p *socketIO) name() string { return "socketio" }

func (p *socketIO) greet(s *session) {
	cfg := &s.srv.cfg
	s.queue(sio.AppendOpen(nil, sio.Open{
		SID:          p.sid,
		PingInterval: cfg.PingInterval.Milliseconds(),
		PingTimeout:  cfg.PingTimeout.Milliseconds(),
		MaxPayload:   wire.MaxFrame,
	}))
}

func (p *socketIO) joinFrames() bool { return false } // one Engine.IO packet a frame

// keepalive sends Engine.IO pings every PingInterval, as Engine.IO clients expect whether or
// not the connection is busy, and ends the session when the client sends nothing within
// PingTimeout of one (socket.io-client closes on its side when pings stop coming).
func (p *socketIO) keepalive(s *session, now time.Time) {
	if s.awaitingPong(now) {
		return
	}
	if now.Sub(time.Unix(0, p.lastPing.Load())) >= s.srv.cfg.PingInterval {
		p.lastPing.Store(now.UnixNano())
		s.pingSent.Store(now.UnixNano()) // before the queue: the pong may come before it returns
		s.queue([]byte{sio.EIOPing})
	}
}

func (p *socketIO) serve(ctx context.Context, s *session, typ websocket.MessageType, frame []byte) error {
	if typ != websocket.MessageText {
		p.refuse(s, -1, wire.Errorf(wire.CodeBadRequest, "binary packets are not supported; send JSON"))
		return nil
	}
	t, payload, err := sio.ParseEngine(frame)
	if err != nil {
		p.refuse(s, -1, wire.Errorf(wire.CodeBadRequest, "not an Engine.IO packet: %v", err))
		return nil
	}
	switch t {
	case sio.EIOPong: // the reader's alive took it as the answer
		s.parkNext = true // park until the client sends more (park.go)
		return nil
	case sio.EIOPing: // a client's own probe: answer it
		s.queue(append([]byte{sio.EIOPong}, payload...))
		return nil
	case sio.EIOClose:
		s.closeWith(wire.CloseNormal, "client closed")
		return nil
	case sio.EIONoop, sio.EIOUpgrade:
		return nil
	case sio.EIOMessage:
	default:
		p.refuse(s, -1, wire.Errorf(wire.CodeBadRequest, "unexpected Engine.IO packet"))
		return nil
	}
	pkt, err := sio.Parse(payload)
	if err != nil {
		p.refuse(s, -1, wire.Errorf(wire.CodeBadRequest, "bad Socket.IO packet: %v", err))
		return nil
	}
	switch pkt.Type {
	case sio.Connect:
		p.connect(s, pkt)
	case sio.Disconnect:
		s.closeWith(wire.CloseNormal, "client disconnected")
	case sio.Event:
		if !p.connected {
			s.queue(sio.AppendConnectError(nil, pkt.Namespace, "send CONNECT first"))
			return nil
		}
		if pkt.Namespace != "/" {
			p.refuse(s, pkt.AckID, wire.Errorf(wire.CodeBadRequest, "namespace %s is not served; use the default namespace", pkt.Namespace))
			return nil
		}
		return p.event(ctx, s, pkt)
	case sio.Ack: // the server asks for no acks
	default:
		p.refuse(s, -1, wire.Errorf(wire.CodeBadRequest, "unexpected Socket.IO packet"))
	}
	return nil
}

// connect answers a CONNECT: the default namespace only, with a token in its auth object
// when authentication is on and the upgrade carried none.
func (p *socketIO) connect(s *session, pkt sio.Packet) {
	if pkt.Namespace != "/" {
		s.queue(sio.AppendConnectError(nil, pkt.Namespace, "Invalid namespace"))
		return
	}
	if s.srv.cfg.Auth != nil && s.claims == nil {
		var authObj struct {
			Token string `json:"token"`
		}
		if len(pkt.Data) > 0 {
			_ = json.Unmarshal(pkt.Data, &authObj) // a missing or odd token is refused below
		}
		claims, err := s.srv.cfg.Auth.Verify(authObj.Token)
		if err != nil {
			reason := auth.ReasonClaims
			var refusal *auth.Refusal
			if errors.As(err, &refusal) {
				reason = refusal.Reason
			}
			s.srv.metrics.upgradesRefused.WithLabelValues(reason.Metric).Inc()
			s.queue(sio.AppendConnectError(nil, "/", reason.Message))
			if !s.abuse.Allow() {
				s.closeWith(wire.ClosePolicy, "too many bad requests")
			}
			return
		}
		s.claims = claims
		s.watchExpiry()
	}
	p.connected = true
	s.queue(sio.AppendConnect(nil, "/", p.sid))
}

// sioRoomArg reads {room} or a bare room name.
type sioArgs struct {
	Username *string     `json:"username"`
	Room     *string     `json:"room"`
	Text     *string     `json:"text"`
	IsTyping *bool       `json:"isTyping"`
	Since    *wire.Since `json:"since"`
}

// event turns a Socket.IO event into a native request, and validates and serves it as a
// native frame's.
func (p *socketIO) event(ctx context.Context, s *session, pkt sio.Packet) error {
	name, args, err := sio.EventArgs(pkt.Data)
	if err != nil {
		p.refuse(s, pkt.AckID, wire.Errorf(wire.CodeBadRequest, "%v", err))
		return nil
	}
	req := wire.ClientRequest{}
	if pkt.AckID >= 0 {
		req.Ref = ackRefPrefix + strconv.FormatInt(pkt.AckID, 10)
	}
	var a sioArgs
	var bare json.RawMessage // a string or a boolean instead of an object
	if len(args) > 0 {
		if t := bytes.TrimSpace(args[0]); len(t) > 0 && t[0] == '{' {
			if err := json.Unmarshal(t, &a); err != nil {
				p.refuse(s, pkt.AckID, wire.Errorf(wire.CodeBadRequest, "%s: %v", name, err))
				return nil
			}
		} else {
			bare = t
		}
	}
	p.mu.Lock()
	current := p.current
	p.mu.Unlock()
	room := current
	if a.Room != nil {
		room = *a.Room
	}
	switch name {
	case "join":
		req.Type, req.Room, req.Since = wire.TypeJoin, room, a.Since
		if a.Room == nil {
			req.Room = "" // a join names its room
		}
		if a.Username != nil {
			req.User = *a.Username
		}
	case "message":
		req.Type, req.Room = wire.TypeMessage, room
		switch {
		case a.Text != nil:
			req.Text = *a.Text
		case bare != nil:
			if err := json.Unmarshal(bare, &req.Text); err != nil {
				p.refuse(s, pkt.AckID, wire.Errorf(wire.CodeBadRequest, "message: a string, or {room, text}"))
				return nil
			}
		}
	case "typing":
		on := false
		switch {
		case a.IsTyping != nil:
			on = *a.IsTyping
		case bare != nil:
			if err := json.Unmarshal(bare, &on); err != nil {
				p.refuse(s, pkt.AckID, wire.Errorf(wire.CodeBadRequest, "typing: true, false, or {room, isTyping}"))
				return nil
			}
		}
		req.Type, req.Room, req.On = wire.TypeTyping, room, &on
	case "leave":
		req.Type, req.Room = wire.TypeLeave, room
		if bare != nil {
			_ = json.Unmarshal(bare, &req.Room) // leave "room" as well as leave {room}
		}
	case "users":
		req.Type, req.Room = wire.TypeUsers, room
	default:
		p.refuse(s, pkt.AckID, wire.Errorf(wire.CodeUnknownType, "unknown event %.32q", name))
		return nil
	}
	if req.Room == "" && req.Type != wire.TypeJoin {
		p.refuse(s, pkt.AckID, wire.Errorf(wire.CodeNotJoined, "join a room first"))
		return nil
	}
	valid, perr := req.Validate()
	return s.serveRequest(ctx, &valid, perr)
}

// refuse answers a refused request with an ack (when it asked for one) or an error event.
func (p *socketIO) refuse(s *session, ackID int64, e *wire.Error) {
	ref := ""
	if ackID >= 0 {
		ref = ackRefPrefix + strconv.FormatInt(ackID, 10)
	}
	s.refuse(ref, e)
}

// ackID reads the ack id out of a ref made by event.
func ackID(ref string) (int64, bool) {
	if !strings.HasPrefix(ref, ackRefPrefix) {
		return 0, false
	}
	id, err := strconv.ParseInt(ref[len(ackRefPrefix):], 10, 64)
	return id, err == nil
}

// objectType reads the type of a native object, which the encoders always write first.
func objectType(obj []byte) []byte {
	const prefix = `{"type":"`
	if !bytes.HasPrefix(obj, []byte(prefix)) {
		return nil
	}
	rest := obj[len(prefix):]
	end := bytes.IndexByte(rest, '"')
	if end < 0 {
		return nil
	}
	return rest[:end]
}

// sioMessage is a chat message as Socket.IO clients get it.
type sioMessage struct {
	Room     string `json:"room"`
	Seq      uint64 `json:"seq"`
	Username string `json:"username"`
	Text     string `json:"text"`
	Time     int64  `json:"time"`
}

func toSIOMessage(ev *wire.Event) sioMessage {
	return sioMessage{Room: ev.Room, Seq: ev.Seq, Username: ev.User, Text: ev.Text, Time: ev.TS}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only plain structs of strings, numbers and slices go here
	}
	return b
}

// convertBroadcast makes the Socket.IO form of an object that shards fan out.
func convertBroadcast(obj []byte) (*derived, error) {
	var ev wire.Event
	if err := json.Unmarshal(obj, &ev); err != nil {
		return nil, err
	}
	d := &derived{kind: ev.Type, room: ev.Room, user: ev.User, ref: ev.Ref, seq: ev.Seq}
	switch ev.Type {
	case wire.TypeMessage:
		d.frame = sio.AppendEvent(nil, "message", mustJSON(toSIOMessage(&ev)))
	case wire.TypeTyping:
		d.frame = sio.AppendEvent(nil, "typing", mustJSON(struct {
			Room     string `json:"room"`
			Username string `json:"username"`
			IsTyping bool   `json:"isTyping"`
		}{ev.Room, ev.User, ev.On}))
	case wire.TypePresence:
		d.join = ev.Event == wire.PresenceJoin
		name := "left"
		if d.join {
			name = "joined"
		}
		d.frame = sio.AppendEvent(nil, name, mustJSON(struct {
			Room     string `json:"room"`
			Username string `json:"username"`
		}{ev.Room, ev.User}))
	}
	return d, nil
}

// deliver turns a native object into Socket.IO frames. Objects fanned out to a room come
// through the shared cache; replies meant for this member alone are converted here.
func (p *socketIO) deliver(s *session, obj []byte, mode sendMode) bool {
	switch string(objectType(obj)) {
	case wire.TypeMessage, wire.TypeTyping, wire.TypePresence:
		d, err := p.cache.get(obj, convertBroadcast)
		if err != nil {
			s.log().Error("cannot convert an object for socket.io", "err", err)
			return false
		}
		return p.deliverBroadcast(s, d, mode)
	case wire.TypeWelcome, wire.TypePong:
		return false // Engine.IO has its own greeting and heartbeat
	default:
		var ev wire.Event
		if err := json.Unmarshal(obj, &ev); err != nil {
			s.log().Error("cannot read an object for socket.io", "err", err)
			return false
		}
		return p.deliverReply(s, &ev)
	}
}

// delivery collects the frames of one delivery and whether the writer needs waking.
type delivery struct {
	s    *session
	mode sendMode
	wake bool
}

func (o *delivery) add(frame []byte) {
	if o.s.add(frame, o.mode) {
		o.wake = true
	}
}

func (p *socketIO) deliverBroadcast(s *session, d *derived, mode sendMode) bool {
	o := delivery{s: s, mode: mode}
	o.add(d.frame)
	switch d.kind {
	case wire.TypeMessage:
		id, acked := ackID(d.ref) // most messages carry no ack ref: no lock for them
		if acked {
			p.mu.Lock()
			own := d.user == p.user
			p.mu.Unlock()
			if own {
				o.add(sio.AppendAck(nil, id, mustJSON(struct {
					OK  bool   `json:"ok"`
					Seq uint64 `json:"seq"`
				}{true, d.seq})))
			}
		}
	case wire.TypePresence:
		// Socket.IO clients get the whole list whenever it changes.
		if frame, ok := p.usersAfter(d); ok {
			o.add(frame)
		}
	}
	return o.wake
}

// usersAfter takes presence d into this member's list of its room and returns the users
// event to send, made once per event for all the members (see derived.users). ok is false
// when this member has left the room.
func (p *socketIO) usersAfter(d *derived) (frame []byte, ok bool) {
	p.mu.Lock()
	before, ok := p.rooms[d.room]
	p.mu.Unlock()
	if !ok {
		return nil, false
	}
	d.usersOnce.Do(func() {
		d.users = withPresence(before, d.user, d.join)
		d.usersFrame = usersEvent(d.room, d.users)
	})
	p.mu.Lock()
	if _, still := p.rooms[d.room]; still {
		p.rooms[d.room] = d.users
	}
	p.mu.Unlock()
	return d.usersFrame, true
}

// withPresence returns a new sorted list: users with user added (join) or removed.
func withPresence(users []string, user string, join bool) []string {
	i, found := slices.BinarySearch(users, user)
	switch {
	case join && !found:
		return slices.Insert(slices.Clip(users), i, user) // Clip: a copy, never in place
	case !join && found:
		return slices.Concat(users[:i], users[i+1:])
	}
	return users
}

func usersEvent(room string, users []string) []byte {
	return sio.AppendEvent(nil, "users", mustJSON(struct {
		Room  string   `json:"room"`
		Users []string `json:"users"`
	}{room, users}))
}

// deliverReply converts a reply to one of this member's requests.
func (p *socketIO) deliverReply(s *session, ev *wire.Event) bool {
	o := delivery{s: s}
	id, hasAck := ackID(ev.Ref)
	switch ev.Type {
	case wire.TypeJoined:
		users := slices.Clone(ev.Users)
		slices.Sort(users)
		p.mu.Lock()
		p.user, p.current, p.rooms[ev.Room] = ev.User, ev.Room, users
		p.mu.Unlock()
		if hasAck {
			history := make([]sioMessage, len(ev.History))
			for i := range ev.History {
				history[i] = toSIOMessage(&ev.History[i])
			}
			o.add(sio.AppendAck(nil, id, mustJSON(struct {
				OK        bool         `json:"ok"`
				Room      string       `json:"room"`
				Users     []string     `json:"users"`
				History   []sioMessage `json:"history"`
				Epoch     string       `json:"epoch"`
				Seq       uint64       `json:"seq"`
				Recovered bool         `json:"recovered"`
			}{true, ev.Room, users, history, ev.Epoch, ev.Seq, ev.Recovered})))
		}
		o.add(usersEvent(ev.Room, users))
	case wire.TypeLeft:
		p.mu.Lock()
		delete(p.rooms, ev.Room)
		if p.current == ev.Room {
			p.current = ""
			for room := range p.rooms {
				p.current = room // any room still joined
				break
			}
		}
		p.mu.Unlock()
		if hasAck {
			o.add(sio.AppendAck(nil, id, []byte(`{"ok":true}`)))
		}
	case wire.TypeUsers:
		if hasAck {
			o.add(sio.AppendAck(nil, id, mustJSON(struct {
				OK    bool     `json:"ok"`
				Room  string   `json:"room"`
				Users []string `json:"users"`
			}{true, ev.Room, ev.Users})))
			return o.wake
		}
		o.add(usersEvent(ev.Room, ev.Users))
	case wire.TypeError:
		body := mustJSON(struct {
			OK      bool      `json:"ok"`
			Code    wire.Code `json:"code"`
			Message string    `json:"message"`
		}{false, ev.Code, ev.Message})
		if hasAck {
			o.add(sio.AppendAck(nil, id, body))
			return o.wake
		}
		o.add(sio.AppendEvent(nil, "error", mustJSON(struct {
			Code    wire.Code `json:"code"`
			Message string    `json:"message"`
		}{ev.Code, ev.Message})))
	}
	return o.wake
}
