package bench

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/shardchat/shardchat/transport/wire"
	"github.com/shardchat/shardchat/transport/wire/jsonscan"
)

// realLines are server objects as the server encodes them.
func realLines() [][]byte {
	msg := wire.Message{Room: "bench-1a2b-3", Seq: 42, User: "u7", Text: "hello \"world\"\n\u2028é", TS: 1764430001234, Ref: "7.1764430001234000000"}
	return [][]byte{
		wire.AppendMessage(nil, &msg),
		wire.AppendMessage(nil, &wire.Message{Room: "general", Seq: 1, User: "bob", Text: "hi", TS: 1}),
		wire.AppendWelcome(nil, "host-a-7f3c", wire.Limits{Text: 4000, Rooms: 16, Rate: 10, Burst: 20}),
		wire.AppendJoined(nil, &wire.Joined{Ref: "j", Room: "general", User: "alice", Epoch: "k3J9", Seq: 41, Users: []string{"alice", "bob"},
			History: [][]byte{wire.AppendMessage(nil, &msg)}}),
		wire.AppendError(nil, "7.123", wire.Errorf(wire.CodeRateLimited, "at most %d messages a second", 10)),
		wire.AppendPresence(nil, "general", "carol", wire.PresenceJoin),
		wire.AppendTyping(nil, "general", "bob", true),
		wire.AppendPong(nil, "5"),
		wire.AppendHistory(nil, "4", "general", [][]byte{wire.AppendMessage(nil, &msg)}),
	}
}

func TestScanObject(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		line string
		want object // typ, room, ref, code, seq, hasSeq
		err  bool
	}{
		{name: "message", line: string(realLines()[0]),
			want: object{typ: []byte("message"), room: []byte("bench-1a2b-3"), ref: []byte("7.1764430001234000000"), seq: 42, hasSeq: true}},
		{name: "welcome", line: string(realLines()[2]), want: object{typ: []byte("welcome")}},
		{name: "joined skips its history", line: string(realLines()[3]),
			want: object{typ: []byte("joined"), room: []byte("general"), ref: []byte("j"), seq: 41, hasSeq: true}},
		{name: "error", line: string(realLines()[4]), want: object{typ: []byte("error"), ref: []byte("7.123"), code: []byte("rate_limited")}},
		{name: "escaped value", line: `{"type":"mess\u0061ge","room":"a\/b"}`, want: object{typ: []byte("message"), room: []byte("a/b")}},
		{name: "escaped key", line: `{"\u0074ype":"pong"}`, want: object{typ: []byte("pong")}},
		{name: "last duplicate wins", line: `{"seq":1,"seq":2}`, want: object{seq: 2, hasSeq: true}},
		{name: "null is absent", line: `{"type":null,"seq":null}`, want: object{}},
		{name: "white space", line: " \t{ \"type\" : \"x\" , \"seq\" : 0 }\r ", want: object{typ: []byte("x"), hasSeq: true}},
		{name: "largest seq", line: `{"seq":18446744073709551615}`, want: object{seq: 1<<64 - 1, hasSeq: true}},
		{name: "nested skipped", line: `{"a":[1,-2.5e3,{"b":[true,false,null,"\"]"]}],"type":"t"}`, want: object{typ: []byte("t")}},
		{name: "empty object", line: `{}`, want: object{}},
		{name: "case matters", line: `{"TYPE":"message"}`, want: object{}},

		{name: "empty", line: ``, err: true},
		{name: "array", line: `[]`, err: true},
		{name: "trailing garbage", line: `{"type":"x"}x`, err: true},
		{name: "seq overflow", line: `{"seq":18446744073709551616}`, err: true},
		{name: "negative seq", line: `{"seq":-1}`, err: true},
		{name: "fractional seq", line: `{"seq":1.5}`, err: true},
		{name: "exponent seq", line: `{"seq":1e2}`, err: true},
		{name: "string seq", line: `{"seq":"1"}`, err: true},
		{name: "number type", line: `{"type":1}`, err: true},
		{name: "leading zero", line: `{"a":01}`, err: true},
		{name: "bad escape", line: `{"a":"\x"}`, err: true},
		{name: "control character", line: "{\"a\":\"\x01\"}", err: true},
		{name: "unterminated", line: `{"type":"message`, err: true},
		{name: "trailing comma", line: `{"type":"x",}`, err: true},
		{name: "missing colon", line: `{"type" "x"}`, err: true},
		{name: "bad literal", line: `{"a":tru}`, err: true},
		{name: "unclosed array", line: `{"a":[1,2}`, err: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var o object
			err := scanObject([]byte(tt.line), &o)
			if tt.err {
				if err == nil || !errors.Is(err, jsonscan.ErrUnexpected) {
					t.Fatalf("scanObject(%q) = %v, want a syntax error", tt.line, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("scanObject(%q): %v", tt.line, err)
			}
			if !sameObject(o, tt.want) {
				t.Errorf("scanObject(%q) = %s, want %s", tt.line, show(o), show(tt.want))
			}
		})
	}
}

