package bench

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"maps"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Report is the outcome of a run: what the clients saw, and what the servers said it cost.
// Durations are in milliseconds and memory in bytes, so the JSON form reads without units.
type Report struct {
	Scenario string   `json:"scenario"`
	Workload Workload `json:"workload"`
	Targets  []string `json:"targets"`
	// Embedded is true when the bench started the server itself.
	Embedded bool `json:"embedded"`
	// SharedProcess is true when the embedded server ran in the clients' process: its memory
	// and CPU figures then include the clients'.
	SharedProcess bool `json:"shared_process"`
	Procs         int  `json:"procs"`
	// Interrupted is true when the run was stopped (Ctrl-C) before it ended.
	Interrupted    bool      `json:"interrupted"`
	Started        time.Time `json:"started"`
	ElapsedSeconds float64   `json:"elapsed_seconds"`

	Connections ConnectionFigures `json:"connections"`
	Messages    MessageFigures    `json:"messages"`
	Deliveries  DeliveryFigures   `json:"deliveries"`
	LatencyMs   LatencyFigures    `json:"latency_ms"`
	// ErrorCodes counts every error object by code; CloseCodes every close by the server by
	// code (1006: the connection ended without a close frame).
	ErrorCodes map[string]int64 `json:"error_codes"`
	CloseCodes map[string]int64 `json:"close_codes"`

	// Server holds the figures read from the targets' /metrics (see serverRead); nil when
	// there was no target to read, and with Processes 0 when every target was unreadable
	// (listed in Unreadable).
	Server *ServerFigures `json:"server"`
	Bench  BenchFigures   `json:"bench"`
}

// serverRead is r.Server when figures were read from at least one target, else nil.
func (r *Report) serverRead() *ServerFigures {
	if r.Server == nil || r.Server.Processes == 0 {
		return nil
	}
	return r.Server
}

// ConnectionFigures are the connections made, and the time from the upgrade request until
// welcome.
type ConnectionFigures struct {
	Attempted  int64            `json:"attempted"`
	Made       int64            `json:"made"`
	Failed     int64            `json:"failed"`
	JoinFailed int64            `json:"join_failed"` // connected but refused the room
	Failures   map[string]int64 `json:"failures,omitempty"`
	MeanMs     float64          `json:"mean_ms"`
	P50Ms      float64          `json:"p50_ms"`
	P99Ms      float64          `json:"p99_ms"`
	MaxMs      float64          `json:"max_ms"`
}

// MessageFigures count what the users sent. PerSecond is the echoed messages over the time
// from the first send to the last echo.
type MessageFigures struct {
	Sent      int64   `json:"sent"`
	Echoed    int64   `json:"echoed"`
	Refused   int64   `json:"refused_rate_limited"` // sent again
	Rejected  int64   `json:"rejected"`             // refused with another code
	PerSecond float64 `json:"per_second"`
}

// DeliveryFigures count the message objects the members received, against what they were
// owed: every message ordered in their room while they were members.
type DeliveryFigures struct {
	Expected    int64   `json:"expected"`
	Delivered   int64   `json:"delivered"`
	Missing     int64   `json:"missing"`
	Duplicated  int64   `json:"duplicated"`
	OutOfOrder  int64   `json:"out_of_order"`
	Stray       int64   `json:"stray"`
	Undecodable int64   `json:"undecodable"`
	Ratio       float64 `json:"ratio"` // Delivered / Expected; 1 when nothing was expected
	PerSecond   float64 `json:"per_second"`
}

// LatencyFigures are the end-to-end latencies of every delivery, from the sender's write to
// the receiver's read, from one HDR histogram.
type LatencyFigures struct {
	Samples int64   `json:"samples"`
	Mean    float64 `json:"mean"`
	P50     float64 `json:"p50"`
	P90     float64 `json:"p90"`
	P99     float64 `json:"p99"`
	P999    float64 `json:"p99_9"`
	Max     float64 `json:"max"`
}

