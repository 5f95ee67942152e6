package bench

import "time"

// tally is what a worker's clients saw, in a form that adds up: the parent of --procs merges
// its children's tallies (histograms included, sample by sample) into the tally of the run,
// and every figure of the report is computed from that one merged tally.
type tally struct {
	Users        int64            `json:"users"`
	Attempted    int64            `json:"attempted"`
	Connected    int64            `json:"connected"`
	Failed       int64            `json:"failed"`
	JoinFailed   int64            `json:"join_failed"`
	ConnectFails map[string]int64 `json:"connect_fails"`

	Sent     int64 `json:"sent"`     // message objects written
	Acked    int64 `json:"acked"`    // echoed back to their sender: ordered by the server
	Refused  int64 `json:"refused"`  // refused with rate_limited, and sent again
	Rejected int64 `json:"rejected"` // refused with another code

	Delivered   int64 `json:"delivered"`    // distinct expected seqs received, summed over members
	Duplicated  int64 `json:"duplicated"`   // seqs received again
	OutOfOrder  int64 `json:"out_of_order"` // seqs received after a higher one
	Stray       int64 `json:"stray"`        // message objects of a room the client is not in
	Undecodable int64 `json:"undecodable"`  // lines that are not protocol objects

	// Per room, by global index: the members that joined, the sum of the seqs they joined at,
	// and the highest seq seen. A member expects every seq after its join seq up to the
	// room's highest: the room's members at send time, counted from the receivers' side.
	Members    []int64  `json:"members"`
	JoinSeqSum []uint64 `json:"join_seq_sum"`
	MaxSeq     []uint64 `json:"max_seq"`

	ErrorCodes map[string]int64 `json:"error_codes"`
	CloseCodes map[string]int64 `json:"close_codes"`

	SendStart    int64         `json:"send_start"` // Unix nanoseconds; 0 before sending
	LastAck      int64         `json:"last_ack"`
	LastDelivery int64         `json:"last_delivery"`
	CPU          time.Duration `json:"cpu"` // the worker process's CPU time

	Connect hist `json:"connect"` // upgrade request until welcome
	Latency hist `json:"latency"` // send until receipt, per delivery
}

func newTally(rooms int) tally {
	return tally{
		ConnectFails: map[string]int64{},
		ErrorCodes:   map[string]int64{},
		CloseCodes:   map[string]int64{},
		Members:      make([]int64, rooms),
		JoinSeqSum:   make([]uint64, rooms),
		MaxSeq:       make([]uint64, rooms),
		Connect:      newHist(),
		Latency:      newHist(),
	}
}

// merge adds o into t. Counts add, the highest seqs and latest times take the maximum, the
// start the earliest.
func (t *tally) merge(o tally) {
	t.Users += o.Users
	t.Attempted += o.Attempted
	t.Connected += o.Connected
	t.Failed += o.Failed
	t.JoinFailed += o.JoinFailed
	t.Sent += o.Sent
	t.Acked += o.Acked
	t.Refused += o.Refused
	t.Rejected += o.Rejected
	t.Delivered += o.Delivered
	t.Duplicated += o.Duplicated
	t.OutOfOrder += o.OutOfOrder
	t.Stray += o.Stray
	t.Undecodable += o.Undecodable
	t.CPU += o.CPU
	addCounts(t.ConnectFails, o.ConnectFails)
	addCounts(t.ErrorCodes, o.ErrorCodes)
	addCounts(t.CloseCodes, o.CloseCodes)
	for r := range min(len(t.Members), len(o.Members), len(o.JoinSeqSum), len(o.MaxSeq)) {
		t.Members[r] += o.Members[r]
		t.JoinSeqSum[r] += o.JoinSeqSum[r]
		t.MaxSeq[r] = max(t.MaxSeq[r], o.MaxSeq[r])
	}
	if o.SendStart != 0 && (t.SendStart == 0 || o.SendStart < t.SendStart) {
		t.SendStart = o.SendStart
	}
	t.LastAck = max(t.LastAck, o.LastAck)
	t.LastDelivery = max(t.LastDelivery, o.LastDelivery)
	t.Connect.merge(o.Connect)
	t.Latency.merge(o.Latency)
}

func addCounts(dst, src map[string]int64) {
	for k, n := range src {
		dst[k] += n
	}
}

// expected is the number of deliveries the members were owed: for each room, every member
// is owed each seq after the one it joined at, up to the room's highest.
func (t *tally) expected() int64 {
	var n int64
	for r := range t.Members {
		n += t.Members[r]*int64(t.MaxSeq[r]) - int64(t.JoinSeqSum[r])
	}
	return n
}