func sameObject(a, b object) bool {
	return bytes.Equal(a.typ, b.typ) && bytes.Equal(a.room, b.room) && bytes.Equal(a.ref, b.ref) &&
		bytes.Equal(a.code, b.code) && a.seq == b.seq && a.hasSeq == b.hasSeq
}

func show(o object) string {
	b, _ := json.Marshal(map[string]any{"type": string(o.typ), "room": string(o.room), "ref": string(o.ref), "code": string(o.code), "seq": o.seq, "has_seq": o.hasSeq})
	return string(b)
}

// TestScanObjectAllocs holds the hot path to no allocation for the objects the server sends.
func TestScanObjectAllocs(t *testing.T) {
	lines := realLines()
	var o object
	allocs := testing.AllocsPerRun(100, func() {
		for _, line := range lines[1:] { // the first has escapes in its text only: skipped, no allocation either
			if err := scanObject(line, &o); err != nil {
				t.Fatal(err)
			}
		}
		if err := scanObject(lines[0], &o); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("scanObject allocates %.1f times per pass over real lines, want 0", allocs)
	}
}

// referenceScan decodes a line with encoding/json, as the definition scanObject keeps to:
// top-level keys match exactly, the last duplicate wins, null is absent, and a field of the
// wrong JSON type is an error, in any of its duplicates.
func referenceScan(line []byte) (object, bool) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(line, &fields); err != nil || fields == nil {
		return object{}, false
	}
	// Again pair by pair: the map keeps only the last of duplicate keys, and a struct would
	// match keys whatever their case.
	dec := json.NewDecoder(bytes.NewReader(line))
	if _, err := dec.Token(); err != nil {
		return object{}, false
	}
	var o object
	strs := map[string]*[]byte{"type": &o.typ, "room": &o.room, "ref": &o.ref, "code": &o.code}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return object{}, false
		}
		key, _ := tok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return object{}, false
		}
		null := string(raw) == "null"
		switch dst, isStr := strs[key]; {
		case isStr && null:
			*dst = nil
		case isStr:
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				return object{}, false
			}
			*dst = []byte(s)
		case key == "seq" && null:
			o.seq, o.hasSeq = 0, false
		case key == "seq":
			if err := json.Unmarshal(raw, &o.seq); err != nil {
				return object{}, false
			}
			o.hasSeq = true
		}
	}
	return o, true
}

