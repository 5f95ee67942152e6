package transport

import (
	"context"
	"time"

	"github.com/coder/websocket"

	"github.com/shardchat/shardchat/transport/wire"
)

// writerLinger is how long a writer with nothing to write waits for more before it exits.
// A busy connection keeps its writer; an idle one holds no goroutine (and no stack) for it.
// The server's watchdog retires it (retireIdleWriter), so the linger is this plus up to one
// watchdog tick: a timer per writer would cost one for every writer started, which in a quiet
// room is one per member per message.
const writerLinger = 500 * time.Millisecond

// maxKeptBatch is the capacity up to which a writer keeps its batch's slice for the next
// batch (it trades places with the outbox's, so a busy member holds two): past it, a
// burst's slice is let go. At 64, most batches of a busy room (fanout averages 61 objects a
// batch) grew the queue from nothing again, seven allocations and copies each time. At 256
// the two cost 12 KiB a busy member; outbox.shrink takes the queue's back when the writer
// retires, so an idle member keeps neither.
const maxKeptBatch = 256

// wakeWriter makes sure a writer goroutine runs to write what is queued: it starts one when
// none runs, and otherwise wakes the one that waits. Any goroutine may call it; it never
// blocks.
func (s *session) wakeWriter() { s.wakeWriterFor(false) }

// wakeWriterIfPending is wakeWriter, except that it starts no writer for an outbox with
// nothing to write (a waiting writer is signalled anyway: a signal costs less than the look).
func (s *session) wakeWriterIfPending() { s.wakeWriterFor(true) }

// wakeWriterFor is wakeWriter, and wakeWriterIfPending when pendingOnly.
func (s *session) wakeWriterFor(pendingOnly bool) {
	s.writerMu.Lock()
	switch {
	case s.writersDone:
	case !s.writerOn && pendingOnly && !s.out.pending():
	case !s.writerOn:
		s.writerOn = true
		s.writers.Add(1)
		s.writerMu.Unlock()
		go s.writer()
		return
	default:
		s.out.signal()
	}
	s.writerMu.Unlock()
}

// stopWriters lets no new writer start and waits for the one that runs.
func (s *session) stopWriters() {
	s.writerMu.Lock()
	s.writersDone = true
	s.writerMu.Unlock()
	s.writers.Wait()
}

func (s *session) writer() {
	defer s.writers.Done()
	if err := s.writeLoop(); err != nil {
		s.writerMu.Lock()
		s.writersDone = true // the connection is done for: the session ends
		s.writerMu.Unlock()
		s.cancel(err)
		// The reader watches the socket, not the context (see readLoop): closing the
		// socket is what ends it. After a close handshake the socket is closed already.
		s.cut()
	}
}

// retireWriter ends the writer when nothing waits for it, and reports whether it did.
func (s *session) retireWriter() bool {
	s.writerMu.Lock()
	defer s.writerMu.Unlock()
	if s.out.pending() || s.pingDue.Load() {
		return false
	}
	if code, _ := s.closing(); code != 0 {
		return false
	}
	s.writerOn = false
	s.out.shrink()
	return true
}

// writeLoop writes what the outbox holds, all of it in as few frames as the frame cap
// allows, pings the client when the watchdog asks, and closes the connection when asked to.
// It returns nil when it retires for want of work, and an error when the session must end.
func (s *session) writeLoop() error {
	ctx := s.ctx // its end signals the outbox (session.cancel): the writer waits there alone
	cfg := &s.srv.cfg
	var batch [][]byte
	defer s.writerWaiting.Store(0)
	for {
		if s.pingDue.Swap(false) {
			if err := s.pingIfIdle(); err != nil {
				return err
			}
		}
		var overflowed bool
		var dropped int
		batch, overflowed, dropped = s.out.take(batch)
		if dropped > 0 {
			s.srv.metrics.typingDropped.Add(float64(dropped))
		}
		if overflowed {
			s.out.close()
			s.srv.metrics.slowConsumers.Inc()
			s.log().Info("slow consumer closed", "queue", cfg.Queue)
			return s.close(wire.CloseSlowConsumer, "slow consumer: too far behind")
		}
		wrote := len(batch) > 0
		if err := s.writeBatch(batch); err != nil {
			return err
		}
		clear(batch)
		if cap(batch) > maxKeptBatch {
			batch = nil // after a burst, give the memory back
		}
		if code, reason := s.closing(); code != 0 {
			// What was queued before the close was asked for (the error that led to a
			// 1008, say) may have come after the take above: write it too.
			batch, _, _ = s.out.take(batch)
			if err := s.writeBatch(batch); err != nil {
				return err
			}
			if code == wire.CloseRestart {
				// Give the names back before the client hears 1012: it reconnects at once,
				// maybe to another host, and must find its name free there.
				s.leaveAll()
			}
			return s.close(code, reason)
		}
		if wrote {
			continue // more may have come while writing
		}
		s.writerWaiting.Store(time.Now().UnixNano())
		<-s.out.wake // also when the session ends (session.cancel)
		s.writerWaiting.Store(0)
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		if s.retireDue.Swap(false) && s.retireWriter() {
			return nil
		}
	}
}

