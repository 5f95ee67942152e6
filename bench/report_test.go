package bench

import (
	"strings"
	"testing"
)

// TestReportErr checks that a run exits with an error when it was not whole: interrupted,
// clients that did not get in, or deliveries missing, duplicated or out of order (run.sh's
// "a failed run stops make bench").
func TestReportErr(t *testing.T) {
	t.Parallel()
	whole := Report{
		Connections: ConnectionFigures{Attempted: 10, Made: 10},
		Deliveries:  DeliveryFigures{Expected: 100, Delivered: 100, Stray: 3, Undecodable: 0, Ratio: 1},
	}
	tests := []struct {
		name string
		edit func(*Report)
		want string // "" for no error
	}{
		{"whole", func(*Report) {}, ""},
		{"interrupted", func(r *Report) { r.Interrupted = true }, "interrupted"},
		{"clients refused", func(r *Report) {
			r.Connections = ConnectionFigures{Attempted: 10, Made: 8, Failed: 2, Failures: map[string]int64{"refused with HTTP 503": 2}}
		}, "2 of 10 clients could not connect or join, most for this reason: refused with HTTP 503"},
		{"missing", func(r *Report) { r.Deliveries.Delivered, r.Deliveries.Missing = 97, 3 }, "of 100 deliveries owed, 3 missing, 0 duplicated, 0 out of order"},
		{"duplicated", func(r *Report) { r.Deliveries.Duplicated = 1 }, "1 duplicated"},
		{"out of order", func(r *Report) { r.Deliveries.OutOfOrder = 2 }, "2 out of order"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := whole
			tt.edit(&r)
			err := r.Err()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Err = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n")):
				t.Errorf("Err = %v, want one line with %q", err, tt.want)
			}
		})
	}
}