// FuzzScanObject holds the hand-written scanner to encoding/json on any input: it accepts
// exactly the lines encoding/json accepts (as an object with well-typed fields) and reads the
// same values from them.
func FuzzScanObject(f *testing.F) {
	for _, line := range realLines() {
		f.Add(line)
	}
	for _, s := range []string{`{}`, `{"seq":1,"seq":null}`, `{"seq":"","seq":0}`, `{"type":1,"type":"x"}`, `{"type":"\ud800"}`, "{\"type\":\"\xff\"}", `{"a":[[[]]]}`, `{"seq":0}`, `{"ref":"1.2","code":"x"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		var got object
		err := scanObject(line, &got)
		want, ok := referenceScan(line)
		if ok != (err == nil) {
			t.Fatalf("scanObject(%q) error %v, encoding/json accepts: %v", line, err, ok)
		}
		if ok && !sameObject(got, want) {
			t.Fatalf("scanObject(%q) = %s, encoding/json reads %s", line, show(got), show(want))
		}
	})
}

func BenchmarkScanObject(b *testing.B) {
	msg := wire.AppendMessage(nil, &wire.Message{Room: "bench-1a2b-3", Seq: 123456, User: "u12345", Text: strings.Repeat("x", 64), TS: 1764430001234, Ref: "12345.1764430001234000000"})
	// The long way: the same message with a space after its first comma misses the fast path.
	long := bytes.Replace(msg, []byte(`,`), []byte(`, `), 1)
	for _, bc := range []struct {
		name string
		line []byte
	}{{"scan", msg}, {"scan-long-way", long}} {
		b.Run(bc.name, func(b *testing.B) {
			var o object
			if scanMessage(bc.line, &o) != (bc.name == "scan") {
				b.Fatal("the line does not take the path it is meant to measure")
			}
			b.SetBytes(int64(len(bc.line)))
			for b.Loop() {
				if err := scanObject(bc.line, &o); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	// The control: what a full decode with encoding/json would cost per delivery.
	b.Run("encoding-json", func(b *testing.B) {
		b.SetBytes(int64(len(msg)))
		for b.Loop() {
			var ev wire.Event
			if err := json.Unmarshal(msg, &ev); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestScanMessageFastPath: the messages the server writes take scanMessage's fast path (the
// bench's speed depends on it), with or without a ref and with escapes in the text; anything
// else falls back to the long way, which reads the same fields.
func TestScanMessageFastPath(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		line string
		fast bool
	}{
		{"as the server writes it", string(wire.AppendMessage(nil, &wire.Message{Room: "r-1", Seq: 9, User: "u1", Text: "hi", TS: 17, Ref: "1.2"})), true},
		{"no ref", string(wire.AppendMessage(nil, &wire.Message{Room: "r-1", Seq: 9, User: "u1", Text: "hi", TS: 17})), true},
		{"escapes in the text", string(wire.AppendMessage(nil, &wire.Message{Room: "r-1", Seq: 9, User: "u1", Text: "\"q\"\n é", TS: 17, Ref: "1.2"})), true},
		{"white space", `{"type":"message", "room":"r-1","seq":9,"user":"u1","text":"hi","ts":17}`, false},
		{"an escape in the room", `{"type":"message","room":"r\u002d1","seq":9,"user":"u1","text":"hi","ts":17}`, false},
		{"another order", `{"type":"message","seq":9,"room":"r-1","user":"u1","text":"hi","ts":17}`, false},
		{"a key more", `{"type":"message","room":"r-1","seq":9,"user":"u1","text":"hi","ts":17,"ref":"1.2","x":1}`, false},
		{"seq not an integer", `{"type":"message","room":"r-1","seq":9.5,"user":"u1","text":"hi","ts":17}`, false},
		{"trailing space", `{"type":"message","room":"r-1","seq":9,"user":"u1","text":"hi","ts":17} `, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var fast object
			if got := scanMessage([]byte(tc.line), &fast); got != tc.fast {
				t.Fatalf("scanMessage(%s) = %v, want %v", tc.line, got, tc.fast)
			}
			want, ok := referenceScan([]byte(tc.line))
			var got object
			err := scanObject([]byte(tc.line), &got)
			if ok != (err == nil) || ok && !sameObject(got, want) {
				t.Fatalf("scanObject(%s) = %s, %v; encoding/json: %s, %v", tc.line, show(got), err, show(want), ok)
			}
		})
	}
}
