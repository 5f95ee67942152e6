package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/time/rate"

	"github.com/shardchat/shardchat/transport/wire"
)

// maxServerFrame bounds what the bench reads in one frame. The server joins objects into
// frames of about 64 KiB, but one joined object with a full history can be larger.
const maxServerFrame = 16 << 20

// joinRef is the ref of a client's join, told apart from its messages' refs by having no dot.
const joinRef = "j"

// closeAbnormal stands for a connection that ended without a close frame (RFC 6455's 1006).
const closeAbnormal = 1006

// client is one simulated user: one WebSocket connection in one room.
//
// connect runs on a dialer goroutine. After it, readLoop runs on the client's own goroutine
// and owns the accounting; sendLoop runs on another during the send phase. They, the phase
// watchdogs and the progress bar see each other only through the atomic fields.
type client struct {
	// Static after construction.
	w    *worker
	id   int // the global user index; the user name is "u<id>"
	room int // the global room index
	url  string
	http *http.Client
	kick chan struct{} // capacity 1: wakes the sender after an echo or a refusal
	done chan struct{} // closed when readLoop returns

	// Set by connect, read-only afterwards.
	conn    *websocket.Conn
	limits  wire.Limits
	joined  bool
	joinSeq uint64

	// Owned by readLoop; read by others once done is closed.
	track        roomTrack
	stray        int64 // message objects of another room or without a seq
	undecodable  int64 // lines that are not protocol objects, and binary frames
	errCodes     map[string]int64
	closeCode    int // the server's close code; 0 when the bench closed the connection
	lastDelivery int64
	lastAck      int64
	stalled      bool // the slow-reader test hook has paused once

	// Written by readLoop, read by anyone.
	delivered  atomic.Int64
	contiguous atomic.Uint64 // every seq up to this one has arrived
	maxSeq     atomic.Uint64
	acked      atomic.Int64 // echoes of its own messages
	refused    atomic.Int64 // its messages refused with rate_limited: sent again
	failed     atomic.Int64 // its messages refused with another code
	closing    atomic.Bool  // set before the bench closes the connection itself

	// Written by sendLoop, read by anyone.
	sent    atomic.Int64
	writing atomic.Bool // in a write, which blocks while the server does not read
}

func newClient(w *worker, id int, url string, hc *http.Client) *client {
	return &client{
		w:    w,
		id:   id,
		room: w.spec.Workload.roomOf(id),
		url:  url,
		http: hc,
		kick: make(chan struct{}, 1),
		done: make(chan struct{}),
	}
}

// connectError is why a client did not get into its room: a one-line reason, and whether the
// connection was made (the join was refused).
type connectError struct {
	reason    string
	connected bool
}

func (e *connectError) Error() string { return e.reason }

