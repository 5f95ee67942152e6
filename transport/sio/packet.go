// Package sio is the wire format of Socket.IO v5 over Engine.IO v4 on a WebSocket: each
// WebSocket text frame is one Engine.IO packet, and an Engine.IO message packet carries one
// Socket.IO packet. It only encodes and decodes; transport maps the events onto the hub.
package sio

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// Engine.IO v4 packet types, the first byte of a frame.
const (
	EIOOpen    = '0'
	EIOClose   = '1'
	EIOPing    = '2'
	EIOPong    = '3'
	EIOMessage = '4'
	EIOUpgrade = '5'
	EIONoop    = '6'
)

// Socket.IO v5 packet types.
const (
	Connect      = 0
	Disconnect   = 1
	Event        = 2
	Ack          = 3
	ConnectError = 4
	BinaryEvent  = 5
	BinaryAck    = 6
)

// Packet is one Socket.IO packet.
type Packet struct {
	Type      int
	Namespace string // "/" when absent
	// AckID is the acknowledgement id, or -1 when the packet asks for none.
	AckID int64
	// Data is the JSON payload, or nil.
	Data json.RawMessage
}

// Errors of the decoder.
var (
	ErrEmpty      = errors.New("empty packet")
	ErrBinary     = errors.New("binary packets are not supported; send JSON")
	ErrEngineType = errors.New("unknown Engine.IO packet type")
)

// maxAckID keeps ack ids within what JavaScript numbers hold exactly.
const maxAckID = 1<<53 - 1

// ParseEngine splits an Engine.IO text frame into its type and payload.
func ParseEngine(frame []byte) (byte, []byte, error) {
	if len(frame) == 0 {
		return 0, nil, ErrEmpty
	}
	t := frame[0]
	if t < EIOOpen || t > EIONoop {
		return 0, nil, ErrEngineType
	}
	return t, frame[1:], nil
}

// Parse decodes a Socket.IO packet (the payload of an Engine.IO message packet).
func Parse(b []byte) (Packet, error) {
	p := Packet{Namespace: "/", AckID: -1}
	if len(b) == 0 {
		return p, ErrEmpty
	}
	if b[0] < '0' || b[0] > '6' {
		return p, fmt.Errorf("unknown Socket.IO packet type %q", b[0])
	}
	p.Type = int(b[0] - '0')
	b = b[1:]
	if p.Type == BinaryEvent || p.Type == BinaryAck {
		return p, ErrBinary
	}
	if len(b) > 0 && b[0] == '/' {
		end := bytes.IndexByte(b, ',')
		if end < 0 {
			p.Namespace, b = string(b), nil
		} else {
			p.Namespace, b = string(b[:end]), b[end+1:]
		}
	}
	digits := 0
	for digits < len(b) && b[digits] >= '0' && b[digits] <= '9' {
		digits++
	}
	if digits > 0 {
		id, err := strconv.ParseInt(string(b[:digits]), 10, 64)
		if err != nil || id > maxAckID {
			return p, errors.New("acknowledgement id out of range")
		}
		p.AckID, b = id, b[digits:]
	}
	if len(b) > 0 {
		if !json.Valid(b) {
			return p, errors.New("payload is not JSON")
		}
		p.Data = json.RawMessage(b)
	}
	switch p.Type {
	case Event:
		if len(p.Data) == 0 || p.Data[0] != '[' {
			return p, errors.New("an event's payload must be an array")
		}
	case Ack:
		if p.AckID < 0 || len(p.Data) == 0 || p.Data[0] != '[' {
			return p, errors.New("an ack needs an id and an array")
		}
	case Connect:
		if len(p.Data) > 0 && p.Data[0] != '{' {
			return p, errors.New("a connect's payload must be an object")
		}
	}
	return p, nil
}

// EventArgs splits an event's payload into its name and arguments.
func EventArgs(data json.RawMessage) (string, []json.RawMessage, error) {
	var parts []json.RawMessage
	if err := json.Unmarshal(data, &parts); err != nil {
		return "", nil, fmt.Errorf("event payload: %w", err)
	}
	if len(parts) == 0 {
		return "", nil, errors.New("an event needs a name")
	}
	var name string
	if err := json.Unmarshal(parts[0], &name); err != nil {
		return "", nil, errors.New("an event's name must be a string")
	}
	return name, parts[1:], nil
}

// AppendEvent appends the Engine.IO message frame of an event on the default namespace:
// 42["name",args...].
func AppendEvent(dst []byte, name string, args ...[]byte) []byte {
	dst = append(dst, EIOMessage, '0'+Event, '[')
	dst = strconv.AppendQuote(dst, name) // event names are ASCII words: Go and JSON quote alike
	for _, a := range args {
		dst = append(dst, ',')
		dst = append(dst, a...)
	}
	return append(dst, ']')
}

// AppendAck appends the Engine.IO message frame of an acknowledgement: 43<id>[args...].
func AppendAck(dst []byte, id int64, args ...[]byte) []byte {
	dst = append(dst, EIOMessage, '0'+Ack)
	dst = strconv.AppendInt(dst, id, 10)
	dst = append(dst, '[')
	for i, a := range args {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, a...)
	}
	return append(dst, ']')
}

// AppendConnect appends the server's answer to a CONNECT on namespace: 40{"sid":"..."}.
func AppendConnect(dst []byte, namespace, sid string) []byte {
	dst = append(dst, EIOMessage, '0'+Connect)
	dst = appendNamespace(dst, namespace)
	dst = append(dst, `{"sid":`...)
	dst = strconv.AppendQuote(dst, sid)
	return append(dst, '}')
}

// AppendConnectError appends a CONNECT_ERROR on namespace with a message.
func AppendConnectError(dst []byte, namespace, message string) []byte {
	dst = append(dst, EIOMessage, '0'+ConnectError)
	dst = appendNamespace(dst, namespace)
	msg, _ := json.Marshal(struct {
		Message string `json:"message"`
	}{message})
	return append(dst, msg...)
}

func appendNamespace(dst []byte, ns string) []byte {
	if ns == "" || ns == "/" {
		return dst
	}
	dst = append(dst, ns...)
	return append(dst, ',')
}

// Open is the payload of the Engine.IO open packet.
type Open struct {
	SID          string   `json:"sid"`
	Upgrades     []string `json:"upgrades"`
	PingInterval int64    `json:"pingInterval"`
	PingTimeout  int64    `json:"pingTimeout"`
	MaxPayload   int64    `json:"maxPayload"`
}

// AppendOpen appends the Engine.IO open frame.
func AppendOpen(dst []byte, o Open) []byte {
	if o.Upgrades == nil {
		o.Upgrades = []string{}
	}
	b, _ := json.Marshal(o)
	dst = append(dst, EIOOpen)
	return append(dst, b...)
}

// HandshakeError is the JSON body of an HTTP error that Engine.IO clients understand.
type HandshakeError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

// The handshake errors of Engine.IO.
var (
	ErrTransportUnknown   = HandshakeError{0, "Transport unknown"}
	ErrUnknownSID         = HandshakeError{1, "Session ID unknown"}
	ErrBadRequest         = HandshakeError{3, "Bad request"}
	ErrUnsupportedVersion = HandshakeError{5, "Unsupported protocol version"}
)
