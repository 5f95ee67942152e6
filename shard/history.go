package shard

// history is a room's ring of its newest messages, kept encoded so that joined and history
// replies are built by concatenation, never by encoding again.
type history struct {
	entries []entry // allocated on the first message; entries[seq%len] holds seq
	size    int     // capacity the ring will have
	newest  uint64  // seq of the newest stored message, 0 when none
}

type entry struct {
	seq uint64
	obj []byte
}

func newHistory(size int) history { return history{size: size} }

// add stores the encoded message obj with sequence number seq, the newest so far.
func (h *history) add(seq uint64, obj []byte) {
	if h.size == 0 {
		h.newest = seq
		return
	}
	if h.entries == nil {
		h.entries = make([]entry, h.size)
	}
	h.entries[seq%uint64(h.size)] = entry{seq: seq, obj: obj}
	h.newest = seq
}

// retainedAfter reports whether every message with a seq above after is still held.
func (h *history) retainedAfter(after uint64) bool {
	if after >= h.newest {
		return true
	}
	if h.size == 0 {
		return false
	}
	first := after + 1
	e := h.entries[first%uint64(h.size)]
	return e.seq == first && e.obj != nil
}

// between returns the held messages with after < seq < before, at most limit of them (the
// newest), oldest first. before == 0 means no upper bound.
func (h *history) between(after, before uint64, limit int) [][]byte {
	if h.entries == nil || limit <= 0 {
		return nil
	}
	hi := h.newest
	if before != 0 && before-1 < hi {
		hi = before - 1
	}
	if hi <= after {
		return nil
	}
	lo := after + 1
	if hi-lo+1 > uint64(limit) {
		lo = hi - uint64(limit) + 1
	}
	out := make([][]byte, 0, hi-lo+1)
	for seq := lo; seq <= hi; seq++ {
		e := h.entries[seq%uint64(h.size)]
		if e.seq != seq || e.obj == nil {
			out = out[:0] // older than the ring holds: keep only the contiguous newest run
			continue
		}
		out = append(out, e.obj)
	}
	return out
}