// connect dials, waits for welcome (the connect time), joins the client's room and waits for
// joined. On success the connection is open and readLoop must be started.
func (c *client) connect(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.w.spec.ConnectTimeout)
	defer cancel()
	start := time.Now()
	conn, resp, err := websocket.Dial(ctx, c.url, &websocket.DialOptions{HTTPClient: c.http})
	if err != nil {
		return &connectError{reason: dialReason(resp, err)}
	}
	conn.SetReadLimit(maxServerFrame)
	fail := func(format string, args ...any) error {
		_ = conn.CloseNow()
		return &connectError{reason: fmt.Sprintf(format, args...), connected: true}
	}

	frame, err := readFrame(ctx, conn)
	if err != nil {
		return fail("no welcome: %v", shortError(err))
	}
	events, err := wire.DecodeFrame(nil, frame)
	if len(events) == 0 || events[0].Type != wire.TypeWelcome || events[0].Limits == nil {
		return fail("the first object is not a welcome with limits: %.80q", frame)
	}
	if err != nil {
		return fail("after the welcome: %v", err)
	}
	c.w.connectTimes.recordMicros(c.id, []int64{time.Since(start).Microseconds()})
	c.conn, c.limits = conn, *events[0].Limits
	events = events[1:]

	join, _ := json.Marshal(wire.ClientRequest{Type: wire.TypeJoin, Room: c.w.roomName(c.room), User: userName(c.id), Ref: joinRef})
	if err := conn.Write(ctx, websocket.MessageText, join); err != nil {
		return fail("send join: %v", shortError(err))
	}
	for {
		for _, ev := range events {
			if ev.Ref != joinRef {
				continue // presence of users joining after this one, say
			}
			switch ev.Type {
			case wire.TypeJoined:
				c.joined, c.joinSeq = true, ev.Seq
				c.track = newRoomTrack(ev.Seq)
				c.contiguous.Store(ev.Seq)
				c.maxSeq.Store(ev.Seq)
				return nil
			case wire.TypeError:
				c.noteError(string(ev.Code))
				return fail("join refused: %s", ev.Code)
			}
		}
		if frame, err = readFrame(ctx, conn); err != nil {
			if code := websocket.CloseStatus(err); code != -1 {
				c.closeCode = int(code) // the server closed it while it joined: a close seen all the same
			}
			return fail("no joined: %v", shortError(err))
		}
		if events, err = wire.DecodeFrame(events[:0], frame); err != nil {
			return fail("while joining: %v", err)
		}
	}
}

// readFrame reads one whole text frame during the handshake.
func readFrame(ctx context.Context, conn *websocket.Conn) ([]byte, error) {
	_, frame, err := conn.Read(ctx)
	return frame, err
}

// dialReason says in one line why a dial failed: the server's refusal with its reason, or the
// network error.
func dialReason(resp *http.Response, err error) string {
	if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
		var body []byte
		if resp.Body != nil {
			body, _ = io.ReadAll(io.LimitReader(resp.Body, 200))
		}
		line, _, _ := strings.Cut(strings.TrimSpace(string(body)), "\n")
		if line == "" {
			line = http.StatusText(resp.StatusCode)
		}
		reason := fmt.Sprintf("refused with HTTP %d: %s", resp.StatusCode, line)
		if resp.StatusCode == http.StatusTooManyRequests {
			// The server caps connections per client address, and the bench's clients all
			// come from one or a few.
			reason += " (spread the clients with --source-ips, or lift the server's --max-conns-per-ip and --connect-rate-per-ip)"
		}
		return reason
	}
	return shortError(err)
}

// shortError is the innermost useful part of a dial or read error. The report counts
// failures by it, so it names no local address: the same trouble on many connections is one
// reason, not one a port.
func shortError(err error) string {
	var op *net.OpError
	switch {
	case errors.As(err, &op):
		remote := *op
		remote.Source = nil
		return remote.Error()
	case errors.Is(err, context.DeadlineExceeded):
		return "timed out"
	case websocket.CloseStatus(err) != -1:
		return fmt.Sprintf("closed with %d", websocket.CloseStatus(err))
	}
	return err.Error()
}

func userName(id int) string { return fmt.Sprintf("u%d", id) }

// frameState is what readLoop carries from line to line of one frame.
type frameState struct {
	now     int64 // when the frame arrived, Unix nanoseconds
	obj     object
	latency [64]int64 // microseconds, flushed to the histogram when full and as readLoop ends
	n       int
}

// readLoop reads the server's frames until the connection ends, accounting for every object.
// It is the only reader of the connection: one goroutine per client, no timers, and a frame
// buffer borrowed from the worker's pool, since a buffer per client would cost more memory
// than the connection itself. The latency histogram is read only once the readers have ended,
// so latencies go to it in batches of len(frameState.latency), the rest as readLoop returns.
func (c *client) readLoop() {
	defer close(c.done)
	var st frameState
	defer c.flushLatency(&st)
	for {
		typ, r, err := c.conn.Reader(context.Background())
		if err != nil {
			c.noteClose(err)
			return
		}
		bufp := c.w.frameBufs.Get().(*[]byte)
		frame, err := wire.AppendRead((*bufp)[:0], r) // the read limit bounds it
		if err == nil {
			st.now = time.Now().UnixNano()
			if typ == websocket.MessageText {
				c.handleFrame(&st, frame)
			} else {
				c.undecodable++
			}
		}
		if cap(frame) <= 1<<20 {
			*bufp = frame[:0]
			c.w.frameBufs.Put(bufp)
		}
		if err != nil {
			c.noteClose(err)
			return
		}
		if c.w.spec.slow.users > c.id-c.w.spec.First && !c.stalled && c.track.delivered > 0 {
			c.stalled = true
			time.Sleep(c.w.spec.slow.pause) // test hook: a member that stops reading
		}
	}
}

