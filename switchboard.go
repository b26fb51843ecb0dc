// Package switchboard is the SDK for writing services that talk over a
// message bus: typed RPC endpoints, durable events, discovery and graceful
// shutdown, with middleware hooks where metrics, tracing and resilience plug
// in.
//
// A contract value is shared by server and client, so both sides are
// type-checked without code generation:
//
//	var Hello = switchboard.Endpoint[*HelloRequest, *HelloReply]("greeter", "hello")
//
//	// server
//	svc := switchboard.NewService("greeter", "1.0.0")
//	Hello.Handle(svc, func(ctx context.Context, req *HelloRequest) (*HelloReply, error) { ... })
//
//	// client
//	reply, err := Hello.Call(ctx, client, &HelloRequest{Name: "Ada"})
//
// Bodies are protobuf for proto.Message types and JSON otherwise, and every
// endpoint can be called with JSON. Errors carry a code (see package bus):
// branch on them with ErrorCode. The protocol is in docs/protocol.md.
//
// The SDK sits on package wire (the protocol) and package bus (the portable
// messaging API); it imports no broker client.
package switchboard

import (
	"github.com/switchboard-dev/switchboard/bus"
)

// Error is the error type that carries a code across the wire.
type Error = bus.Error

// Code classifies an error; see the constants re-exported below.
type Code = bus.Code

// The error codes, re-exported from package bus for convenience.
const (
	OK                 = bus.OK
	Canceled           = bus.Canceled
	Unknown            = bus.Unknown
	InvalidArgument    = bus.InvalidArgument
	DeadlineExceeded   = bus.DeadlineExceeded
	NotFound           = bus.NotFound
	AlreadyExists      = bus.AlreadyExists
	PermissionDenied   = bus.PermissionDenied
	ResourceExhausted  = bus.ResourceExhausted
	FailedPrecondition = bus.FailedPrecondition
	Aborted            = bus.Aborted
	Unimplemented      = bus.Unimplemented
	Internal           = bus.Internal
	Unavailable        = bus.Unavailable
	Unauthenticated    = bus.Unauthenticated
)

// Errorf returns an *Error with code and a formatted message. Handlers return
// it to give callers a specific code; any other error reaches them as
// Internal.
func Errorf(code Code, format string, args ...any) *Error { return bus.Errorf(code, format, args...) }

// ErrorCode returns the code of err (OK for nil).
func ErrorCode(err error) Code { return bus.ErrorCode(err) }
