// Package bench is shardchat's load generator, behind `shardchat bench`: it connects
// simulated users to one server or many (or to one it starts itself), has them chat, and
// reports what an operator needs to trust a deployment: how fast clients connect, how many
// messages a second the servers carry, whether every message reached every member in order,
// how late, and what it cost the servers (read from their /metrics) and the bench itself.
//
// Accounting is exact: every message carries its sender and send time in its ref, and every
// member follows the seq of its room, so a delivery is new, late, duplicated, or missing, and
// the report says which. A run goes through phases: connect and join (ramped), send, drain
// (wait until every member has every seq), finish (close and tally). With --procs the phases
// run in child processes that the parent drives and whose tallies it merges.
package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"
)

// Run runs one bench and returns its report. When ctx is done midway (Ctrl-C) it stops
// sending, closes its connections, and returns the report of what it measured so far with
// Interrupted set. It fails, in one line, when a target cannot be reached or refuses the
// bench, or when no client could connect.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	wl := cfg.Workload
	if err := checkOpenFiles(wl.Users, cfg.Procs, len(cfg.URLs) == 0, openFilesLimit()); err != nil {
		return nil, err
	}
	if hint := sourceAddressHint(wl.Users, cfg.SourceIPs); hint != "" {
		log.Warn(hint, "users", wl.Users)
	}

	targets, embedded := cfg.URLs, false
	if len(targets) == 0 {
		if cfg.StartServer == nil {
			return nil, errors.New("no server to load: give a --url, or a StartServer")
		}
		url, stop, err := cfg.StartServer(cfg.Server, log.With("server", "embedded"))
		if err != nil {
			return nil, fmt.Errorf("embedded server: %w", err)
		}
		defer func() {
			if err := stop(); err != nil {
				log.Warn("embedded server shutdown", "err", err)
			}
		}()
		targets, embedded = []string{url}, true
	}
	hc := httpClients(nil, nil)[0]
	r := &run{cfg: cfg, log: log, targets: targets, hc: hc}
	r.servers = r.metricsTargets()
	// The first reading comes before the probes: a probe's connection closes as the probe
	// ends, but the server counts it until it has noticed.
	r.sample(ctx, func(s *samples, v serverSample) { s.before = v })
	for _, u := range uniq(targets) {
		limits, err := probe(ctx, u, hc, cfg.ConnectTimeout)
		if err != nil {
			return nil, err
		}
		if wl.Rate > limits.Rate {
			log.Warn("the rate asked for is past the server's limit; the clients keep to the server's",
				"target", u, "rate", wl.Rate, "server_rate", limits.Rate, "server_burst", limits.Burst)
		}
	}
	started := time.Now()
	if err := r.startWorkers(); err != nil {
		return nil, err
	}
	rep, err := r.phases(ctx)
	if err != nil {
		return nil, err
	}
	return newReport(cfg, targets, embedded, rep, r.servers, started, time.Since(started), ctx.Err() != nil), nil
}

// run is one bench run in the parent process. Its methods are called by Run's goroutine.
type run struct {
	cfg     Config
	log     *slog.Logger
	targets []string
	hc      *http.Client
	workers []phases
	servers []samples
	prog    *progress
}

// startWorkers makes the local worker, or starts the children, each with its share of users.
func (r *run) startWorkers() error {
	cfg, wl := r.cfg, r.cfg.Workload
	spec := workerSpec{
		RunID:           newRunID(),
		URLs:            r.targets,
		SourceIPs:       cfg.SourceIPs,
		Workload:        wl,
		Ramp:            wl.Ramp,
		ConnectTimeout:  cfg.ConnectTimeout,
		StallTimeout:    cfg.StallTimeout,
		DialConcurrency: cfg.DialConcurrency,
		slow:            cfg.slow,
	}
	if cfg.Procs == 0 {
		spec.Count = wl.Users
		r.workers = []phases{newWorker(spec, r.log)}
		return nil
	}
	spec.Ramp = wl.Ramp / float64(cfg.Procs)
	for i := range cfg.Procs {
		s := spec
		s.Index = i
		s.First = i * wl.Users / cfg.Procs
		s.Count = (i+1)*wl.Users/cfg.Procs - s.First
		c, err := startChild(cfg.ChildCommand, s, r.log)
		if err != nil {
			for _, w := range r.workers {
				w.(*childWorker).kill()
			}
			return err
		}
		r.workers = append(r.workers, c)
	}
	return nil
}