// handleFrame accounts for every object of one frame.
func (c *client) handleFrame(st *frameState, frame []byte) {
	before := c.track.delivered
	for line := range bytes.SplitSeq(frame, []byte("\n")) {
		if len(line) > 0 {
			c.handleLine(st, line)
		}
	}
	if n := c.track.delivered - before; n > 0 {
		c.delivered.Add(n)
		c.contiguous.Store(c.track.next - 1)
		c.maxSeq.Store(c.track.maxSeq)
	}
}

func (c *client) handleLine(st *frameState, line []byte) {
	if m := c.w.seen.lookup(c.room, line); m != nil {
		c.handleMessage(st, m)
		return
	}
	o := &st.obj
	if err := scanObject(line, o); err != nil {
		c.undecodable++
		return
	}
	switch string(o.typ) {
	case wire.TypeMessage:
		if !o.hasSeq || string(o.room) != c.w.roomName(c.room) {
			c.stray++
			return
		}
		m := seenMessage{seq: o.seq}
		m.user, m.sent, m.refOK = parseRef(o.ref)
		if c.w.seen != nil {
			kept := m // only what is kept goes to the heap
			kept.line = bytes.Clone(line)
			c.w.seen.store(c.room, &kept)
		}
		c.handleMessage(st, &m)
	case wire.TypeError:
		c.noteError(string(o.code))
		if user, _, ok := parseRef(o.ref); ok && user == c.id {
			if string(o.code) == string(wire.CodeRateLimited) {
				c.refused.Add(1)
			} else {
				c.failed.Add(1)
			}
			c.wake()
		}
	}
}

// handleMessage accounts for a message of the client's room.
func (c *client) handleMessage(st *frameState, m *seenMessage) {
	if c.track.receive(m.seq) == receiptDuplicate {
		return
	}
	c.lastDelivery = st.now
	if !m.refOK {
		return // a message that the bench did not send
	}
	st.latency[st.n] = max(st.now-m.sent, 0) / int64(time.Microsecond)
	if st.n++; st.n == len(st.latency) {
		c.flushLatency(st)
	}
	if m.user == c.id {
		c.lastAck = st.now
		c.acked.Add(1)
		c.wake()
	}
}

func (c *client) flushLatency(st *frameState) {
	c.w.latency.recordMicros(c.id, st.latency[:st.n])
	st.n = 0
}

func (c *client) wake() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

func (c *client) noteError(code string) {
	if c.errCodes == nil {
		c.errCodes = make(map[string]int64)
	}
	c.errCodes[code]++
}

// noteClose records how the connection ended, unless the bench ended it.
func (c *client) noteClose(err error) {
	if c.closing.Load() {
		return
	}
	code := int(websocket.CloseStatus(err))
	if code == -1 {
		code = closeAbnormal
	}
	c.closeCode = code
}

// sendPlan is what one sender does in the send phase.
type sendPlan struct {
	start    time.Time
	deadline time.Time // when set, send until then instead of messages
	messages int
	rate     float64       // messages a second; 0: as fast as the server's limit allows
	offset   time.Duration // first send after start, so paced senders do not all send at once
	prefix   []byte        // the message object up to the ref's value
}

// rateMargin keeps the bench's token bucket a little behind the server's: the server sees a
// burst later than the bench sent it, and a refusal costs a round trip and a resend.
const rateMargin = 0.97

