package hub

import "github.com/cespare/xxhash/v2"

// Router maps a room name to one of n shards with a consistent hash: a room always maps to
// the same shard, and rooms spread evenly. Jump hash (Lamping and Veach, 2014) over xxhash
// needs no table and moves only 1/n of the rooms when a shard is added.
type Router struct {
	n int32
}

// NewRouter returns a router over n shards; n must be at least 1.
func NewRouter(n int) Router {
	if n < 1 {
		panic("hub: a router needs at least one shard")
	}
	return Router{n: int32(n)}
}

// Shard returns the index of the shard that owns room.
func (r Router) Shard(room string) int {
	return int(jumpHash(xxhash.Sum64String(room), r.n))
}

// jumpHash is the jump consistent hash of key over n buckets.
func jumpHash(key uint64, n int32) int32 {
	var b, j int64 = -1, 0
	for j < int64(n) {
		b = j
		key = key*2862933555777941757 + 1
		j = int64(float64(b+1) * (float64(int64(1)<<31) / float64((key>>33)+1)))
	}
	return int32(b)
}
