package bench

import (
	"fmt"
	"io"
	"slices"
	"strings"
)

// figure is one figure of a report that runs are compared on.
type figure struct {
	name   string
	value  func(*Report) (float64, bool) // false: the report lacks it
	format func(float64) string
}

func secs(v float64) string { return fmt.Sprintf("%.2f s", v) }

func always(f func(*Report) float64) func(*Report) (float64, bool) {
	return func(r *Report) (float64, bool) { return f(r), true }
}

func fromServer(f func(*ServerFigures) float64) func(*Report) (float64, bool) {
	return func(r *Report) (float64, bool) {
		s := r.serverRead()
		if s == nil { // no /metrics read: no figures
			return 0, false
		}
		return f(s), true
	}
}

// figures are the figures of the medians table, the Node app's first.
var figures = []figure{
	{"average connection time", always(func(r *Report) float64 { return r.Connections.MeanMs }), fmtMs},
	{"connect time p99", always(func(r *Report) float64 { return r.Connections.P99Ms }), fmtMs},
	{"messages per second", always(func(r *Report) float64 { return r.Messages.PerSecond }), fmtRate},
	{"deliveries per second", always(func(r *Report) float64 { return r.Deliveries.PerSecond }), fmtRate},
	{"message delivery ratio", always(func(r *Report) float64 { return r.Deliveries.Ratio }), fmtRatio},
	{"end-to-end latency p50", always(func(r *Report) float64 { return r.LatencyMs.P50 }), fmtMs},
	{"end-to-end latency p99", always(func(r *Report) float64 { return r.LatencyMs.P99 }), fmtMs},
	{"server RSS under load", fromServer(func(s *ServerFigures) float64 { return s.RSSLoaded }), fmtBytes},
	{"server memory per connection (Go heap and stacks)", fromServer(func(s *ServerFigures) float64 { return s.GoMemoryPerConnection }), fmtBytes},
	{"server CPU", fromServer(func(s *ServerFigures) float64 { return s.CPUSeconds }), secs},
	{"bench CPU", always(func(r *Report) float64 { return r.Bench.CPUSeconds }), secs},
}

// WriteMedians writes a table of the median, lowest and highest of the main figures over
// several runs of one workload: on a shared, noisy machine one run proves little.
func WriteMedians(w io.Writer, reports []*Report) error {
	if len(reports) == 0 {
		return fmt.Errorf("no runs to take medians of")
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Medians of %d runs of %s\n\n", len(reports), reports[0].Workload.String())
	b.WriteString("| figure | median | lowest | highest |\n|---|---|---|---|\n")
	for _, f := range figures {
		var vs []float64
		for _, r := range reports {
			if v, ok := f.value(r); ok {
				vs = append(vs, v)
			}
		}
		if len(vs) == 0 {
			continue
		}
		slices.Sort(vs)
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", f.name, f.format(median(vs)), f.format(vs[0]), f.format(vs[len(vs)-1]))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// median of sorted values.
func median(sorted []float64) float64 {
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}
