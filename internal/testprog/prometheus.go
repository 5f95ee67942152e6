package testprog

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// PrometheusServer is a prometheus of a test's own, with its storage in a temp dir.
type PrometheusServer struct {
	Port int
}

// Prometheus starts Debian's prometheus with the configuration conf (a whole prometheus.yml)
// on a free loopback port, waits until it is ready, and stops it when the test ends.
func Prometheus(t testing.TB, conf string) *PrometheusServer {
	t.Helper()
	bin := Need(t, "prometheus")
	dir := t.TempDir()
	path := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &PrometheusServer{Port: FreePort(t)}
	cmd := exec.Command(bin,
		"--config.file="+path,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address=127.0.0.1:"+strconv.Itoa(p.Port),
		"--log.level=warn",
	)
	cmd.Dir = dir
	cmd.Stderr = testWriter{t}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start prometheus: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})

	// /-/ready answers 200 once the storage is open and the first config is loaded.
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(p.URL() + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		select {
		case <-exited:
			t.Fatal("prometheus exited at start (its log is above)")
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus on port %d was not ready within 30s", p.Port)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// URL is the server's base URL.
func (p *PrometheusServer) URL() string { return "http://127.0.0.1:" + strconv.Itoa(p.Port) }

// Sample is one element of an instant vector from Prometheus' query API.
type Sample struct {
	Metric map[string]string
	Value  float64
}

// Query evaluates a PromQL expression now through the HTTP API and returns the instant
// vector it yields.
func (p *PrometheusServer) Query(ctx context.Context, expr string) ([]Sample, error) {
	u := p.URL() + "/api/v1/query?query=" + url.QueryEscape(expr)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("query %q: %w", expr, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("query %q: %w", expr, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("query %q: read the answer: %w", expr, err)
	}
	var answer struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"` // [unix time, "value as a string"]
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &answer); err != nil {
		return nil, fmt.Errorf("query %q: HTTP %d, %.200q: %w", expr, resp.StatusCode, body, err)
	}
	if answer.Status != "success" {
		return nil, fmt.Errorf("query %q: %s", expr, answer.Error)
	}
	if answer.Data.ResultType != "vector" {
		return nil, fmt.Errorf("query %q: a %s, want a vector", expr, answer.Data.ResultType)
	}
	samples := make([]Sample, 0, len(answer.Data.Result))
	for _, r := range answer.Data.Result {
		s, _ := r.Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("query %q: value %v: %w", expr, r.Value[1], err)
		}
		samples = append(samples, Sample{Metric: r.Metric, Value: v})
	}
	return samples, nil
}
