package bench

import (
	"encoding/json"
	"sync"
	"testing"
	"time"
)

// TestHistJSON holds the trip a child's histogram takes to the parent: every sample arrives.
func TestHistJSON(t *testing.T) {
	t.Parallel()
	h := newHist()
	for i := 1; i <= 1000; i++ {
		h.record(time.Duration(i) * 100 * time.Microsecond)
	}
	h.record(2 * time.Hour) // clamped to the top of the range, not lost
	h.record(-time.Second)  // clamped to the bottom
	b, err := json.Marshal(struct{ H hist }{h})
	if err != nil {
		t.Fatal(err)
	}
	var back struct{ H hist }
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.H.count() != 1002 {
		t.Fatalf("count after the trip = %d, want 1002", back.H.count())
	}
	for _, q := range []float64{0.5, 0.9, 0.99} {
		if got, want := back.H.quantile(q), h.quantile(q); got != want {
			t.Errorf("quantile(%g) after the trip = %s, want %s", q, got, want)
		}
	}
	if got := back.H.max(); got < time.Hour-time.Minute {
		t.Errorf("max = %s, want the clamped hour", got)
	}
	if p50 := h.quantile(0.5); p50 < 49*time.Millisecond || p50 > 51*time.Millisecond {
		t.Errorf("p50 = %s, want about 50ms", p50)
	}
}

func TestStripedHist(t *testing.T) {
	t.Parallel()
	s := newStripedHist(4)
	var wg sync.WaitGroup
	for id := range 8 {
		wg.Go(func() {
			for range 100 {
				s.recordMicros(id, []int64{int64(1000 * (id + 1)), 5})
			}
		})
	}
	wg.Wait()
	h := s.merged()
	if h.count() != 8*100*2 {
		t.Fatalf("count = %d, want %d", h.count(), 8*100*2)
	}
	if m := h.max(); m < 7990*time.Microsecond || m > 8010*time.Microsecond {
		t.Errorf("max = %s, want 8ms", m)
	}
}
