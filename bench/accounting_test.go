package bench

import (
	"testing"
	"time"
)

func TestRoomTrack(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		joinSeq    uint64
		seqs       []uint64
		final      uint64
		delivered  int64
		duplicated int64
		outOfOrder int64
		complete   bool
	}{
		{name: "in order", joinSeq: 10, seqs: []uint64{11, 12, 13}, final: 13, delivered: 3, complete: true},
		{name: "nothing yet", joinSeq: 10, final: 12},
		{name: "nothing owed", joinSeq: 10, final: 10, complete: true},
		{name: "duplicate", joinSeq: 0, seqs: []uint64{1, 2, 2, 3}, final: 3, delivered: 3, duplicated: 1, complete: true},
		{name: "from before the join", joinSeq: 5, seqs: []uint64{5, 6}, final: 6, delivered: 1, duplicated: 1, complete: true},
		{name: "swapped", joinSeq: 0, seqs: []uint64{2, 1, 3}, final: 3, delivered: 3, outOfOrder: 1, complete: true},
		{name: "gap never filled", joinSeq: 0, seqs: []uint64{1, 3, 4}, final: 4, delivered: 3},
		{name: "gap filled late", joinSeq: 0, seqs: []uint64{1, 4, 5, 2, 3}, final: 5, delivered: 5, outOfOrder: 2, complete: true},
		{name: "duplicate past a gap", joinSeq: 0, seqs: []uint64{3, 3, 1}, final: 3, delivered: 2, duplicated: 1, outOfOrder: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tr := newRoomTrack(tt.joinSeq)
			for _, s := range tt.seqs {
				tr.receive(s)
			}
			if tr.delivered != tt.delivered || tr.duplicated != tt.duplicated || tr.outOfOrder != tt.outOfOrder {
				t.Errorf("delivered/duplicated/out of order = %d/%d/%d, want %d/%d/%d",
					tr.delivered, tr.duplicated, tr.outOfOrder, tt.delivered, tt.duplicated, tt.outOfOrder)
			}
			if got := tr.complete(tt.final); got != tt.complete {
				t.Errorf("complete(%d) = %v, want %v", tt.final, got, tt.complete)
			}
			if len(tr.ahead) > 0 && tr.complete(tt.final) {
				t.Errorf("complete with seqs still held past a gap: %v", tr.ahead)
			}
		})
	}
}

func TestRoomTrackReceipts(t *testing.T) {
	t.Parallel()
	tr := newRoomTrack(0)
	for _, step := range []struct {
		seq  uint64
		want receipt
	}{{1, receiptNew}, {3, receiptNew}, {2, receiptLate}, {2, receiptDuplicate}, {3, receiptDuplicate}, {4, receiptNew}} {
		if got := tr.receive(step.seq); got != step.want {
			t.Errorf("receive(%d) = %d, want %d", step.seq, got, step.want)
		}
	}
}

func TestRef(t *testing.T) {
	t.Parallel()
	now := time.Now().UnixNano()
	for _, tt := range []struct {
		user int
		ns   int64
	}{{0, 0}, {7, now}, {1 << 30, 1<<63 - 1}} {
		ref := appendRef(nil, tt.user, tt.ns)
		if len(ref) > 64 {
			t.Errorf("ref %q is longer than the protocol's 64 bytes", ref)
		}
		user, ns, ok := parseRef(ref)
		if !ok || user != tt.user || ns != tt.ns {
			t.Errorf("parseRef(%q) = %d, %d, %v; want %d, %d, true", ref, user, ns, ok, tt.user, tt.ns)
		}
	}
	for _, bad := range []string{"", "j", ".", "1.", ".1", "a.1", "1.a", "1.2.3", "1.99999999999999999999", "-1.2"} {
		if _, _, ok := parseRef([]byte(bad)); ok {
			t.Errorf("parseRef(%q) accepted a ref the bench did not make", bad)
		}
	}
}

// TestTallyMerge holds the merge of --procs: totals are the sums of the parts, seqs and end
// times the maximum, the start the earliest, and histograms hold every sample of both.
func TestTallyMerge(t *testing.T) {
	t.Parallel()
	a, b := newTally(2), newTally(2)
	a.Users, b.Users = 3, 4
	a.Connected, b.Connected = 3, 3
	a.Failed, b.Failed = 0, 1
	a.Sent, b.Sent = 30, 40
	a.Acked, b.Acked = 30, 39
	a.Delivered, b.Delivered = 100, 120
	a.Duplicated, b.Duplicated = 1, 2
	a.Members, b.Members = []int64{2, 1}, []int64{1, 2}
	a.JoinSeqSum, b.JoinSeqSum = []uint64{0, 5}, []uint64{0, 10}
	a.MaxSeq, b.MaxSeq = []uint64{35, 40}, []uint64{36, 38}
	a.ErrorCodes["rate_limited"], b.ErrorCodes["rate_limited"] = 2, 3
	b.ErrorCodes["name_taken"] = 1
	a.CloseCodes["4008"] = 1
	a.SendStart, b.SendStart = 200, 100
	a.LastDelivery, b.LastDelivery = 900, 800
	a.CPU, b.CPU = time.Second, 2*time.Second
	for i := range 100 {
		a.Latency.record(time.Duration(i) * time.Millisecond)
	}
	for i := range 50 {
		b.Latency.record(time.Duration(1000+i) * time.Millisecond)
	}

	total := newTally(2)
	total.merge(a)
	total.merge(b)

	checks := []struct {
		name      string
		got, want int64
	}{
		{"users", total.Users, 7},
		{"connected", total.Connected, 6},
		{"failed", total.Failed, 1},
		{"sent", total.Sent, 70},
		{"acked", total.Acked, 69},
		{"delivered", total.Delivered, 220},
		{"duplicated", total.Duplicated, 3},
		{"members of room 1", total.Members[1], 3},
		{"max seq of room 0", int64(total.MaxSeq[0]), 36},
		{"max seq of room 1", int64(total.MaxSeq[1]), 40},
		{"rate_limited", total.ErrorCodes["rate_limited"], 5},
		{"name_taken", total.ErrorCodes["name_taken"], 1},
		{"4008", total.CloseCodes["4008"], 1},
		{"send start", total.SendStart, 100},
		{"last delivery", total.LastDelivery, 900},
		{"cpu", int64(total.CPU), int64(3 * time.Second)},
		{"latency samples", total.Latency.count(), 150},
		// Room 0: 3 members owed 36 seqs each; room 1: 3 members owed 40 minus their join seqs (15).
		{"expected", total.expected(), 3*36 + 3*40 - 15},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", c.name, c.got, c.want)
		}
	}
	// The merged p50 is a sample of a's, its p90 one of b's: merging counts, not averages.
	if p50 := total.Latency.quantile(0.5); p50 < 70*time.Millisecond || p50 > 80*time.Millisecond {
		t.Errorf("merged p50 = %s, want about 75ms", p50)
	}
	if p90 := total.Latency.quantile(0.9); p90 < time.Second {
		t.Errorf("merged p90 = %s, want one of b's samples (over 1s)", p90)
	}
}