// ServerFigures are read from the targets' /metrics: before the clients connect, once they
// have joined, once the messages are delivered, and after the clients left. Memory and
// goroutines are summed over the targets; per worker is per server process.
type ServerFigures struct {
	Processes       int      `json:"processes"`
	Unreadable      []string `json:"unreadable,omitempty"`
	RSSBefore       float64  `json:"rss_before"`
	RSSConnected    float64  `json:"rss_connected"`
	RSSLoaded       float64  `json:"rss_loaded"`
	RSSAfter        float64  `json:"rss_after"`
	MemoryPerWorker float64  `json:"memory_per_worker"`
	// MemoryPerConnection is the growth of RSS from before the clients connected until they
	// had joined, per connection; 0 when RSS did not grow (a server that was not fresh may
	// give memory back to the system meanwhile). GoMemoryPerConnection is the same for the Go
	// heap in use and the goroutine stacks, which the system's reclaiming does not blur.
	MemoryPerConnection   float64            `json:"memory_per_connection"`
	GoMemoryPerConnection float64            `json:"go_memory_per_connection"`
	CPUSeconds            float64            `json:"cpu_seconds"`
	CPUPercent            float64            `json:"cpu_percent"` // of one core, over the run
	GoroutinesBefore      float64            `json:"goroutines_before"`
	GoroutinesConnected   float64            `json:"goroutines_connected"`
	GoroutinesAfter       float64            `json:"goroutines_after"`
	Messages              float64            `json:"messages"`
	Deliveries            float64            `json:"deliveries"`
	SlowConsumers         float64            `json:"slow_consumers"`
	Closes                map[string]float64 `json:"closes,omitempty"`
	ConnectionsConnected  float64            `json:"connections_connected"`
}

// BenchFigures are the bench's own cost: CPU of every process that ran clients.
type BenchFigures struct {
	CPUSeconds float64 `json:"cpu_seconds"`
	CPUPercent float64 `json:"cpu_percent"` // of one core, over the run
	Cores      int     `json:"cores"`
}

// samples are the readings of one target's /metrics; ok is false for one that failed.
type samples struct {
	url                              string
	ok                               bool
	before, connected, loaded, after serverSample
}

// newReport computes the figures of a run from its merged tally and server readings.
func newReport(cfg Config, targets []string, embedded bool, t tally, servers []samples, started time.Time, elapsed time.Duration, interrupted bool) *Report {
	r := &Report{
		Scenario:       cfg.Scenario,
		Workload:       cfg.Workload,
		Targets:        targets,
		Embedded:       embedded,
		SharedProcess:  embedded && cfg.Procs == 0,
		Procs:          cfg.Procs,
		Interrupted:    interrupted,
		Started:        started,
		ElapsedSeconds: elapsed.Seconds(),
		ErrorCodes:     t.ErrorCodes,
		CloseCodes:     t.CloseCodes,
	}
	r.Connections = ConnectionFigures{
		Attempted: t.Attempted, Made: t.Connected, Failed: t.Failed, JoinFailed: t.JoinFailed,
		Failures: t.ConnectFails,
		MeanMs:   ms(t.Connect.mean()), P50Ms: ms(t.Connect.quantile(0.5)),
		P99Ms: ms(t.Connect.quantile(0.99)), MaxMs: ms(t.Connect.max()),
	}
	r.Messages = MessageFigures{Sent: t.Sent, Echoed: t.Acked, Refused: t.Refused, Rejected: t.Rejected,
		PerSecond: perSecond(t.Acked, t.SendStart, t.LastAck)}
	expected := t.expected()
	r.Deliveries = DeliveryFigures{
		Expected: expected, Delivered: t.Delivered, Missing: expected - t.Delivered,
		Duplicated: t.Duplicated, OutOfOrder: t.OutOfOrder, Stray: t.Stray, Undecodable: t.Undecodable,
		Ratio: 1, PerSecond: perSecond(t.Delivered, t.SendStart, t.LastDelivery),
	}
	if expected > 0 {
		r.Deliveries.Ratio = float64(t.Delivered) / float64(expected)
	}
	r.LatencyMs = LatencyFigures{
		Samples: t.Latency.count(), Mean: ms(t.Latency.mean()), P50: ms(t.Latency.quantile(0.5)),
		P90: ms(t.Latency.quantile(0.9)), P99: ms(t.Latency.quantile(0.99)),
		P999: ms(t.Latency.quantile(0.999)), Max: ms(t.Latency.max()),
	}
	r.Bench = BenchFigures{CPUSeconds: t.CPU.Seconds(), CPUPercent: percent(t.CPU.Seconds(), elapsed), Cores: runtime.NumCPU()}
	r.Server = serverFigures(servers, t.Connected, elapsed)
	return r
}

