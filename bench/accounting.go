package bench

import "strconv"

// receipt is what one message object meant to the member that received it.
type receipt uint8

const (
	// receiptNew is the first delivery of an expected seq.
	receiptNew receipt = iota
	// receiptLate is the first delivery of a seq that arrived after a higher one: delivered,
	// and counted out of order as well.
	receiptLate
	// receiptDuplicate is a seq received before (or one from before the member joined).
	receiptDuplicate
)

// roomTrack follows one member's view of one room: which sequence numbers arrived, and in
// what order. Every seq after joinSeq is expected once, in order. Owned by the member's
// reader goroutine.
//
// It keeps the contiguous prefix as one number (next) and only the seqs that arrived past a
// gap in a set, so a member that gets everything in order (the server's guarantee) costs a
// few words however long the run.
type roomTrack struct {
	joinSeq uint64              // the room's seq in joined: later seqs are expected
	next    uint64              // the lowest seq after joinSeq not received yet
	maxSeq  uint64              // the highest seq received, or joinSeq
	ahead   map[uint64]struct{} // received seqs above next; nil while there is no gap

	delivered  int64 // distinct expected seqs received
	duplicated int64 // seqs received again, or from before the join
	outOfOrder int64 // seqs received after a higher one
}

func newRoomTrack(joinSeq uint64) roomTrack {
	return roomTrack{joinSeq: joinSeq, next: joinSeq + 1, maxSeq: joinSeq}
}

// receive records one delivery of seq.
func (t *roomTrack) receive(seq uint64) receipt {
	switch {
	case seq < t.next:
		t.duplicated++
		return receiptDuplicate
	case seq == t.next:
		t.next++
		for len(t.ahead) > 0 {
			if _, ok := t.ahead[t.next]; !ok {
				break
			}
			delete(t.ahead, t.next)
			t.next++
		}
	default: // past a gap
		if _, ok := t.ahead[seq]; ok {
			t.duplicated++
			return receiptDuplicate
		}
		if t.ahead == nil {
			t.ahead = make(map[uint64]struct{})
		}
		t.ahead[seq] = struct{}{}
	}
	t.delivered++
	if seq < t.maxSeq {
		t.outOfOrder++
		return receiptLate
	}
	t.maxSeq = seq
	return receiptNew
}

// complete reports whether every seq up to final has arrived.
func (t *roomTrack) complete(final uint64) bool { return t.next > final }

// appendRef encodes a message's ref: the sender's user id and the send time in Unix nanoseconds,
// so that any receiver can attribute the message and time its trip without shared state.
func appendRef(dst []byte, user int, sentNanos int64) []byte {
	dst = strconv.AppendInt(dst, int64(user), 10)
	dst = append(dst, '.')
	return strconv.AppendInt(dst, sentNanos, 10)
}

// parseRef decodes a ref made by appendRef.
func parseRef(ref []byte) (user int, sentNanos int64, ok bool) {
	dot := -1
	for i, c := range ref {
		if c == '.' {
			dot = i
			break
		}
	}
	if dot <= 0 || dot == len(ref)-1 {
		return 0, 0, false
	}
	u, ok := parseDigits(ref[:dot])
	if !ok || u > 1<<31 {
		return 0, 0, false
	}
	ns, ok := parseDigits(ref[dot+1:])
	if !ok {
		return 0, 0, false
	}
	return int(u), ns, true
}

// parseDigits parses a non-negative decimal that fits an int64.
func parseDigits(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 19 {
		return 0, false
	}
	var v int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := int64(c - '0')
		if v > (1<<63-1-d)/10 {
			return 0, false
		}
		v = v*10 + d
	}
	return v, true
}
