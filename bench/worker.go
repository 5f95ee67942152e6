package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/shardchat/shardchat/transport/wire"
)

// workerSpec is one process's share of a run: users First to First+Count-1. The parent sends
// it to a child as JSON.
type workerSpec struct {
	RunID           string        `json:"run_id"`
	Index           int           `json:"index"`
	First           int           `json:"first"`
	Count           int           `json:"count"`
	URLs            []string      `json:"urls"`
	SourceIPs       []string      `json:"source_ips,omitempty"`
	Workload        Workload      `json:"workload"`
	Ramp            float64       `json:"ramp"` // this worker's share of Workload.Ramp
	ConnectTimeout  time.Duration `json:"connect_timeout"`
	StallTimeout    time.Duration `json:"stall_timeout"`
	DialConcurrency int           `json:"dial_concurrency"`

	slow slowReaders // test hook; in-process workers only
}

// phases are the steps of a run, in order, as the parent drives them in every worker: the
// local one and the children alike. finish may come after any of them (an interrupted run).
type phases interface {
	connect(ctx context.Context) (connectReport, error)
	send(ctx context.Context) (sentReport, error)
	drain(ctx context.Context, final []uint64) error
	finish(ctx context.Context) (tally, error)
	progress() progressCounts
}

// connectReport is what a worker says after its connect phase.
type connectReport struct {
	Attempted int64  `json:"attempted"`
	Connected int64  `json:"connected"`
	Failed    int64  `json:"failed"`
	FirstFail string `json:"first_fail,omitempty"` // one reason, for a run that got nowhere
}

// sentReport is what a worker says after its send phase: the highest seq it has seen in each
// room, so the parent can tell every worker how far each room went.
type sentReport struct {
	MaxSeq []uint64 `json:"max_seq"`
}

// progressCounts are running totals for the progress bar.
type progressCounts struct {
	Attempted int64 `json:"attempted"`
	Connected int64 `json:"connected"`
	Failed    int64 `json:"failed"`
	Sent      int64 `json:"sent"`
	Delivered int64 `json:"delivered"`
}

func (p *progressCounts) add(o progressCounts) {
	p.Attempted += o.Attempted
	p.Connected += o.Connected
	p.Failed += o.Failed
	p.Sent += o.Sent
	p.Delivered += o.Delivered
}

// worker runs a share of the users in this process. The phase methods are called by one
// goroutine, in order; progress may be called from any goroutine at any time.
type worker struct {
	// Static after construction.
	spec      workerSpec
	log       *slog.Logger
	clients   []*client
	rooms     []string // every room of the run, by global index
	prefixes  [][]byte // per room: a message object up to its ref's value
	seen      *seenMessages
	frameBufs sync.Pool
	cpuStart  time.Duration

	// Safe for concurrent use.
	latency      *stripedHist
	connectTimes *stripedHist
	attempted    atomic.Int64
	connected    atomic.Int64
	failed       atomic.Int64
	readers      sync.WaitGroup

	// Guarded by mu.
	mu           sync.Mutex
	failures     map[string]int64
	firstFail    string
	joinFailures int64

	// Owned by the phase methods.
	sendStart time.Time
}

func newWorker(spec workerSpec, log *slog.Logger) *worker {
	w := &worker{
		spec:         spec,
		log:          log,
		latency:      newStripedHist(16),
		connectTimes: newStripedHist(4),
		failures:     make(map[string]int64),
		cpuStart:     processCPU(),
	}
	w.frameBufs.New = func() any { b := make([]byte, 0, 64<<10); return &b }
	text := fillerText(spec.Workload.TextSize)
	for r := range spec.Workload.Rooms {
		name := fmt.Sprintf("bench-%s-%d", spec.RunID, r)
		w.rooms = append(w.rooms, name)
		w.prefixes = append(w.prefixes, messagePrefix(name, text))
	}
	perRoom := (spec.Count + spec.Workload.Rooms - 1) / spec.Workload.Rooms // this worker's fullest room
	w.seen = newSeenMessages(w.rooms, perRoom)
	hcs := httpClients(spec.SourceIPs, nil)
	var slow []*http.Client
	if spec.slow.users > 0 {
		slow = httpClients(spec.SourceIPs, spec.slow.control)
	}
	for i := range spec.Count {
		id := spec.First + i
		hc := hcs[id%len(hcs)]
		if i < spec.slow.users {
			hc = slow[id%len(slow)]
		}
		w.clients = append(w.clients, newClient(w, id, spec.URLs[id%len(spec.URLs)], hc))
	}
	return w
}

