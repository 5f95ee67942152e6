package hub

import (
	"reflect"
	"strconv"
	"testing"

	"github.com/shardchat/shardchat/shard"
)

func TestParsePayload(t *testing.T) {
	t.Parallel()
	good := []struct {
		payload string
		want    shard.Event
	}{
		{"M e1 7 al ice\n{\"a\":1}", shard.Event{Kind: shard.EventMessage, Epoch: "e1", Seq: 7, User: "al ice", Obj: []byte(`{"a":1}`)}},
		{"P 1 carol\n{}", shard.Event{Kind: shard.EventPresence, On: true, User: "carol", Obj: []byte(`{}`)}},
		{"P 0 carol\n{}", shard.Event{Kind: shard.EventPresence, On: false, User: "carol", Obj: []byte(`{}`)}},
		{"T 1 dave\n{}", shard.Event{Kind: shard.EventTyping, On: true, User: "dave", Obj: []byte(`{}`)}},
		{"T 0 dave\n{}", shard.Event{Kind: shard.EventTyping, On: false, User: "dave", Obj: []byte(`{}`)}},
	}
	for _, tc := range good {
		ev, err := parsePayload(tc.payload)
		if err != nil || ev.Kind != tc.want.Kind || ev.Epoch != tc.want.Epoch || ev.Seq != tc.want.Seq ||
			ev.User != tc.want.User || ev.On != tc.want.On || string(ev.Obj) != string(tc.want.Obj) {
			t.Errorf("%q: %v %+v, want %+v", tc.payload, err, ev, tc.want)
		}
	}
	for _, bad := range []string{"M e1 x u\n{}", "M e1 0 u\n{}", "M e1 7\n{}", "X 1 u\n{}", "M e1 1 u", "T 2 u\n{}", "P 1\n{}", ""} {
		if _, err := parsePayload(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// FuzzParsePayload: whatever comes on a channel, parsing never panics; a message it accepts
// has a seq; and what it accepts, written again the way the hosts write it (the publish
// script's format for messages, typingPayload and presencePayload), parses to the same event.
func FuzzParsePayload(f *testing.F) {
	f.Add("M e1 7 al ice\n{\"a\":1}")
	f.Add("P 1 carol\n{}")
	f.Add("T 0 dave\n{\"b\":2}")
	f.Fuzz(func(t *testing.T, p string) {
		ev, err := parsePayload(p)
		if err != nil {
			return
		}
		var again string
		switch ev.Kind {
		case shard.EventMessage:
			if ev.Seq == 0 {
				t.Fatal("a message with seq 0")
			}
			again = "M " + ev.Epoch + " " + strconv.FormatUint(ev.Seq, 10) + " " + ev.User + "\n" + string(ev.Obj)
		case shard.EventTyping:
			again = typingPayload(ev.User, ev.On, ev.Obj)
		case shard.EventPresence:
			again = presencePayload(ev.User, ev.On, ev.Obj)
		default:
			t.Fatalf("%q parsed as kind %v", p, ev.Kind)
		}
		ev2, err := parsePayload(again)
		if err != nil || !reflect.DeepEqual(ev, ev2) {
			t.Fatalf("%q parsed as %+v; written again as %q it parses as %+v, %v", p, ev, again, ev2, err)
		}
	})
}