// phases drives the workers through connect, send, drain and finish, reading the servers'
// metrics between them, and returns the merged tally. An interrupted run skips to finish.
func (r *run) phases(ctx context.Context) (tally, error) {
	wl := r.cfg.Workload
	start := time.Now()
	r.prog = startProgress(r.cfg.Progress, r.workers)
	defer r.prog.close()

	r.prog.phase("connecting", int64(wl.Users), func(p progressCounts) int64 { return p.Connected + p.Failed })
	var connected connectReport
	var mu sync.Mutex
	err := r.each(ctx, func(w phases) error {
		c, err := w.connect(ctx)
		mu.Lock()
		defer mu.Unlock()
		connected.Attempted += c.Attempted
		connected.Connected += c.Connected
		connected.Failed += c.Failed
		if connected.FirstFail == "" {
			connected.FirstFail = c.FirstFail
		}
		return err
	})
	if err == nil && ctx.Err() == nil && connected.Connected == 0 {
		err = fmt.Errorf("no client could connect: %s", connected.FirstFail)
	}
	if err != nil && ctx.Err() == nil {
		_, _ = r.finish(ctx) // close what did connect
		return tally{}, err
	}
	r.log.Info("connected", "made", connected.Connected, "failed", connected.Failed, "took", time.Since(start).Round(time.Millisecond))
	r.sample(ctx, func(s *samples, v serverSample) { s.connected = v })

	if ctx.Err() == nil {
		r.prog.phase("sending", plannedDeliveries(wl), func(p progressCounts) int64 { return p.Delivered })
		final := make([]uint64, wl.Rooms)
		err := r.each(ctx, func(w phases) error {
			s, err := w.send(ctx)
			mu.Lock()
			defer mu.Unlock()
			for i, v := range s.MaxSeq {
				if i < len(final) {
					final[i] = max(final[i], v)
				}
			}
			return err
		})
		r.log.Info("sent", "took", time.Since(start).Round(time.Millisecond))
		if err == nil && ctx.Err() == nil {
			err = r.each(ctx, func(w phases) error { return w.drain(ctx, final) })
			r.log.Info("drained", "took", time.Since(start).Round(time.Millisecond))
		}
		if err != nil && ctx.Err() == nil {
			r.log.Warn("a worker failed; finishing with what it measured", "err", err)
		}
	}
	r.sample(ctx, func(s *samples, v serverSample) { s.loaded = v })
	r.prog.phase("closing", 1, func(progressCounts) int64 { return 0 })
	t, err := r.finish(ctx)
	r.sample(context.WithoutCancel(ctx), func(s *samples, v serverSample) { s.after = v })
	r.log.Info("finished", "took", time.Since(start).Round(time.Millisecond), "interrupted", ctx.Err() != nil)
	return t, err
}

// finish closes every worker's connections and merges their tallies; it runs even after the
// run was interrupted.
func (r *run) finish(ctx context.Context) (tally, error) {
	ctx = context.WithoutCancel(ctx)
	total := newTally(r.cfg.Workload.Rooms)
	var mu sync.Mutex
	err := r.each(ctx, func(w phases) error {
		t, err := w.finish(ctx)
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		total.merge(t)
		return nil
	})
	if err != nil {
		return total, fmt.Errorf("finish: %w", err)
	}
	return total, nil
}

// each runs f for every worker at once and waits for all of them.
func (r *run) each(ctx context.Context, f func(phases) error) error {
	errs := make([]error, len(r.workers))
	var wg sync.WaitGroup
	for i, w := range r.workers {
		wg.Go(func() { errs[i] = f(w) })
	}
	wg.Wait()
	err := errors.Join(errs...)
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return nil // interrupted: not a failure of the workers
	}
	return err
}

// metricsTargets lists the distinct /metrics addresses of the targets.
func (r *run) metricsTargets() []samples {
	var out []samples
	for _, u := range uniq(r.targets) {
		m, err := metricsURL(u)
		if err != nil {
			continue
		}
		if !slices.ContainsFunc(out, func(s samples) bool { return s.url == m }) {
			out = append(out, samples{url: m, ok: true})
		}
	}
	return out
}

// sample reads every target's metrics into one of its readings; a target that does not answer
// is marked, warned about once, and left out of the server figures.
func (r *run) sample(ctx context.Context, into func(*samples, serverSample)) {
	for i := range r.servers {
		s := &r.servers[i]
		if !s.ok {
			continue
		}
		v, err := scrape(context.WithoutCancel(ctx), r.hc, s.url)
		if err != nil {
			r.log.Warn("cannot read the server's metrics; its figures are left out", "err", err)
			s.ok = false
			continue
		}
		into(s, v)
	}
}

// plannedDeliveries is the deliveries a message-count run should make: each room's
// messages times its members. 0 for a duration run (the bar then counts without an end).
func plannedDeliveries(wl Workload) int64 {
	if wl.Duration > 0 {
		return 0
	}
	var n int64
	for r := range wl.Rooms {
		members := int64(wl.Users / wl.Rooms)
		if r < wl.Users%wl.Rooms {
			members++
		}
		n += members * members * int64(wl.Messages)
	}
	return n
}

// manyFromOneAddress is about where connecting from one address starts to show in connect
// times: the kernel searches the ephemeral ports for a free one at each connect, longer as
// they fill (28,232 of them by default; a run's closed ones wait in TIME_WAIT for a minute).
// Measured at 2,000 new a second: p99 11-12 ms at 5,000 and 10,000 users, 81-138 ms at
// 19,000 from one address, 9-24 ms from four.
const manyFromOneAddress = 10000

// sourceAddressHint is the warning for a run of users from one address that is large enough
// for the bench's own connects to show in its connect times, or "".
func sourceAddressHint(users int, sourceIPs []string) string {
	if users <= manyFromOneAddress || len(sourceIPs) > 1 {
		return ""
	}
	return "this many connections from one address slow the bench's own connects (the kernel's search for a free port) and show in its connect times; spread them with --source-ips"
}

func newRunID() string {
	var b [4]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never returns an error
	return hex.EncodeToString(b[:])
}

func uniq(list []string) []string {
	var out []string
	for _, s := range list {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}