func (w *worker) roomName(room int) string { return w.rooms[room] }

// messagePrefix is a room's message object up to its ref's value, built once per room: a
// message then costs a copy, its ref and the closing `"}`. The ref goes last, where the
// encoder of wire.ClientRequest would not put it.
func messagePrefix(room, text string) []byte {
	b, _ := json.Marshal(wire.ClientRequest{Type: wire.TypeMessage, Room: room, Text: text}) // strings always marshal
	return append(b[:len(b)-1], `,"ref":"`...)
}

// fillerText is size bytes of printable ASCII that no JSON encoder escapes.
func fillerText(size int) string {
	const alphabet = "the quick brown fox jumps over the lazy dog "
	b := make([]byte, size)
	for i := range b {
		b[i] = alphabet[i%len(alphabet)]
	}
	b[0] = 'T' // never only white space
	return string(b)
}

// connect opens every client's connection, at the ramp's pace, and joins its room.
func (w *worker) connect(ctx context.Context) (connectReport, error) {
	jobs := make(chan *client)
	var dialers sync.WaitGroup
	for range min(w.spec.DialConcurrency, len(w.clients)) {
		dialers.Go(func() {
			for c := range jobs {
				w.connectOne(ctx, c)
			}
		})
	}
	w.release(ctx, jobs)
	close(jobs)
	dialers.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	return connectReport{Attempted: w.attempted.Load(), Connected: w.connected.Load(), Failed: w.failed.Load(), FirstFail: w.firstFail}, nil
}

// release hands the clients to the dialers, all at once or at the ramp's pace. One ticker for
// the whole phase: at each tick it releases as many as the ramp allows by then.
func (w *worker) release(ctx context.Context, jobs chan<- *client) {
	if w.spec.Ramp <= 0 {
		for _, c := range w.clients {
			select {
			case jobs <- c:
			case <-ctx.Done():
				return
			}
		}
		return
	}
	tick := time.NewTicker(max(time.Duration(float64(time.Second)/w.spec.Ramp), 10*time.Millisecond))
	defer tick.Stop()
	start := time.Now()
	released := 0
	for released < len(w.clients) {
		due := min(len(w.clients), 1+int(time.Since(start).Seconds()*w.spec.Ramp))
		for ; released < due; released++ {
			select {
			case jobs <- w.clients[released]:
			case <-ctx.Done():
				return
			}
		}
		if released == len(w.clients) {
			return
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		}
	}
}

