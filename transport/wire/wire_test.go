package wire

import (
	"bytes"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"math"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// seedFrames are real protocol lines, for the table tests and the fuzz corpus.
var seedFrames = []string{
	`{"type":"join","room":"general","user":"alice","ref":"1"}`,
	`{"type":"join","room":"general","since":{"epoch":"k3J9","seq":41},"ref":"2"}`,
	`{"type":"leave","room":"general","ref":"2"}`,
	`{"type":"message","room":"general","text":"hello","ref":"c-17"}`,
	`{"type":"typing","room":"general","on":true}`,
	`{"type":"users","room":"general","ref":"3"}`,
	`{"type":"history","room":"general","before":40,"limit":20,"ref":"4"}`,
	`{"type":"ping","ref":"5"}`,
	`{"type":"message","room":"r","text":"\u2028 \ud800 \"q\" \\ é 日本"}`,
	`{"type":"join","room":"r","user":" \t bob \n"}`,
	`not json`,
	`{"type":"history","room":"r","limit":1e3}`,
}

func TestDecodeValid(t *testing.T) {
	t.Parallel()
	cases := []struct {
		frame string
		want  Request
	}{
		{seedFrames[0], Request{Type: TypeJoin, Room: "general", User: "alice", Ref: "1"}},
		{seedFrames[1], Request{Type: TypeJoin, Room: "general", Ref: "2", Since: &Since{Epoch: "k3J9", Seq: 41}}},
		{seedFrames[2], Request{Type: TypeLeave, Room: "general", Ref: "2"}},
		{seedFrames[3], Request{Type: TypeMessage, Room: "general", Text: "hello", Ref: "c-17"}},
		{seedFrames[4], Request{Type: TypeTyping, Room: "general", On: true}},
		{seedFrames[5], Request{Type: TypeUsers, Room: "general", Ref: "3"}},
		{seedFrames[6], Request{Type: TypeHistory, Room: "general", Before: 40, Limit: 20, Ref: "4"}},
		{`{"type":"history","room":"general"}`, Request{Type: TypeHistory, Room: "general", Limit: DefHistoryLimit}},
		{seedFrames[7], Request{Type: TypePing, Ref: "5"}},
		{seedFrames[9], Request{Type: TypeJoin, Room: "r", User: "bob"}},
		{`{"type":"typing","room":"general","on":false}`, Request{Type: TypeTyping, Room: "general"}},
		{`{"type":"ping","extra":{"nested":[1,2]},"room":5}`, Request{Type: TypePing}},
		{`  {"type":"message","room":"a.b-c_d","text":" x "}`, Request{Type: TypeMessage, Room: "a.b-c_d", Text: " x "}},
	}
	for _, tc := range cases {
		got, err := Decode([]byte(tc.frame))
		if err != nil {
			t.Errorf("Decode(%s): %v", tc.frame, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Decode(%s) = %+v, want %+v", tc.frame, got, tc.want)
		}
	}
}

func TestDecodeInvalid(t *testing.T) {
	t.Parallel()
	cases := []struct {
		frame string
		code  Code
	}{
		{"\xff{}", CodeBadRequest},
		{`{"type":"message","room":"r","text":"` + "\xc3\x28" + `"}`, CodeBadRequest},
		{`{"type":"ping","ref":5}`, CodeBadRequest},
		{`{"type":"join","room":"r","user":"` + strings.Repeat("a", 33) + `"}`, CodeInvalidUser},
		{`{"type":"join","room":"r","user":"\u200b\u0000"}`, CodeInvalidUser},
		{`{"type":"join","room":"","user":"u"}`, CodeInvalidRoom},
		{`{"type":"join","room":"_r","user":"u"}`, CodeInvalidRoom},
		{`{"type":"history","room":"r","before":0}`, CodeBadRequest},
		{`{"type":"history","room":"r","limit":1.5}`, CodeBadRequest},
		{`{"type":"history","room":"r","limit":1e3}`, CodeBadRequest},
		{`{"type":"join","room":"r","user":"u","since":{"epoch":1}}`, CodeBadRequest},
		{`{"type":"Join","room":"r"}`, CodeUnknownType},
	}
	for _, tc := range cases {
		_, err := Decode([]byte(tc.frame))
		if err == nil || err.Code != tc.code {
			t.Errorf("Decode(%q) = %v, want %s", tc.frame, err, tc.code)
		}
	}
}

func TestNames(t *testing.T) {
	t.Parallel()
	rooms := map[string]bool{
		"a": true, "General": true, "a.b": true, "0_x-y": true, strings.Repeat("r", 64): true,
		"": false, ".a": false, "-a": false, "_a": false, "a b": false, "ä": false, "a/b": false, strings.Repeat("r", 65): false,
	}
	for name, want := range rooms {
		if got := ValidRoom(name); got != want {
			t.Errorf("ValidRoom(%q) = %v", name, got)
		}
	}
	users := []struct {
		in, out string
		ok      bool
	}{
		{"alice", "alice", true},
		{"  Zoë  ", "Zoë", true},
		{strings.Repeat("日", 32), strings.Repeat("日", 32), true},
		{strings.Repeat("日", 33), "", false},
		{"a\tb", "", false},
		{"\u0085x", "x", true},  // NEL is white space, trimmed
		{"a\u0085b", "", false}, // and a control character inside
		{"   ", "", false},
	}
	for _, tc := range users {
		out, ok := NormalizeUser(tc.in)
		if out != tc.out || ok != tc.ok {
			t.Errorf("NormalizeUser(%q) = %q, %v", tc.in, out, ok)
		}
	}
}

// jsonString is what encoding/json makes of s, without HTML escaping.
func jsonString(t testing.TB, s string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		t.Fatal(err)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

func TestAppendStringMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"", "plain", "q\"b\\s/", "\n\r\t\x00\x1f\x7f", "é日本🙂", "\u2028\u2029", "bad\xffutf8\xc3", "<&>"} {
		if got, want := string(appendString(nil, s)), jsonString(t, s); got != want {
			t.Errorf("appendString(%q) = %s, want %s", s, got, want)
		}
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "a\nb", "\u2028", "\xff", `"\`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := appendString(nil, s)
		if want := jsonString(t, s); string(got) != want {
			t.Fatalf("appendString(%q) = %s, want %s", s, got, want)
		}
		if bytes.IndexByte(got, '\n') >= 0 {
			t.Fatal("raw newline in output")
		}
	})
}

// TestEncodersRoundTrip checks every server object against what a client decodes from it.
func TestEncodersRoundTrip(t *testing.T) {
	t.Parallel()
	msg := Message{Room: "general", Seq: 42, User: "al\"ice", Text: "hi\nthere \u2028", TS: 1764430001234, Ref: "c-17"}
	msgObj := AppendMessage(nil, &msg)
	wantMsg := Event{Type: TypeMessage, Room: msg.Room, Seq: msg.Seq, User: msg.User, Text: msg.Text, TS: msg.TS, Ref: msg.Ref}
	limits := Limits{Text: 4000, Rooms: 16, Rate: 2.5, Burst: 20}
	cases := []struct {
		name string
		obj  []byte
		want Event
	}{
		{"message", msgObj, wantMsg},
		{"welcome", AppendWelcome(nil, "host-a", limits), Event{Type: TypeWelcome, ProtoVersion: Proto, Node: "host-a", Limits: &limits}},
		{"joined", AppendJoined(nil, &Joined{Ref: "1", Room: "general", User: "alice", Epoch: "k3J9", Seq: 42, Recovered: true, Users: []string{"alice", "bob"}, History: [][]byte{msgObj, msgObj}}),
			Event{Type: TypeJoined, Ref: "1", Room: "general", User: "alice", Epoch: "k3J9", Seq: 42, Recovered: true, Users: []string{"alice", "bob"}, History: []Event{wantMsg, wantMsg}}},
		{"joined empty", AppendJoined(nil, &Joined{Room: "r", User: "u", Epoch: "e"}), Event{Type: TypeJoined, Room: "r", User: "u", Epoch: "e", Users: []string{}, History: []Event{}}},
		{"left", AppendLeft(nil, "2", "general"), Event{Type: TypeLeft, Ref: "2", Room: "general"}},
		{"presence", AppendPresence(nil, "general", "carol", PresenceJoin), Event{Type: TypePresence, Room: "general", User: "carol", Event: PresenceJoin}},
		{"typing", AppendTyping(nil, "general", "bob", true), Event{Type: TypeTyping, Room: "general", User: "bob", On: true}},
		{"users", AppendUsers(nil, "3", "general", []string{"a", "b"}), Event{Type: TypeUsers, Ref: "3", Room: "general", Users: []string{"a", "b"}}},
		{"history", AppendHistory(nil, "4", "general", [][]byte{msgObj}), Event{Type: TypeHistory, Ref: "4", Room: "general", Messages: []Event{wantMsg}}},
		{"pong", AppendPong(nil, "5"), Event{Type: TypePong, Ref: "5"}},
		{"error", AppendError(nil, "c-18", Errorf(CodeRateLimited, "at most %d messages a second", 10)),
			Event{Type: TypeError, Ref: "c-18", Code: CodeRateLimited, Message: "at most 10 messages a second"}},
	}
	for _, tc := range cases {
		if !json.Valid(tc.obj) || bytes.IndexByte(tc.obj, '\n') >= 0 {
			t.Fatalf("%s: not one line of JSON: %s", tc.name, tc.obj)
		}
		evs, err := DecodeFrame(nil, tc.obj)
		if err != nil || len(evs) != 1 {
			t.Fatalf("%s: DecodeFrame: %v, %d objects", tc.name, err, len(evs))
		}
		if !reflect.DeepEqual(evs[0], tc.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", tc.name, evs[0], tc.want)
		}
	}
	// Objects joined by '\n' into one frame split back apart.
	frame := bytes.Join([][]byte{AppendPong(nil, "a"), msgObj, AppendPong(nil, "b")}, []byte{'\n'})
	evs, err := DecodeFrame(nil, frame)
	if err != nil || len(evs) != 3 || evs[1].Seq != 42 || evs[2].Ref != "b" {
		t.Fatalf("batched frame: %v %+v", err, evs)
	}
}

// FuzzDecode feeds the client-frame decoder arbitrary bytes: it must never panic, and what it
// accepts must obey the protocol's rules.
func FuzzDecode(f *testing.F) {
	for _, s := range seedFrames {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		req, err := Decode(frame)
		if err != nil {
			if err.Code == "" || err.Message == "" {
				t.Fatalf("error without code or message: %+v", err)
			}
			if len(req.Ref) > MaxRef {
				t.Fatalf("ref of %d bytes kept", len(req.Ref))
			}
			return
		}
		if len(req.Ref) > MaxRef || !utf8.ValidString(req.Ref) {
			t.Fatalf("bad ref accepted: %q", req.Ref)
		}
		switch req.Type {
		case TypePing:
			return
		case TypeJoin:
			if req.User != "" {
				if u, ok := NormalizeUser(req.User); !ok || u != req.User {
					t.Fatalf("bad user accepted: %q", req.User)
				}
			}
		case TypeMessage:
			if !ValidText(req.Text) {
				t.Fatalf("bad text accepted: %q", req.Text)
			}
		case TypeHistory:
			if req.Limit < 1 || req.Limit > MaxHistoryLimit {
				t.Fatalf("limit %d accepted", req.Limit)
			}
		case TypeLeave, TypeTyping, TypeUsers:
		default:
			t.Fatalf("unknown type %q accepted", req.Type)
		}
		if !ValidRoom(req.Room) {
			t.Fatalf("bad room accepted: %q", req.Room)
		}
		// What was accepted encodes back into valid JSON.
		obj := AppendMessage(nil, &Message{Room: req.Room, User: req.User, Text: req.Text, Ref: req.Ref})
		if !json.Valid(obj) {
			t.Fatalf("re-encoded object is not JSON: %s", obj)
		}
	})
}

// TestScanFlat: the objects clients send take the fast path, and others (which it leaves to
// encoding/json) do not.
func TestScanFlat(t *testing.T) {
	t.Parallel()
	cases := []struct {
		frame string
		flat  bool
	}{
		{seedFrames[0], true},
		{seedFrames[2], true},
		{seedFrames[3], true},
		{seedFrames[4], true},
		{seedFrames[5], true},
		{seedFrames[7], true},
		{seedFrames[9], false}, // escapes
		{` { "type" : "typing" , "room":"r", "on" : false } `, true},
		{`{}`, true},
		{`{"type":"join","room":"r","user":"bob","ref":"1","type":"leave"}`, true},
		{seedFrames[1], false}, // since is an object
		{seedFrames[6], false}, // numbers
		{seedFrames[8], false},
		{`{"Type":"ping"}`, false},
		{`{"type":"ping","extra":1}`, false},
		{`{"type":null}`, false},
		{`{"on":"true"}`, false},
		{`{"on":truex}`, false},
		{`{"type":"ping"} x`, false},
		{`{"type":"ping",}`, false},
		{`{"type":"ping"`, false},
		{"{\"type\":\"a\tb\"}", false}, // a raw tab in a string is not JSON
	}
	for _, tc := range cases {
		var f flatRequest
		if _, got := scanFlat([]byte(tc.frame), &f); got != tc.flat {
			t.Errorf("scanFlat(%s) = %v, want %v", tc.frame, got, tc.flat)
		}
	}
}

// FuzzDecodePaths: Decode answers every frame the same with its fast path as with
// encoding/json alone, the request or the error.
func FuzzDecodePaths(f *testing.F) {
	for _, s := range seedFrames {
		f.Add([]byte(s))
	}
	f.Add([]byte(`{"type":"typing","room":"r","on":false}`))
	f.Add([]byte(`{"type":"typing","room":"r","on":false,"on":true}`))
	f.Add([]byte(`{"type":"message","room":"r","text":"a","text":"b"}`))
	f.Fuzz(func(t *testing.T, frame []byte) {
		fastReq, fastErr := decode(frame, true)
		slowReq, slowErr := decode(frame, false)
		if !reflect.DeepEqual(fastReq, slowReq) || !reflect.DeepEqual(fastErr, slowErr) {
			t.Fatalf("%q: fast path %+v %v, encoding/json %+v %v", frame, fastReq, fastErr, slowReq, slowErr)
		}
	})
}

// FuzzValidate: a request that the Socket.IO layer builds is answered by Validate as Decode
// answers the frame json.Marshal makes of it, the request or the error. Its strings come from
// encoding/json, so they are valid UTF-8.
func FuzzValidate(f *testing.F) {
	f.Add("join", "sio-ack:1", "general", " alice ", "", uint8(0), true, "k3J9", uint64(4), uint64(0), 0)
	f.Add("message", "", "general", "", "hello", uint8(0), false, "", uint64(0), uint64(0), 0)
	f.Add("typing", "", "general", "", "", uint8(1), false, "", uint64(0), uint64(0), 0)
	f.Add("typing", "", "r", "", "", uint8(0), false, "", uint64(0), uint64(0), 0)
	f.Add("history", "h", "r", "", "", uint8(0), false, "", uint64(7), uint64(0), -3)
	f.Add("leave", strings.Repeat("r", 65), "", "", "", uint8(2), false, "", uint64(0), uint64(0), 0)
	f.Add("users", "", "bad room", "", " ", uint8(0), false, "", uint64(0), uint64(0), 0)
	// Each field left empty, which json.Marshal leaves out: absent, not empty.
	f.Add("history", "", "r", "", "", uint8(0), false, "", uint64(0), uint64(0), 0)
	f.Add("message", "", "r", "", "", uint8(0), false, "", uint64(0), uint64(0), 0)
	f.Add("leave", "", "", "", "", uint8(0), false, "", uint64(0), uint64(0), 0)
	f.Add("join", "", "r", "", "", uint8(0), false, "", uint64(0), uint64(0), 0)
	f.Fuzz(func(t *testing.T, typ, ref, room, user, text string, on uint8, hasSince bool, epoch string, seq, before uint64, limit int) {
		for _, s := range []string{typ, ref, room, user, text, epoch} {
			if !utf8.ValidString(s) {
				return
			}
		}
		c := ClientRequest{Type: typ, Ref: ref, Room: room, User: user, Text: text, Before: before, Limit: limit}
		if on > 0 {
			c.On = new(on == 2)
		}
		if hasSince {
			c.Since = &Since{Epoch: epoch, Seq: seq}
		}
		frame, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		gotReq, gotErr := c.Validate()
		wantReq, wantErr := Decode(frame)
		if !reflect.DeepEqual(gotReq, wantReq) || !reflect.DeepEqual(gotErr, wantErr) {
			t.Fatalf("%+v: Validate %+v %v, Decode(%s) %+v %v", c, gotReq, gotErr, frame, wantReq, wantErr)
		}
	})
}

// BenchmarkDecode: a message object on the fast path, and through encoding/json (the
// control).
func BenchmarkDecode(b *testing.B) {
	short := `{"type":"message","room":"general","text":"hello there, how is everyone doing today?","ref":"c-17"}`
	long := strings.Replace(short, "hello there", strings.Repeat("a line of chat ", 60), 1) // about 1 KB
	for _, bc := range []struct {
		name  string
		frame []byte
		fast  bool
	}{
		{"fast", []byte(short), true}, {"fast-1KB", []byte(long), true},
		{"encoding-json", []byte(short), false}, {"encoding-json-1KB", []byte(long), false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.frame)))
			for b.Loop() {
				if _, err := decode(bc.frame, bc.fast); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkAppendMessage(b *testing.B) {
	msg := Message{Room: "general", Seq: 123456, User: "alice", Text: "hello there, how is everyone doing today?", TS: 1764430001234, Ref: "c-17"}
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendMessage(buf[:0], &msg)
	}
}

// TestMessageOverhead: MessageOverhead covers a message object's bytes beyond its strings at
// the longest seq and a 13-digit ts (until the year 2286).
func TestMessageOverhead(t *testing.T) {
	m := Message{Seq: math.MaxUint64, TS: 9_999_999_999_999, Room: "r", User: "u", Text: "t", Ref: "f"}
	if n := len(AppendMessage(nil, &m)) - 4; n > MessageOverhead {
		t.Errorf("a message object has %d bytes beyond its strings, MessageOverhead is %d", n, MessageOverhead)
	}
}

// TestAppendMessageAllocations: encoding a message into a buffer with room allocates nothing.
// Not parallel: AllocsPerRun counts every goroutine's allocations.
func TestAppendMessageAllocations(t *testing.T) {
	m := Message{Room: "general", Seq: 123456, User: "alice", Text: "hello there, how is everyone doing today?", TS: 1764430001234, Ref: "c-17"}
	buf := make([]byte, 0, MessageOverhead+len(m.Room)+len(m.User)+len(m.Text)+len(m.Ref))
	if n := testing.AllocsPerRun(100, func() { buf = AppendMessage(buf[:0], &m) }); n != 0 {
		t.Errorf("AppendMessage allocates %v times, want 0", n)
	}
	if cap(buf) != MessageOverhead+len(m.Room)+len(m.User)+len(m.Text)+len(m.Ref) {
		t.Errorf("the buffer grew to %d", cap(buf))
	}
}

// TestCodeListsAreComplete holds the hand-kept lists Codes and CloseCodes (the metrics make a
// series for each) to the constants the package declares, by name, in any of its files: a new
// code left out of its list, or listed twice, fails.
func TestCodeListsAreComplete(t *testing.T) {
	t.Parallel()
	names, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	declared := map[string][]string{} // type name: its constants
	listed := map[string][]string{}   // function name: the names in its list
	for _, name := range names {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(token.NewFileSet(), name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, decl := range file.Decls {
			switch d := decl.(type) {
			case *ast.GenDecl:
				if d.Tok != token.CONST {
					continue
				}
				for _, spec := range d.Specs {
					vs := spec.(*ast.ValueSpec)
					if typ, ok := vs.Type.(*ast.Ident); ok {
						for _, name := range vs.Names {
							declared[typ.Name] = append(declared[typ.Name], name.Name)
						}
					}
				}
			case *ast.FuncDecl:
				if d.Name.Name != "Codes" && d.Name.Name != "CloseCodes" {
					continue
				}
				ast.Inspect(d.Body, func(n ast.Node) bool {
					if lit, ok := n.(*ast.CompositeLit); ok {
						for _, elt := range lit.Elts {
							name := fmt.Sprintf("%T", elt) // not a constant's name: fails below
							if id, ok := elt.(*ast.Ident); ok {
								name = id.Name
							}
							listed[d.Name.Name] = append(listed[d.Name.Name], name)
						}
					}
					return true
				})
			}
		}
	}
	for fn, typ := range map[string]string{"Codes": "Code", "CloseCodes": "CloseCode"} {
		got, want := slices.Sorted(slices.Values(listed[fn])), slices.Sorted(slices.Values(declared[typ]))
		if len(want) == 0 || !slices.Equal(got, want) {
			t.Errorf("%s() lists %v; the package declares the %s constants %v", fn, got, typ, want)
		}
	}
	// The lists are the metrics' label values: two constants of one value would count
	// as one.
	if codes := Codes(); len(slices.Compact(slices.Sorted(slices.Values(codes)))) != len(listed["Codes"]) {
		t.Errorf("Codes answers %v: not %d distinct codes", codes, len(listed["Codes"]))
	}
	if codes := CloseCodes(); len(slices.Compact(slices.Sorted(slices.Values(codes)))) != len(listed["CloseCodes"]) {
		t.Errorf("CloseCodes answers %v: not %d distinct codes", codes, len(listed["CloseCodes"]))
	}
}
