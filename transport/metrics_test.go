package transport

import (
	"strconv"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shardchat/shardchat/transport/wire"
)

// TestMetricsSeriesFromTheStart: every refusal code and every close code has its series, at 0,
// before anything happens, so that rate() and alerts see a first increase.
func TestMetricsSeriesFromTheStart(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	NewMetrics(reg)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	series := map[string]map[string]bool{} // family -> "label=value,..." seen
	for _, f := range families {
		series[f.GetName()] = map[string]bool{}
		for _, m := range f.GetMetric() {
			key := ""
			for _, l := range m.GetLabel() {
				key += l.GetName() + "=" + l.GetValue() + ","
			}
			series[f.GetName()][key] = true
		}
	}
	for _, transport := range []string{"socketio", "ws"} {
		for _, code := range wire.CloseCodes() {
			if key := "code=" + strconv.Itoa(int(code)) + ",transport=" + transport + ","; !series["shardchat_closes_total"][key] {
				t.Errorf("shardchat_closes_total{%s} does not exist from the start", key)
			}
		}
		for _, code := range wire.Codes() {
			if key := "code=" + string(code) + ",transport=" + transport + ","; !series["shardchat_requests_refused_total"][key] {
				t.Errorf("shardchat_requests_refused_total{%s} does not exist from the start", key)
			}
		}
	}
}