func (w *worker) connectOne(ctx context.Context, c *client) {
	w.attempted.Add(1)
	err := c.connect(ctx)
	if err == nil {
		w.connected.Add(1)
		w.readers.Go(c.readLoop)
		return
	}
	w.failed.Add(1)
	reason := err.Error()
	var ce *connectError
	if ctx.Err() != nil && !(errors.As(err, &ce) && ce.connected) {
		reason = "interrupted"
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.failures[reason]++
	if w.firstFail == "" {
		w.firstFail = fmt.Sprintf("%s: %s", c.url, reason)
	}
	if errors.As(err, &ce) && ce.connected {
		w.joinFailures++
	}
}

// send runs every joined client's sender and waits for them: until each has sent its
// messages (or the duration is over) and has its echoes, or until nothing moved for the
// stall timeout while something was still owed.
func (w *worker) send(ctx context.Context) (sentReport, error) {
	wl := w.spec.Workload
	w.sendStart = time.Now()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var senders sync.WaitGroup
	plan := sendPlan{start: w.sendStart, messages: wl.Messages, rate: wl.Rate}
	if wl.Duration > 0 {
		plan.deadline = w.sendStart.Add(wl.Duration)
	}
	for _, c := range w.clients {
		if !c.joined || (wl.Duration <= 0 && wl.Messages == 0) {
			continue
		}
		p := plan
		p.prefix = w.prefixes[c.room]
		if wl.Rate > 0 {
			// Paced senders start at random points of their first interval, so a second's
			// messages spread over the second rather than arriving together.
			p.offset = time.Duration(rand.Float64() * float64(time.Second) / wl.Rate)
		}
		senders.Go(func() { c.sendLoop(ctx, p) })
	}
	done := make(chan struct{})
	go func() { senders.Wait(); close(done) }()
	w.watch(ctx, done, w.sendProgress, w.sendOwed, "sending", cancel)
	<-done
	return sentReport{MaxSeq: w.maxSeqs()}, nil
}

// sendProgress is a number that grows whenever sending moves on.
func (w *worker) sendProgress() int64 {
	var n int64
	for _, c := range w.clients {
		n += c.sent.Load() + c.acked.Load() + c.refused.Load() + c.failed.Load()
	}
	return n
}

// sendOwed reports whether a sender waits on the server (for an echo, or in a write that the
// server does not read) rather than on its own schedule.
func (w *worker) sendOwed() bool {
	for _, c := range w.clients {
		if !c.joined || isClosed(c.done) {
			continue
		}
		if c.writing.Load() || c.sent.Load() > c.acked.Load()+c.refused.Load()+c.failed.Load() {
			return true
		}
	}
	return false
}

// watch waits until done is closed or ctx is done, calling stop when progress() has not
// moved for the stall timeout while owed() says the server still owes something. Each look
// scans every client, which at 100k clients costs milliseconds of a core the server may
// share: it looks watchTicks times a stall timeout, and at most every minWatchTick.
func (w *worker) watch(ctx context.Context, done <-chan struct{}, progress func() int64, owed func() bool, what string, stop func()) {
	tick := time.NewTicker(watchTick(w.spec.StallTimeout))
	defer tick.Stop()
	last, lastMoved := progress(), time.Now()
	for {
		select {
		case <-done:
			return
		case <-ctx.Done():
			return
		case now := <-tick.C:
			if p := progress(); p != last {
				last, lastMoved = p, now
				continue
			}
			if !owed() {
				lastMoved = now
				continue
			}
			if now.Sub(lastMoved) >= w.spec.StallTimeout {
				w.log.Warn("stopped waiting: no progress", "phase", what, "for", w.spec.StallTimeout)
				stop()
				return
			}
		}
	}
}

// How often watch looks for a stall: the stall timeout over watchTicks, but not more often
// than every minWatchTick. A stall is then noticed at most a tick late.
const (
	watchTicks   = 20
	minWatchTick = 250 * time.Millisecond
)

func watchTick(stallTimeout time.Duration) time.Duration {
	return max(stallTimeout/watchTicks, minWatchTick)
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// maxSeqs returns, per room, the highest seq any of this worker's clients saw or joined at.
func (w *worker) maxSeqs() []uint64 {
	out := make([]uint64, w.spec.Workload.Rooms)
	for _, c := range w.clients {
		if c.joined {
			out[c.room] = max(out[c.room], c.maxSeq.Load())
		}
	}
	return out
}

// drainPoll is how often drain looks whether every client has everything: a scan of every
// client, and at most this late an end to the phase.
const drainPoll = 50 * time.Millisecond

// drain waits until every client still connected has every seq of its room up to final, or
// until deliveries stop moving for the stall timeout.
func (w *worker) drain(ctx context.Context, final []uint64) error {
	done := make(chan struct{})
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		defer close(done)
		tick := time.NewTicker(drainPoll)
		defer tick.Stop()
		for !w.drained(final) {
			select {
			case <-tick.C:
			case <-ctx.Done():
				return
			}
		}
	}()
	w.watch(ctx, done, w.deliveredTotal, func() bool { return true }, "draining", cancel)
	<-done
	return nil
}

func (w *worker) drained(final []uint64) bool {
	for _, c := range w.clients {
		if c.joined && !isClosed(c.done) && c.contiguous.Load() < final[c.room] {
			return false
		}
	}
	return true
}

func (w *worker) deliveredTotal() int64 {
	var n int64
	for _, c := range w.clients {
		n += c.delivered.Load()
	}
	return n
}

// closeBudget is how long finish spends on close handshakes; connections still open past it
// are cut, so that a server that stopped answering cannot hold the report back.
const closeBudget = 10 * time.Second

// finish closes every connection (a normal close, a bounded number at a time), waits for the
// readers, and tallies what the clients saw.
func (w *worker) finish(context.Context) (tally, error) {
	start := time.Now()
	jobs := make(chan *client)
	var closers sync.WaitGroup
	for range min(256, max(1, len(w.clients))) {
		closers.Go(func() {
			for c := range jobs {
				c.closing.Store(true)
				if time.Since(start) < closeBudget {
					_ = c.conn.Close(websocket.StatusNormalClosure, "bench done") // the peer may be gone already
				} else {
					_ = c.conn.CloseNow()
				}
			}
		})
	}
	for _, c := range w.clients {
		if c.joined {
			jobs <- c
		}
	}
	close(jobs)
	closers.Wait()
	w.readers.Wait()
	return w.tally(), nil
}

func (w *worker) progress() progressCounts {
	p := progressCounts{Attempted: w.attempted.Load(), Connected: w.connected.Load(), Failed: w.failed.Load()}
	for _, c := range w.clients {
		p.Sent += c.sent.Load()
		p.Delivered += c.delivered.Load()
	}
	return p
}

// tally sums what the clients saw. The readers have ended.
func (w *worker) tally() tally {
	t := newTally(w.spec.Workload.Rooms)
	t.Users = int64(len(w.clients))
	t.Attempted, t.Connected, t.Failed = w.attempted.Load(), w.connected.Load(), w.failed.Load()
	t.Connect, t.Latency = w.connectTimes.merged(), w.latency.merged()
	t.CPU = processCPU() - w.cpuStart
	t.SendStart = unixNanos(w.sendStart)
	w.mu.Lock()
	for reason, n := range w.failures {
		t.ConnectFails[reason] += n
	}
	t.JoinFailed = w.joinFailures
	w.mu.Unlock()
	for _, c := range w.clients {
		for code, n := range c.errCodes {
			t.ErrorCodes[code] += n
		}
		if c.closeCode != 0 {
			t.CloseCodes[fmt.Sprint(c.closeCode)]++
		}
		if !c.joined {
			continue
		}
		tr := &c.track
		t.Members[c.room]++
		t.JoinSeqSum[c.room] += c.joinSeq
		t.MaxSeq[c.room] = max(t.MaxSeq[c.room], tr.maxSeq)
		t.Delivered += tr.delivered
		t.Duplicated += tr.duplicated
		t.OutOfOrder += tr.outOfOrder
		t.Stray += c.stray
		t.Undecodable += c.undecodable
		t.Sent += c.sent.Load()
		t.Acked += c.acked.Load()
		t.Refused += c.refused.Load()
		t.Rejected += c.failed.Load()
		t.LastAck = max(t.LastAck, c.lastAck)
		t.LastDelivery = max(t.LastDelivery, c.lastDelivery)
	}
	return t
}

func unixNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}