// retireIdleWriter has a writer that has waited for more than writerLinger exit, unless
// something comes meanwhile. The watchdog calls it.
func (s *session) retireIdleWriter(now time.Time) {
	if since := s.writerWaiting.Load(); since != 0 && now.UnixNano()-since >= int64(writerLinger) {
		s.retireDue.Store(true)
		s.out.signal()
	}
}

// close closes the connection with code and counts it.
func (s *session) close(code wire.CloseCode, reason string) error {
	s.metrics.closed(code)
	s.unpark() // the library closes the socket after the handshake
	s.bufferMu.Lock()
	_ = s.conn.Close(websocket.StatusCode(code), reason) // errors here mean the peer is gone already
	s.bufferMu.Unlock()
	return errSessionClosed
}

// pingFrame is a ping control frame with no payload (RFC 6455, 5.5.2): a server's frames are
// not masked.
var pingFrame = []byte{0x89, 0x00}

// pingIfIdle pings a client that has sent nothing for PingInterval. It writes the ping and
// goes on: the watchdog drops the client if the pong does not come within PingTimeout
// (session.awaitingPong).
func (s *session) pingIfIdle() error {
	if time.Since(time.Unix(0, s.lastRead.Load())) < s.srv.cfg.PingInterval {
		return nil
	}
	// Set first: the pong may come before the write returns.
	s.pingSent.Store(time.Now().UnixNano())
	return s.writeRaw(pingFrame, 0) // a control frame: not counted as a frame of objects
}

// writeBatch writes a batch of queued items in as few write calls as it can. The native
// protocol joins objects with '\n' into frames of at most FrameCap bytes (an object larger
// than that goes alone); Socket.IO wants one packet a frame, and gets as many whole frames as
// fit in FrameCap in one write.
func (s *session) writeBatch(batch [][]byte) error {
	if len(batch) == 0 {
		return nil
	}
	bufp := s.srv.frameBufs.Get().(*[]byte)
	defer s.srv.frameBufs.Put(bufp)
	buf, err := (*bufp)[:0], error(nil)
	if s.proto.joinFrames() {
		buf = append(buf, make([]byte, maxFrameHeader)...) // the header goes in front, once known
		for _, obj := range batch {
			payload := len(buf) - maxFrameHeader
			if payload > 0 && payload+1+len(obj) > s.srv.cfg.FrameCap {
				if err := s.writeJoined(buf); err != nil {
					return err
				}
				buf = buf[:maxFrameHeader]
				payload = 0
			}
			if payload > 0 {
				buf = append(buf, '\n')
			}
			buf = append(buf, obj...)
		}
		err = s.writeJoined(buf)
	} else {
		frames := 0
		for _, obj := range batch {
			if frames > 0 && len(buf)+maxFrameHeader+len(obj) > s.srv.cfg.FrameCap {
				if err := s.writeRaw(buf, frames); err != nil {
					return err
				}
				buf, frames = buf[:0], 0
			}
			buf = appendFrame(buf, obj)
			frames++
		}
		err = s.writeRaw(buf, frames)
	}
	if cap(buf) <= 2*s.srv.cfg.FrameCap {
		*bufp = buf[:0]
	}
	return err
}

// writeJoined writes the frame whose payload follows maxFrameHeader bytes of room in buf.
func (s *session) writeJoined(buf []byte) error {
	start := putFrameHeader(buf[:maxFrameHeader], len(buf)-maxFrameHeader)
	return s.writeRaw(buf[start:], 1)
}

// writeRaw writes whole frames to the connection in one call. It sets no deadline of its own:
// a per-write timer costs as much as a small write; the server's watchdog closes a connection
// whose write has been stuck for WriteTimeout instead (see Server.watchSessions).
func (s *session) writeRaw(b []byte, frames int) error {
	s.writingSince.Store(time.Now().UnixNano())
	_, err := s.raw.Write(b)
	s.writingSince.Store(0)
	if err != nil {
		return err
	}
	s.srv.metrics.framesWritten.Add(float64(frames))
	s.srv.metrics.bytesWritten.Add(float64(len(b)))
	return nil
}
