package sio

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in    string
		typ   int
		ns    string
		ack   int64
		data  string
		isErr bool
	}{
		{in: "0", typ: Connect, ns: "/", ack: -1},
		{in: `0{"token":"abc"}`, typ: Connect, ns: "/", ack: -1, data: `{"token":"abc"}`},
		{in: `0/admin,{"token":"x"}`, typ: Connect, ns: "/admin", ack: -1, data: `{"token":"x"}`},
		{in: "0/admin", typ: Connect, ns: "/admin", ack: -1},
		{in: "1", typ: Disconnect, ns: "/", ack: -1},
		{in: `2["join",{"username":"bob","room":"r"}]`, typ: Event, ns: "/", ack: -1, data: `["join",{"username":"bob","room":"r"}]`},
		{in: `212["message","hi"]`, typ: Event, ns: "/", ack: 12, data: `["message","hi"]`},
		{in: `2/chat,7["x"]`, typ: Event, ns: "/chat", ack: 7, data: `["x"]`},
		{in: `35[{"ok":true}]`, typ: Ack, ns: "/", ack: 5, data: `[{"ok":true}]`},
		{in: "", isErr: true},
		{in: "9", isErr: true},
		{in: `51-["x",{"_placeholder":true,"num":0}]`, isErr: true},
		{in: `61-0[]`, isErr: true},
		{in: `2{"not":"an array"}`, isErr: true},
		{in: `2`, isErr: true},
		{in: `2["unterminated"`, isErr: true},
		{in: `3[1]`, isErr: true},
		{in: `0"str"`, isErr: true},
		{in: `299999999999999999999["x"]`, isErr: true},
	}
	for _, tc := range cases {
		p, err := Parse([]byte(tc.in))
		if tc.isErr {
			if err == nil {
				t.Errorf("Parse(%q) = %+v, want an error", tc.in, p)
			}
			continue
		}
		if err != nil || p.Type != tc.typ || p.Namespace != tc.ns || p.AckID != tc.ack || string(p.Data) != tc.data {
			t.Errorf("Parse(%q) = %+v, %v", tc.in, p, err)
		}
	}
	if _, err := Parse([]byte(`51-["x"]`)); !errors.Is(err, ErrBinary) {
		t.Fatalf("binary packet: %v, want ErrBinary", err)
	}
}

func TestEventArgs(t *testing.T) {
	t.Parallel()
	name, args, err := EventArgs(json.RawMessage(`["join",{"room":"r"},true]`))
	if err != nil || name != "join" || len(args) != 2 || string(args[1]) != "true" {
		t.Fatalf("EventArgs = %q %s %v", name, args, err)
	}
	for _, bad := range []string{`[]`, `[1]`, `{}`} {
		if _, _, err := EventArgs(json.RawMessage(bad)); err == nil {
			t.Errorf("EventArgs(%s) accepted", bad)
		}
	}
}

func TestEncode(t *testing.T) {
	t.Parallel()
	cases := []struct{ got, want string }{
		{string(AppendEvent(nil, "message", []byte(`{"room":"r"}`))), `42["message",{"room":"r"}]`},
		{string(AppendEvent(nil, "ping")), `42["ping"]`},
		{string(AppendAck(nil, 12, []byte(`{"ok":true,"seq":3}`))), `4312[{"ok":true,"seq":3}]`},
		{string(AppendConnect(nil, "/", "abc")), `40{"sid":"abc"}`},
		{string(AppendConnectError(nil, "/admin", `no "such" namespace`)), `44/admin,{"message":"no \"such\" namespace"}`},
		{string(AppendOpen(nil, Open{SID: "s", PingInterval: 25000, PingTimeout: 20000, MaxPayload: 16384})), `0{"sid":"s","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":16384}`},
	}
	for _, tc := range cases {
		if tc.got != tc.want {
			t.Errorf("got %s, want %s", tc.got, tc.want)
		}
	}
	// What the encoder makes, the decoder reads back.
	frame := AppendAck(nil, 42, []byte(`"a"`), []byte(`2`))
	typ, payload, err := ParseEngine(frame)
	if err != nil || typ != EIOMessage {
		t.Fatal(err)
	}
	p, err := Parse(payload)
	if err != nil || p.Type != Ack || p.AckID != 42 || string(p.Data) != `["a",2]` {
		t.Fatalf("round trip: %+v %v", p, err)
	}
}

// FuzzParse: the decoder never panics, and what it accepts is well formed.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"0", `0{"token":"t"}`, `212["message","hi"]`, `2/x,3["a"]`, `35[1]`, `51-["x"]`, "1", `4{}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Parse(b)
		if err != nil {
			return
		}
		if p.Type < Connect || p.Type > ConnectError {
			t.Fatalf("type %d accepted", p.Type)
		}
		if p.Data != nil && !json.Valid(p.Data) {
			t.Fatalf("invalid JSON accepted: %q", p.Data)
		}
		if !strings.HasPrefix(p.Namespace, "/") {
			t.Fatalf("namespace %q", p.Namespace)
		}
		if p.Type == Event && (len(p.Data) == 0 || p.Data[0] != '[') {
			t.Fatalf("event payload %q is not an array", p.Data)
		}
		if p.Type == Event {
			_, _, _ = EventArgs(p.Data) // must not panic on whatever Parse let through
		}
	})
}
