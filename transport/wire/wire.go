// Package wire is the shardchat protocol, version 1: the object types, error codes and close
// codes of PROTOCOL.md, the decoder of client frames and the encoders of server objects.
//
// It is the one place that knows the JSON shape of the protocol: the server and the bench
// client both import it, so they cannot drift apart.
package wire

import "fmt"

// Proto is the protocol version announced in welcome.
const Proto = 1

// Object types, client to server and server to client.
const (
	TypeJoin     = "join"
	TypeLeave    = "leave"
	TypeMessage  = "message"
	TypeTyping   = "typing"
	TypeUsers    = "users"
	TypeHistory  = "history"
	TypePing     = "ping"
	TypeWelcome  = "welcome"
	TypeJoined   = "joined"
	TypeLeft     = "left"
	TypePresence = "presence"
	TypePong     = "pong"
	TypeError    = "error"
)

// Protocol limits that are not configurable: they are part of the contract.
const (
	MaxRef          = 64    // bytes in a ref
	MaxRoom         = 64    // bytes in a room name
	MaxUser         = 32    // characters in a user name
	MaxText         = 4000  // bytes in a message text
	MaxFrame        = 16384 // bytes in a client frame; more closes with 1009
	MaxHistoryLimit = 100   // largest history limit
	DefHistoryLimit = 50    // history limit when none is given, and history in joined
)

// Code is an error code carried by an error object.
type Code string

// The error codes of PROTOCOL.md.
const (
	CodeBadRequest   Code = "bad_request"
	CodeUnknownType  Code = "unknown_type"
	CodeInvalidRoom  Code = "invalid_room"
	CodeInvalidUser  Code = "invalid_user"
	CodeInvalidText  Code = "invalid_text"
	CodeNameTaken    Code = "name_taken"
	CodeNotJoined    Code = "not_joined"
	CodeRoomLimit    Code = "room_limit"
	CodeRateLimited  Code = "rate_limited"
	CodeUnavailable  Code = "unavailable"
	CodeUnauthorized Code = "unauthorized"
)

// Codes lists every error code, for tests and for pre-creating metric series.
func Codes() []Code {
	return []Code{
		CodeBadRequest, CodeUnknownType, CodeInvalidRoom, CodeInvalidUser, CodeInvalidText,
		CodeNameTaken, CodeNotJoined, CodeRoomLimit, CodeRateLimited, CodeUnavailable, CodeUnauthorized,
	}
}

// Error is a refused request: a wire code and a human-readable message.
type Error struct {
	Code    Code
	Message string
}

// Errorf returns an Error with code and a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Error returns "code: message".
func (e *Error) Error() string { return string(e.Code) + ": " + e.Message }

// CloseCode is a WebSocket close code the server uses.
type CloseCode int

// The close codes of PROTOCOL.md.
const (
	CloseNormal       CloseCode = 1000
	ClosePolicy       CloseCode = 1008 // repeated protocol abuse
	CloseTooBig       CloseCode = 1009 // a frame over MaxFrame
	CloseInternal     CloseCode = 1011
	CloseRestart      CloseCode = 1012 // graceful shutdown
	CloseTokenExpired CloseCode = 4003
	CloseSlowConsumer CloseCode = 4008
)

// CloseCodes lists every close code, for tests and for pre-creating metric series.
func CloseCodes() []CloseCode {
	return []CloseCode{CloseNormal, ClosePolicy, CloseTooBig, CloseInternal, CloseRestart, CloseTokenExpired, CloseSlowConsumer}
}

// Limits are the per-connection limits announced in welcome.
type Limits struct {
	Text  int     `json:"text"`
	Rooms int     `json:"rooms"`
	Rate  float64 `json:"rate"`
	Burst int     `json:"burst"`
}

// Since is a recovery position: the epoch of a room and the last seq the client saw in it.
type Since struct {
	Epoch string `json:"epoch"`
	Seq   uint64 `json:"seq"`
}
