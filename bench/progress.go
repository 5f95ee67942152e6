package bench

import (
	"io"
	"os"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// progress draws a progress bar of the running phase: connections made, then deliveries. It
// polls the workers' counters a few times a second, so the clients pay nothing for it. A nil
// *progress draws nothing; its methods may be called from any goroutine.
type progress struct {
	// Static after construction.
	bar     *progressbar.ProgressBar
	workers []phases
	stop    chan struct{}
	done    chan struct{}

	// Guarded by mu.
	mu    sync.Mutex
	value func(progressCounts) int64
}

// startProgress returns a bar drawn on out when out is a terminal, and nil otherwise: a bar
// in a log file or a pipe is noise.
func startProgress(out io.Writer, workers []phases) *progress {
	f, ok := out.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil
	}
	p := &progress{
		bar: progressbar.NewOptions64(1,
			progressbar.OptionSetWriter(out),
			progressbar.OptionSetWidth(30),
			progressbar.OptionShowCount(),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionClearOnFinish(),
			progressbar.OptionSetPredictTime(false),
		),
		workers: workers,
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
		value:   func(progressCounts) int64 { return 0 },
	}
	go p.run()
	return p
}

func (p *progress) run() {
	defer close(p.done)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			var sum progressCounts
			for _, w := range p.workers {
				sum.add(w.progress())
			}
			p.mu.Lock()
			v := p.value(sum)
			p.mu.Unlock()
			_ = p.bar.Set64(v) // drawing errors only lose the bar
		case <-p.stop:
			return
		}
	}
}

// phase starts a new bar: desc, counting value up to total.
func (p *progress) phase(desc string, total int64, value func(progressCounts) int64) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.value = value
	p.bar.Reset()
	p.bar.ChangeMax64(max(total, 1))
	p.bar.Describe(desc)
}

// close stops the bar and clears it from the terminal.
func (p *progress) close() {
	if p == nil {
		return
	}
	close(p.stop)
	<-p.done
	_ = p.bar.Clear()
}
