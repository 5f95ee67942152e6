package hub

import (
	"testing"

	"github.com/shardchat/shardchat/shard"
)

func TestParsePayload(t *testing.T) {
	t.Parallel()
	ev, err := parsePayload("M e1 7 al ice\n{\"a\":1}")
	if err != nil || ev.Kind != shard.EventMessage || ev.Epoch != "e1" || ev.Seq != 7 || ev.User != "al ice" || string(ev.Obj) != `{"a":1}` {
		t.Fatalf("message: %v %+v", err, ev)
	}
	for p, kind := range map[string]shard.EventKind{"P 1 carol\n{}": shard.EventPresence, "T 0 dave\n{}": shard.EventTyping} {
		if ev, err := parsePayload(p); err != nil || ev.Kind != kind || ev.User == "" {
			t.Fatalf("%q: %v %+v", p, err, ev)
		}
	}
	for _, bad := range []string{"M e1 x u\n{}", "M e1 0 u\n{}", "X 1 u\n{}", "M e1 1 u", "T 2 u\n{}", ""} {
		if _, err := parsePayload(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// FuzzParsePayload: whatever comes on a channel, parsing never panics, and a message it
// accepts has a seq.
func FuzzParsePayload(f *testing.F) {
	f.Add("M e1 7 al ice\n{\"a\":1}")
	f.Add("P 1 carol\n{}")
	f.Fuzz(func(t *testing.T, p string) {
		if ev, err := parsePayload(p); err == nil && ev.Kind == shard.EventMessage && ev.Seq == 0 {
			t.Fatal("a message with seq 0")
		}
	})
}
