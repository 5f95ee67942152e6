package bench

import (
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Histograms record durations in microseconds from 1µs to an hour with 3 significant digits:
// enough to tell 1.23 ms from 1.24 ms, and an HDR histogram keeps that precision at every
// magnitude, which a list of fixed buckets would not.
const (
	histLowest  = 1
	histHighest = int64(time.Hour / time.Microsecond)
	histDigits  = 3
)

// hist is an HDR histogram of durations that survives a trip through JSON, so a child process
// can send its whole distribution to the parent, which merges the counts: percentiles of a
// merged run come from every sample, not from averaged percentiles.
//
// It is not safe for concurrent use; stripedHist is.
type hist struct {
	h *hdrhistogram.Histogram
}

func newHist() hist { return hist{h: hdrhistogram.New(histLowest, histHighest, histDigits)} }

// record adds one duration, clamped into the histogram's range.
func (h hist) record(d time.Duration) { h.recordMicros(int64(d / time.Microsecond)) }

func (h hist) recordMicros(us int64) {
	_ = h.h.RecordValue(min(max(us, histLowest), histHighest)) // clamped: cannot be out of range
}

// merge adds the samples of other.
func (h hist) merge(other hist) {
	if other.h != nil {
		h.h.Merge(other.h)
	}
}

func (h hist) count() int64 { return h.h.TotalCount() }

// quantile returns the duration at quantile q (0 to 1), or 0 for an empty histogram.
func (h hist) quantile(q float64) time.Duration {
	if h.count() == 0 {
		return 0
	}
	return time.Duration(h.h.ValueAtPercentile(q*100)) * time.Microsecond
}

func (h hist) mean() time.Duration {
	if h.count() == 0 {
		return 0
	}
	return time.Duration(h.h.Mean() * float64(time.Microsecond))
}

func (h hist) max() time.Duration {
	if h.count() == 0 {
		return 0
	}
	return time.Duration(h.h.Max()) * time.Microsecond
}

// MarshalJSON encodes the histogram in the compressed HdrHistogram V2 format (a few hundred
// bytes where the raw counts take hundreds of kilobytes).
func (h hist) MarshalJSON() ([]byte, error) {
	if h.h == nil {
		return []byte("null"), nil
	}
	b, err := h.h.Encode(hdrhistogram.V2CompressedEncodingCookieBase)
	if err != nil {
		return nil, fmt.Errorf("encode histogram: %w", err)
	}
	return json.Marshal(b)
}

// UnmarshalJSON decodes what MarshalJSON encoded.
func (h *hist) UnmarshalJSON(data []byte) error {
	var b []byte
	if err := json.Unmarshal(data, &b); err != nil {
		return fmt.Errorf("decode histogram: %w", err)
	}
	if b == nil {
		*h = newHist()
		return nil
	}
	decoded, err := hdrhistogram.Decode(b)
	if err != nil {
		return fmt.Errorf("decode histogram: %w", err)
	}
	*h = newHist()
	h.h.Merge(decoded)
	return nil
}

// stripedHist is a histogram that many goroutines record into at once: each records into
// the stripe its id picks, under that stripe's lock, so two readers rarely meet on a lock.
// Its methods may be called concurrently.
type stripedHist struct {
	stripes []histStripe
}

type histStripe struct {
	mu sync.Mutex
	h  hist
	_  [40]byte // keep neighbouring locks off one cache line
}

func newStripedHist(stripes int) *stripedHist {
	s := &stripedHist{stripes: make([]histStripe, stripes)}
	for i := range s.stripes {
		s.stripes[i].h = newHist()
	}
	return s
}

// recordMicros adds samples, in microseconds, to the stripe of id.
func (s *stripedHist) recordMicros(id int, samples []int64) {
	if len(samples) == 0 {
		return
	}
	st := &s.stripes[id%len(s.stripes)]
	st.mu.Lock()
	for _, us := range samples {
		st.h.recordMicros(us)
	}
	st.mu.Unlock()
}

// merged returns one histogram of every stripe's samples.
func (s *stripedHist) merged() hist {
	out := newHist()
	for i := range s.stripes {
		st := &s.stripes[i]
		st.mu.Lock()
		out.merge(st.h)
		st.mu.Unlock()
	}
	return out
}
