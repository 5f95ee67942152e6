package bench

import (
	"strings"
	"testing"
)

func TestWriteMedians(t *testing.T) {
	t.Parallel()
	runs := []*Report{
		{Connections: ConnectionFigures{MeanMs: 30}, Deliveries: DeliveryFigures{Ratio: 1, PerSecond: 100}, Server: &ServerFigures{Processes: 1, CPUSeconds: 2}},
		{Connections: ConnectionFigures{MeanMs: 10}, Deliveries: DeliveryFigures{Ratio: 0.5, PerSecond: 300}},
		{Connections: ConnectionFigures{MeanMs: 20}, Deliveries: DeliveryFigures{Ratio: 1, PerSecond: 200}, Server: &ServerFigures{Processes: 1, CPUSeconds: 4}},
		// Its /metrics could not be read: figures present but empty, left out too.
		{Connections: ConnectionFigures{MeanMs: 20}, Deliveries: DeliveryFigures{Ratio: 1, PerSecond: 200}, Server: &ServerFigures{}},
	}
	var b strings.Builder
	if err := WriteMedians(&b, runs); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"Medians of 4 runs",
		"| average connection time | 20.00 ms | 10.00 ms | 30.00 ms |",
		"| deliveries per second | 200 | 100 | 300 |",
		"| message delivery ratio | 100.000% | 50.000% | 100.000% |",
		"| server CPU | 3.00 s | 2.00 s | 4.00 s |", // the run without server figures is left out
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in\n%s", want, out)
		}
	}
	if err := WriteMedians(&b, nil); err == nil {
		t.Fatal("no runs, no error")
	}
}