// sendLoop sends the plan's messages, paced by the plan's rate and by the token bucket the
// server announced in welcome, and resends a message the server refused with rate_limited.
// It returns once every message it sent was echoed or refused, or when ctx is done or the
// connection ends. One goroutine and one timer per sender, whatever the number of messages.
func (c *client) sendLoop(ctx context.Context, p sendPlan) {
	bucket := newServerBucket(c.limits)
	next := p.start.Add(p.offset)
	var interval time.Duration
	if p.rate > 0 {
		interval = time.Duration(float64(time.Second) / p.rate)
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	buf := make([]byte, 0, len(p.prefix)+48)
	var sent, seenRefused int64
	for {
		refused := c.refused.Load()
		if refused > seenRefused {
			bucket.empty(time.Now()) // the server's bucket was empty: wait for a token
			seenRefused = refused
		}
		now := time.Now()
		var more bool
		if !p.deadline.IsZero() {
			more = now.Before(p.deadline)
		} else {
			more = sent-refused < int64(p.messages) && refused <= int64(p.messages) // resend at most once a message on average
		}
		if !more {
			if sent <= c.acked.Load()+c.refused.Load()+c.failed.Load() && c.refused.Load() == refused {
				return // everything sent was answered, and nothing is left to resend
			}
			select {
			case <-c.kick:
			case <-c.done:
				return
			case <-ctx.Done():
				return
			}
			continue
		}
		at := next
		if !at.After(now) {
			at = now.Add(bucket.wait(now)) // the plan's time has come: the server's bucket decides
		}
		if at.After(now) {
			timer.Reset(at.Sub(now))
			select {
			case <-timer.C:
			case <-c.done:
				return
			case <-ctx.Done():
				return
			}
			continue
		}
		buf = appendRef(append(buf[:0], p.prefix...), c.id, now.UnixNano())
		buf = append(buf, `"}`...)
		c.writing.Store(true)
		err := c.conn.Write(context.Background(), websocket.MessageText, buf)
		c.writing.Store(false)
		if err != nil {
			return // the connection ended; readLoop records how
		}
		sent++
		c.sent.Store(sent)
		bucket.sent()
		next = next.Add(interval)
	}
}

// serverBucket mirrors the server's rate limit for one connection (the limiter of
// transport/session.go, at rateMargin of its rate), so that the sender waits rather than be
// refused. Owned by one sender.
type serverBucket struct {
	limit   rate.Limit
	burst   int
	lim     *rate.Limiter
	taken   bool              // the next message's token is taken: it may go
	reserve *rate.Reservation // or reserved, for when the bucket will have it
}

func newServerBucket(l wire.Limits) serverBucket {
	b := serverBucket{limit: rate.Inf, burst: max(l.Burst, 1)}
	if l.Rate > 0 { // 0: the server announced no limit
		b.limit = rate.Limit(l.Rate * rateMargin)
	}
	b.lim = rate.NewLimiter(b.limit, b.burst)
	return b
}

// wait takes the token of the next message and says how long until the message may go: 0
// when the bucket held one. Until sent, it keeps that token and says how long is left.
func (b *serverBucket) wait(now time.Time) time.Duration {
	switch {
	case b.taken:
		return 0
	case b.reserve != nil:
		return b.reserve.DelayFrom(now)
	case b.lim.AllowN(now, 1): // a token at hand, without a Reservation to allocate
		b.taken = true
		return 0
	}
	b.reserve = b.lim.ReserveN(now, 1)
	return b.reserve.DelayFrom(now)
}

// sent says that the message of the token went.
func (b *serverBucket) sent() { b.taken, b.reserve = false, nil }

// empty says that the server refused a message: its bucket is empty at now, whatever this one
// holds, and the next token comes a whole interval later.
func (b *serverBucket) empty(now time.Time) {
	b.lim = rate.NewLimiter(b.limit, b.burst)
	b.lim.ReserveN(now, b.burst)
	b.taken, b.reserve = false, nil
}
