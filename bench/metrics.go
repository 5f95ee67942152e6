package bench

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// serverSample is one reading of a target's /metrics. The bench reads the server's own
// figures over HTTP, before and after the load, so that it measures a remote host as well as
// the embedded server.
type serverSample struct {
	RSS           float64            `json:"rss_bytes"`
	GoMemory      float64            `json:"go_memory_bytes"` // heap spans in use and goroutine stacks
	CPU           float64            `json:"cpu_seconds"`
	Goroutines    float64            `json:"goroutines"`
	Connections   float64            `json:"connections"`
	Messages      float64            `json:"messages"`
	Deliveries    float64            `json:"deliveries"`
	SlowConsumers float64            `json:"slow_consumers"`
	Closes        map[string]float64 `json:"closes,omitempty"`
}

// metricsURL is the /metrics address of the server behind a /ws URL.
func metricsURL(wsURL string) (string, error) {
	u, err := url.Parse(wsURL)
	if err != nil {
		return "", fmt.Errorf("parse %q: %w", wsURL, err)
	}
	switch u.Scheme {
	case "ws":
		u.Scheme = "http"
	case "wss":
		u.Scheme = "https"
	}
	u.Path, u.RawQuery, u.Fragment = "/metrics", "", ""
	return u.String(), nil
}

// scrape reads the figures the report needs from a Prometheus text endpoint.
func scrape(ctx context.Context, hc *http.Client, addr string) (serverSample, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, addr, nil)
	if err != nil {
		return serverSample{}, fmt.Errorf("metrics request: %w", err)
	}
	req.Header.Set("Accept", "text/plain; version=0.0.4")
	resp, err := hc.Do(req)
	if err != nil {
		return serverSample{}, fmt.Errorf("read %s: %w", addr, err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return serverSample{}, fmt.Errorf("read %s: HTTP %d", addr, resp.StatusCode)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return serverSample{}, fmt.Errorf("parse %s: %w", addr, err)
	}
	s := serverSample{
		RSS:           sum(families["process_resident_memory_bytes"]),
		GoMemory:      sum(families["go_memstats_heap_inuse_bytes"]) + sum(families["go_memstats_stack_inuse_bytes"]),
		CPU:           sum(families["process_cpu_seconds_total"]),
		Goroutines:    sum(families["go_goroutines"]),
		Connections:   sum(families["shardchat_connections"]),
		Messages:      sum(families["shardchat_messages_total"]),
		Deliveries:    sum(families["shardchat_deliveries_total"]),
		SlowConsumers: sum(families["shardchat_slow_consumers_total"]),
	}
	if f := families["shardchat_closes_total"]; f != nil {
		s.Closes = map[string]float64{}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "code" {
					s.Closes[l.GetValue()] += value(m)
				}
			}
		}
	}
	return s, nil
}

// sum adds the values of every series of a family (0 for a family the server lacks).
func sum(f *dto.MetricFamily) float64 {
	var v float64
	for _, m := range f.GetMetric() {
		v += value(m)
	}
	return v
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	return 0
}
