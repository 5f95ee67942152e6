package hub

import (
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/shardchat/shardchat/shard"
)

func TestParsePayload(t *testing.T) {
	t.Parallel()
	msg := func(epoch string, seq uint64, user, obj string) shard.Event {
		return shard.Event{Kind: shard.EventMessage, Epoch: epoch, Seq: seq, User: user, Obj: []byte(obj)}
	}
	good := []struct {
		payload string
		want    []shard.Event
	}{
		{"M e1 7 al ice\n{\"a\":1}", []shard.Event{msg("e1", 7, "al ice", `{"a":1}`)}},
		{"B e1 1\n7 al ice\n{\"a\":1}", []shard.Event{msg("e1", 7, "al ice", `{"a":1}`)}},
		{"B e1 3\n7 al ice\n{\"a\":1}\n8 bob\n{}\n9 al ice\n{\"c\":3}",
			[]shard.Event{msg("e1", 7, "al ice", `{"a":1}`), msg("e1", 8, "bob", `{}`), msg("e1", 9, "al ice", `{"c":3}`)}},
		{"B e1 2\n7 bob\n\n8 bob\n", []shard.Event{msg("e1", 7, "bob", ""), msg("e1", 8, "bob", "")}},
		{"P 1 carol\n{}", []shard.Event{{Kind: shard.EventPresence, On: true, User: "carol", Obj: []byte(`{}`)}}},
		{"P 0 carol\n{}", []shard.Event{{Kind: shard.EventPresence, On: false, User: "carol", Obj: []byte(`{}`)}}},
		{"T 1 dave\n{}", []shard.Event{{Kind: shard.EventTyping, On: true, User: "dave", Obj: []byte(`{}`)}}},
		{"T 0 dave\n{}", []shard.Event{{Kind: shard.EventTyping, On: false, User: "dave", Obj: []byte(`{}`)}}},
	}
	for _, tc := range good {
		evs, err := parsePayload(tc.payload, nil)
		if err != nil || !reflect.DeepEqual(evs, tc.want) {
			t.Errorf("%q: %v %+v, want %+v", tc.payload, err, evs, tc.want)
		}
	}
	for _, bad := range []string{"M e1 x u\n{}", "M e1 0 u\n{}", "M e1 7\n{}", "X 1 u\n{}", "M e1 1 u", "T 2 u\n{}", "P 1\n{}", "",
		"B e1 0\n", "B e1 x\n7 u\n{}", "B e1\n7 u\n{}", "B e1 2\n7 u\n{}", "B e1 1\n7 u\n{}\n8 u\n{}", "B e1 2\n7 u\n{}\n0 u\n{}",
		"B e1 2\n7 u\n{}\n8\n{}", "B e1 99999999999999999999\n7 u\n{}"} {
		if evs, err := parsePayload(bad, nil); err == nil {
			t.Errorf("%q accepted as %+v", bad, evs)
		}
	}
}

// TestBatchObjectsStayApart: the objects of a batch share one copy of the payload, so each
// must end its capacity where it ends: an append to one must not write over the next.
func TestBatchObjectsStayApart(t *testing.T) {
	t.Parallel()
	evs, err := parsePayload("B e1 3\n1 a\n{}\n2 b\n[]\n3 c\n{\"x\":1}", nil)
	if err != nil || len(evs) != 3 {
		t.Fatal(evs, err)
	}
	for i, ev := range evs {
		if cap(ev.Obj) != len(ev.Obj) {
			t.Errorf("object %d %q has room for %d more bytes, over what follows it", i, ev.Obj, cap(ev.Obj)-len(ev.Obj))
		}
	}
	_ = append(evs[0].Obj, strings.Repeat("x", 32)...)
	if string(evs[1].Obj) != "[]" || string(evs[2].Obj) != `{"x":1}` {
		t.Fatalf("the objects after an append to the first: %q, %q", evs[1].Obj, evs[2].Obj)
	}
}

