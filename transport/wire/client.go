package wire

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// Event is one server object as a client decodes it. Which fields are set depends on Type.
type Event struct {
	Type string `json:"type"`
	Ref  string `json:"ref,omitempty"`
	Room string `json:"room,omitempty"`
	User string `json:"user,omitempty"`

	// message
	Seq  uint64 `json:"seq,omitempty"`
	Text string `json:"text,omitempty"`
	TS   int64  `json:"ts,omitempty"`

	// welcome
	ProtoVersion int     `json:"proto,omitempty"`
	Node         string  `json:"node,omitempty"`
	Limits       *Limits `json:"limits,omitempty"`

	// joined (also Seq), users
	Epoch     string   `json:"epoch,omitempty"`
	Recovered bool     `json:"recovered,omitempty"`
	Users     []string `json:"users,omitempty"`
	History   []Event  `json:"history,omitempty"`

	// history
	Messages []Event `json:"messages,omitempty"`

	// presence, typing
	Event string `json:"event,omitempty"`
	On    bool   `json:"on,omitempty"`

	// error
	Code    Code   `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
}

// DecodeFrame splits a server frame on '\n' and decodes each object, appending to dst.
func DecodeFrame(dst []Event, frame []byte) ([]Event, error) {
	for line := range bytes.SplitSeq(frame, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var ev Event
		if err := json.Unmarshal(line, &ev); err != nil {
			return dst, fmt.Errorf("decode server object %.80q: %w", line, err)
		}
		dst = append(dst, ev)
	}
	return dst, nil
}

// ClientRequest is a client object as a client encodes it: for tests and the bench, and for
// the Socket.IO layer, which builds one from an event and checks it with Validate.
type ClientRequest struct {
	Type   string `json:"type"`
	Ref    string `json:"ref,omitempty"`
	Room   string `json:"room,omitempty"`
	User   string `json:"user,omitempty"`
	Text   string `json:"text,omitempty"`
	On     *bool  `json:"on,omitempty"`
	Since  *Since `json:"since,omitempty"`
	Before uint64 `json:"before,omitempty"`
	Limit  int    `json:"limit,omitempty"`
}
