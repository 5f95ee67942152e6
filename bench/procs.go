package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"time"
)

// A run with --procs N starts N child processes of this binary ("bench --child"), each with
// its share of the users. Parent and child speak JSON lines: the parent writes commands to the
// child's standard input, the child answers on its standard output (its logs go to standard
// error, which it shares with the parent). The conversation follows the phases:
//
//	parent: {"op":"spec","spec":{...}}   child: {"op":"connected","connected":{...}}
//	parent: {"op":"send"}                child: {"op":"sent","sent":{"max_seq":[...]}}
//	parent: {"op":"drain","final":[...]} child: {"op":"drained"}
//	parent: {"op":"finish"}              child: {"op":"result","tally":{...}}, and exits
//
// and the child adds {"op":"progress",...} lines as it goes. "finish" may come at any point
// (Ctrl-C): the child stops the phase it is in and answers with what it has. A child whose
// standard input closes, or that gets SIGINT itself, finishes the same way.

// childMessage is one line of the conversation, either way.
type childMessage struct {
	Op        string          `json:"op"`
	Spec      *workerSpec     `json:"spec,omitempty"`
	Final     []uint64        `json:"final,omitempty"`
	Connected *connectReport  `json:"connected,omitempty"`
	Sent      *sentReport     `json:"sent,omitempty"`
	Tally     *tally          `json:"tally,omitempty"`
	Progress  *progressCounts `json:"progress,omitempty"`
	Error     string          `json:"error,omitempty"`
}

// Operations of the conversation.
const (
	opSpec      = "spec"
	opSend      = "send"
	opDrain     = "drain"
	opFinish    = "finish"
	opConnected = "connected"
	opSent      = "sent"
	opDrained   = "drained"
	opResult    = "result"
	opProgress  = "progress"
	opError     = "error"
)

// maxChildLine bounds one line from a child; a tally of many rooms is the largest.
const maxChildLine = 256 << 20

// finishTimeout bounds how long the parent waits for a child's result before killing it.
const finishTimeout = 2 * time.Minute

// childWorker is the parent's handle on one child process; it implements phases by talking
// to it. The phase methods are called by one goroutine; progress by any.
type childWorker struct {
	// Static after start.
	index   int
	log     *slog.Logger
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	replies chan childMessage // every line but progress
	exited  chan struct{}     // closed when the child's standard output ends

	// Guarded by mu.
	mu      sync.Mutex
	progr   progressCounts
	readErr error
}

// startChild starts a child process with its share of the run; it connects its clients at once.
func startChild(argv []string, spec workerSpec, log *slog.Logger) (*childWorker, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("child %d: %w", spec.Index, err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("child %d: %w", spec.Index, err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start child %d (%s): %w", spec.Index, argv[0], err)
	}
	c := &childWorker{
		index:   spec.Index,
		log:     log.With("child", spec.Index, "pid", cmd.Process.Pid),
		cmd:     cmd,
		stdin:   stdin,
		replies: make(chan childMessage, 16),
		exited:  make(chan struct{}),
	}
	go c.readLines(stdout)
	if err := c.write(childMessage{Op: opSpec, Spec: &spec}); err != nil {
		c.kill()
		return nil, err
	}
	return c, nil
}

// readLines reads the child's answers until its standard output ends.
func (c *childWorker) readLines(stdout io.Reader) {
	defer close(c.exited)
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 0, 64<<10), maxChildLine)
	for sc.Scan() {
		var m childMessage
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			c.setReadErr(fmt.Errorf("child %d wrote a line that is not a message: %.80q", c.index, sc.Bytes()))
			continue
		}
		if m.Op == opProgress && m.Progress != nil {
			c.mu.Lock()
			c.progr = *m.Progress
			c.mu.Unlock()
			continue
		}
		c.replies <- m // buffered: the parent reads every reply it asked for
	}
	if err := sc.Err(); err != nil {
		c.setReadErr(fmt.Errorf("read from child %d: %w", c.index, err))
	}
}

func (c *childWorker) setReadErr(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.readErr == nil {
		c.readErr = err
	}
}

func (c *childWorker) write(m childMessage) error {
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode message for child %d: %w", c.index, err)
	}
	if _, err := c.stdin.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("write to child %d: %w", c.index, err)
	}
	return nil
}

// await waits for the reply op, skipping stale replies of phases the parent gave up on.
func (c *childWorker) await(ctx context.Context, op string) (childMessage, error) {
	for {
		select {
		case m := <-c.replies:
			switch m.Op {
			case op:
				return m, nil
			case opError:
				return m, fmt.Errorf("child %d: %s", c.index, m.Error)
			}
		case <-c.exited:
			c.mu.Lock()
			err := c.readErr
			c.mu.Unlock()
			if err == nil {
				err = errors.New("exited")
			}
			select { // a reply may have come just before the end
			case m := <-c.replies:
				if m.Op == op {
					return m, nil
				}
			default:
			}
			return childMessage{}, fmt.Errorf("child %d: %w before it answered %s", c.index, err, op)
		case <-ctx.Done():
			return childMessage{}, ctx.Err()
		}
	}
}

func (c *childWorker) connect(ctx context.Context) (connectReport, error) {
	m, err := c.await(ctx, opConnected)
	if err != nil || m.Connected == nil {
		return connectReport{}, errors.Join(err, errIfNil(m.Connected, c.index, opConnected))
	}
	return *m.Connected, nil
}