func serverFigures(servers []samples, connections int64, elapsed time.Duration) *ServerFigures {
	f := &ServerFigures{Closes: map[string]float64{}}
	var goBefore, goConnected float64
	for _, s := range servers {
		if !s.ok {
			f.Unreadable = append(f.Unreadable, s.url)
			continue
		}
		f.Processes++
		f.RSSBefore += s.before.RSS
		goBefore += s.before.GoMemory
		goConnected += s.connected.GoMemory
		f.RSSConnected += s.connected.RSS
		f.RSSLoaded += s.loaded.RSS
		f.RSSAfter += s.after.RSS
		f.CPUSeconds += s.after.CPU - s.before.CPU
		f.GoroutinesBefore += s.before.Goroutines
		f.GoroutinesConnected += s.connected.Goroutines
		f.GoroutinesAfter += s.after.Goroutines
		f.Messages += s.after.Messages - s.before.Messages
		f.Deliveries += s.after.Deliveries - s.before.Deliveries
		f.SlowConsumers += s.after.SlowConsumers - s.before.SlowConsumers
		f.ConnectionsConnected += s.connected.Connections - s.before.Connections
		for code, n := range s.after.Closes {
			if d := n - s.before.Closes[code]; d > 0 {
				f.Closes[code] += d
			}
		}
	}
	if f.Processes == 0 {
		if len(f.Unreadable) == 0 {
			return nil
		}
		return f
	}
	f.MemoryPerWorker = max(f.RSSConnected, f.RSSLoaded) / float64(f.Processes)
	if connections > 0 {
		f.MemoryPerConnection = max(0, f.RSSConnected-f.RSSBefore) / float64(connections)
		f.GoMemoryPerConnection = max(0, goConnected-goBefore) / float64(connections)
	}
	f.CPUPercent = percent(f.CPUSeconds, elapsed)
	return f
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func perSecond(n, fromNanos, toNanos int64) float64 {
	if n == 0 || fromNanos == 0 || toNanos <= fromNanos {
		return 0
	}
	return float64(n) / (float64(toNanos-fromNanos) / 1e9)
}

func percent(cpuSeconds float64, elapsed time.Duration) float64 {
	if elapsed <= 0 {
		return 0
	}
	return 100 * cpuSeconds / elapsed.Seconds()
}

// WriteTable writes the report as a Markdown table: readable in a terminal, and ready for
// BENCHMARKS.md. Its first rows are the figures operators compare deployments by.
func (r *Report) WriteTable(out io.Writer) error {
	var rows [][2]string
	add := func(name, format string, args ...any) {
		rows = append(rows, [2]string{name, fmt.Sprintf(format, args...)})
	}
	c, m, d, l := r.Connections, r.Messages, r.Deliveries, r.LatencyMs

	add("average connection time", "%s", fmtMs(c.MeanMs))
	add("messages per second", "%s", fmtRate(m.PerSecond))
	if s := r.serverRead(); s != nil {
		add("memory per worker", "%s server RSS per process (%d process%s)%s", fmtBytes(s.MemoryPerWorker), s.Processes, plural(s.Processes, "es"), r.sharedNote())
		add("CPU", "server %.2f s (%.0f%% of a core)%s; bench %.2f s (%.0f%% of a core, %d cores here)",
			s.CPUSeconds, s.CPUPercent, r.sharedNote(), r.Bench.CPUSeconds, r.Bench.CPUPercent, r.Bench.Cores)
	} else {
		add("memory per worker", "n/a (the target's /metrics could not be read)")
		add("CPU", "server n/a; bench %.2f s (%.0f%% of a core, %d cores here)", r.Bench.CPUSeconds, r.Bench.CPUPercent, r.Bench.Cores)
	}
	add("message delivery ratio", "%s (%d of %d)", fmtRatio(d.Ratio), d.Delivered, d.Expected)

	add("connections", "%d made, %d failed%s", c.Made, c.Failed, joinNote(c.JoinFailed))
	add("connect time p50 / p99 / max", "%s / %s / %s", fmtMs(c.P50Ms), fmtMs(c.P99Ms), fmtMs(c.MaxMs))
	add("messages sent", "%d (%d echoed, %d refused as rate limited and sent again, %d rejected)", m.Sent, m.Echoed, m.Refused, m.Rejected)
	add("deliveries", "%d (%s a second)", d.Delivered, fmtRate(d.PerSecond))
	add("missing / duplicated / out of order", "%d / %d / %d", d.Missing, d.Duplicated, d.OutOfOrder)
	if d.Stray+d.Undecodable > 0 {
		add("stray / undecodable objects", "%d / %d", d.Stray, d.Undecodable)
	}
	add("end-to-end latency p50 / p90 / p99", "%s / %s / %s", fmtMs(l.P50), fmtMs(l.P90), fmtMs(l.P99))
	add("end-to-end latency p99.9 / max", "%s / %s", fmtMs(l.P999), fmtMs(l.Max))
	if s := r.serverRead(); s != nil {
		add("server RSS before / connected / loaded / after", "%s / %s / %s / %s", fmtBytes(s.RSSBefore), fmtBytes(s.RSSConnected), fmtBytes(s.RSSLoaded), fmtBytes(s.RSSAfter))
		rss := fmtBytes(s.MemoryPerConnection) + " of RSS"
		if s.MemoryPerConnection == 0 {
			rss = "n/a of RSS (it did not grow: the server gave memory back meanwhile)"
		}
		add("memory per connection", "%s, %s of Go heap and stacks%s", rss, fmtBytes(s.GoMemoryPerConnection), r.sharedNote())
		add("server goroutines before / connected / after", "%.0f / %.0f / %.0f", s.GoroutinesBefore, s.GoroutinesConnected, s.GoroutinesAfter)
		add("server counted", "%.0f messages, %.0f deliveries, %.0f slow consumers", s.Messages, s.Deliveries, s.SlowConsumers)
	}
	if s := r.Server; s != nil && len(s.Unreadable) > 0 {
		add("metrics unreadable", "%s", strings.Join(s.Unreadable, ", "))
	}
	add("error codes seen", "%s", fmtCounts(r.ErrorCodes))
	add("close codes seen", "%s", fmtCounts(r.CloseCodes))
	if len(c.Failures) > 0 {
		add("connect failures", "%s", fmtCounts(c.Failures))
	}
	add("run", "%.1f s, %s, %s", r.ElapsedSeconds, r.procsNote(), r.targetNote())
	if r.Interrupted {
		add("interrupted", "yes: these are the figures measured until Ctrl-C")
	}

	var b strings.Builder
	fmt.Fprintf(&b, "shardchat bench, scenario %s: %s\n\n", r.Scenario, r.Workload)
	width := len("figure")
	for _, row := range rows {
		width = max(width, len(row[0]))
	}
	fmt.Fprintf(&b, "| %-*s | value |\n|%s|-------|\n", width, "figure", strings.Repeat("-", width+2))
	for _, row := range rows {
		fmt.Fprintf(&b, "| %-*s | %s |\n", width, row[0], row[1])
	}
	_, err := io.WriteString(out, b.String())
	return err
}

// Err says in one line what kept the run from being whole: an interrupt, clients that could
// not connect or join, or deliveries missing, duplicated or out of order. It is nil for a
// whole run; the figures stand either way.
func (r *Report) Err() error {
	c, d := r.Connections, r.Deliveries
	switch {
	case r.Interrupted:
		return errors.New("interrupted: the figures above are what was measured until then")
	case c.Failed > 0:
		reasons := slices.SortedFunc(maps.Keys(c.Failures), func(a, b string) int { return cmp.Compare(c.Failures[b], c.Failures[a]) })
		first := ""
		if len(reasons) > 0 {
			first = ", most for this reason: " + reasons[0]
		}
		return fmt.Errorf("%d of %d clients could not connect or join%s; the figures above are for the %d that did", c.Failed, c.Attempted, first, c.Made)
	case d.Missing > 0 || d.Duplicated > 0 || d.OutOfOrder > 0:
		return fmt.Errorf("of %d deliveries owed, %d missing, %d duplicated, %d out of order", d.Expected, max(d.Missing, 0), d.Duplicated, d.OutOfOrder)
	}
	return nil
}

func (r *Report) sharedNote() string {
	if r.SharedProcess {
		return " (the embedded server shares its process with the clients: this includes them)"
	}
	return ""
}

func (r *Report) procsNote() string {
	if r.Procs == 0 {
		return "clients in one process"
	}
	return fmt.Sprintf("clients in %d child process%s", r.Procs, plural(r.Procs, "es"))
}

func (r *Report) targetNote() string {
	if r.Embedded {
		return "embedded server at " + strings.Join(r.Targets, ", ")
	}
	return "target " + strings.Join(r.Targets, ", ")
}

func joinNote(n int64) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprintf(" (%d of them connected but were refused their room)", n)
}

func plural(n int, suffix string) string {
	if n == 1 {
		return ""
	}
	return suffix
}

func fmtMs(v float64) string {
	switch {
	case v == 0:
		return "0 ms"
	case v < 1:
		return fmt.Sprintf("%.3f ms", v)
	case v < 100:
		return fmt.Sprintf("%.2f ms", v)
	}
	return fmt.Sprintf("%.0f ms", v)
}

func fmtRate(v float64) string {
	if v >= 100 {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'f', 1, 64)
}

func fmtRatio(v float64) string { return fmt.Sprintf("%.3f%%", 100*v) }

func fmtBytes(v float64) string {
	switch {
	case v < 0:
		return "-" + fmtBytes(-v)
	case v >= 1<<30:
		return fmt.Sprintf("%.2f GiB", v/(1<<30))
	case v >= 1<<20:
		return fmt.Sprintf("%.1f MiB", v/(1<<20))
	case v >= 1<<10:
		return fmt.Sprintf("%.1f KiB", v/(1<<10))
	}
	return fmt.Sprintf("%.0f B", v)
}

func fmtCounts(m map[string]int64) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s ×%d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}