// writePayload writes events back the way the hosts write them: the publish script's M and B
// for messages (B for more than one), typingPayload and presencePayload.
func writePayload(t *testing.T, evs []shard.Event) string {
	if len(evs) > 1 {
		var b strings.Builder
		b.WriteString("B " + evs[0].Epoch + " " + strconv.Itoa(len(evs)))
		for _, ev := range evs {
			if ev.Kind != shard.EventMessage || ev.Epoch != evs[0].Epoch {
				t.Fatalf("a batch of %+v", evs)
			}
			b.WriteString("\n" + strconv.FormatUint(ev.Seq, 10) + " " + ev.User + "\n" + string(ev.Obj))
		}
		return b.String()
	}
	ev := evs[0]
	switch ev.Kind {
	case shard.EventMessage:
		return "M " + ev.Epoch + " " + strconv.FormatUint(ev.Seq, 10) + " " + ev.User + "\n" + string(ev.Obj)
	case shard.EventTyping:
		return typingPayload(ev.User, ev.On, ev.Obj)
	case shard.EventPresence:
		return presencePayload(ev.User, ev.On, ev.Obj)
	}
	t.Fatalf("an event of kind %v", ev.Kind)
	return ""
}

// FuzzParsePayload: whatever comes on a channel, parsing never panics; it gives at least one
// event; a message it accepts has a seq; and what it accepts, written again the way the hosts
// write it, parses to the same events.
func FuzzParsePayload(f *testing.F) {
	f.Add("M e1 7 al ice\n{\"a\":1}")
	f.Add("B e1 2\n7 al ice\n{\"a\":1}\n8 bob\n{}")
	f.Add("P 1 carol\n{}")
	f.Add("T 0 dave\n{\"b\":2}")
	f.Fuzz(func(t *testing.T, p string) {
		evs, err := parsePayload(p, nil)
		if err != nil {
			return
		}
		if len(evs) == 0 {
			t.Fatalf("%q parsed as no event", p)
		}
		for _, ev := range evs {
			if ev.Kind == shard.EventMessage && ev.Seq == 0 {
				t.Fatalf("%q: a message with seq 0", p)
			}
		}
		again := writePayload(t, evs)
		evs2, err := parsePayload(again, nil)
		if err != nil || !reflect.DeepEqual(evs, evs2) {
			t.Fatalf("%q parsed as %+v; written again as %q it parses as %+v, %v", p, evs, again, evs2, err)
		}
	})
}

func TestParseRoster(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		payload string
		want    []string
		ok      bool
	}{
		{"R 0\n", nil, true},
		{"R 2\nalice\nbob smith", []string{"alice", "bob smith"}, true},
		{"R 2\nalice", nil, false},      // fewer names than said
		{"R 1\nalice\nbob", nil, false}, // more
		{"R 0\nalice", nil, false},
		{"R x\n", nil, false},
		{"R -1\n", nil, false},
		{"R 1", nil, false},
		{"P 1 carol\n{}", nil, false},
	} {
		got, err := parseRoster(tc.payload)
		if (err == nil) != tc.ok || !slices.Equal(got, tc.want) {
			t.Errorf("parseRoster(%q) = %q, %v; want %q, ok %v", tc.payload, got, err, tc.want, tc.ok)
		}
	}
}

func FuzzParseRoster(f *testing.F) {
	f.Add("R 0\n")
	f.Add("R 2\nalice\nbob smith")
	f.Fuzz(func(t *testing.T, p string) {
		names, err := parseRoster(p)
		if err != nil {
			return
		}
		again := "R " + strconv.Itoa(len(names)) + "\n" + strings.Join(names, "\n")
		names2, err := parseRoster(again)
		if err != nil || !slices.Equal(names, names2) {
			t.Fatalf("%q parsed as %q; written again as %q it parses as %q, %v", p, names, again, names2, err)
		}
	})
}