func (c *childWorker) send(ctx context.Context) (sentReport, error) {
	if err := c.write(childMessage{Op: opSend}); err != nil {
		return sentReport{}, err
	}
	m, err := c.await(ctx, opSent)
	if err != nil || m.Sent == nil {
		return sentReport{}, errors.Join(err, errIfNil(m.Sent, c.index, opSent))
	}
	return *m.Sent, nil
}

func (c *childWorker) drain(ctx context.Context, final []uint64) error {
	if err := c.write(childMessage{Op: opDrain, Final: final}); err != nil {
		return err
	}
	_, err := c.await(ctx, opDrained)
	return err
}

// finish asks for the child's result and waits for it and for the child to exit; a child that
// does not answer within finishTimeout is killed.
func (c *childWorker) finish(ctx context.Context) (tally, error) {
	_ = c.write(childMessage{Op: opFinish}) // a child that already finished on its own still answers
	ctx, cancel := context.WithTimeout(ctx, finishTimeout)
	defer cancel()
	m, err := c.await(ctx, opResult)
	_ = c.stdin.Close()
	if err != nil || m.Tally == nil {
		c.kill()
		return tally{}, errors.Join(err, errIfNil(m.Tally, c.index, opResult))
	}
	<-c.exited
	if err := c.cmd.Wait(); err != nil {
		c.log.Warn("child exited with an error after its result", "err", err)
	}
	return *m.Tally, nil
}

func (c *childWorker) progress() progressCounts {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.progr
}

// kill ends a child that cannot finish, and waits for it.
func (c *childWorker) kill() {
	_ = c.stdin.Close()
	_ = c.cmd.Process.Kill()
	<-c.exited
	_ = c.cmd.Wait()
}

func errIfNil[T any](v *T, index int, op string) error {
	if v == nil {
		return fmt.Errorf("child %d: %s without its report", index, op)
	}
	return nil
}

// RunChild is the child's side of --procs: it reads its share of the run from in, runs the
// phases the parent asks for, and writes its answers and progress to out. It returns when it
// has written its result: after the parent's finish, when in closes, or when ctx is done.
func RunChild(ctx context.Context, in io.Reader, out io.Writer, log *slog.Logger) error {
	dec := json.NewDecoder(in)
	var first childMessage
	if err := dec.Decode(&first); err != nil || first.Op != opSpec || first.Spec == nil {
		return fmt.Errorf("bench child: want a spec as the first line from the parent: %w", errors.Join(err, errors.New("no spec")))
	}
	spec := *first.Spec
	log = log.With("child", spec.Index)
	w := newWorker(spec, log)

	var outMu sync.Mutex
	enc := json.NewEncoder(out)
	emit := func(m childMessage) {
		outMu.Lock()
		defer outMu.Unlock()
		if err := enc.Encode(m); err != nil {
			log.Warn("cannot write to the parent", "err", err)
		}
	}

	quit := make(chan struct{})
	var helpers sync.WaitGroup
	defer helpers.Wait()
	defer close(quit)
	commands := make(chan childMessage)
	// The reader of commands ends when in closes: the parent closes it after the result.
	helpers.Go(func() {
		defer close(commands)
		for {
			var m childMessage
			if err := dec.Decode(&m); err != nil {
				return // the parent is gone or done: finish
			}
			select {
			case commands <- m:
			case <-quit:
				return
			}
		}
	})
	// The progress lines stop before the result, so that the result is the last line.
	stopProgress := make(chan struct{})
	var progressDone sync.WaitGroup
	progressDone.Go(func() {
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				p := w.progress()
				emit(childMessage{Op: opProgress, Progress: &p})
			case <-stopProgress:
				return
			}
		}
	})

	phaseCtx, cancelPhase := context.WithCancel(ctx)
	defer cancelPhase()
	phaseDone := make(chan struct{})
	run := func(phase func() childMessage) {
		done := make(chan struct{})
		phaseDone = done
		go func() {
			defer close(done)
			emit(phase())
		}()
	}
	run(func() childMessage {
		r, err := w.connect(phaseCtx)
		return reply(opConnected, err, func(m *childMessage) { m.Connected = &r })
	})
	for finished := false; !finished; {
		select {
		case m, ok := <-commands:
			if !ok {
				finished = true
				break
			}
			switch m.Op {
			case opSend:
				<-phaseDone
				run(func() childMessage {
					r, err := w.send(phaseCtx)
					return reply(opSent, err, func(m *childMessage) { m.Sent = &r })
				})
			case opDrain:
				<-phaseDone
				final := m.Final
				run(func() childMessage {
					return reply(opDrained, w.drain(phaseCtx, final), func(*childMessage) {})
				})
			case opFinish:
				finished = true
			default:
				emit(childMessage{Op: opError, Error: fmt.Sprintf("unknown op %q", m.Op)})
			}
		case <-ctx.Done():
			finished = true
		}
	}
	cancelPhase()
	<-phaseDone
	t, err := w.finish(context.WithoutCancel(ctx))
	close(stopProgress)
	progressDone.Wait()
	emit(reply(opResult, err, func(m *childMessage) { m.Tally = &t }))
	return nil
}

// reply is the answer op, or an error message when err is set.
func reply(op string, err error, fill func(*childMessage)) childMessage {
	if err != nil {
		return childMessage{Op: opError, Error: err.Error()}
	}
	m := childMessage{Op: op}
	fill(&m)
	return m
}
