package bus

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/switchboard-dev/switchboard/bus/driver"
)

// Code classifies an error. The set is small and fixed, modelled on gRPC
// status codes, and is what crosses the wire: callers branch on it with
// ErrorCode.
type Code uint8

// The error codes. OK is the zero value and means no error.
const (
	OK Code = iota
	Canceled
	Unknown
	InvalidArgument
	DeadlineExceeded
	NotFound
	AlreadyExists
	PermissionDenied
	ResourceExhausted
	FailedPrecondition
	Aborted
	OutOfRange
	Unimplemented
	Internal
	Unavailable
	DataLoss
	Unauthenticated
)

var codeNames = [...]string{
	OK: "OK", Canceled: "Canceled", Unknown: "Unknown", InvalidArgument: "InvalidArgument",
	DeadlineExceeded: "DeadlineExceeded", NotFound: "NotFound", AlreadyExists: "AlreadyExists",
	PermissionDenied: "PermissionDenied", ResourceExhausted: "ResourceExhausted",
	FailedPrecondition: "FailedPrecondition", Aborted: "Aborted", OutOfRange: "OutOfRange",
	Unimplemented: "Unimplemented", Internal: "Internal", Unavailable: "Unavailable",
	DataLoss: "DataLoss", Unauthenticated: "Unauthenticated",
}

// String returns the code's name as written on the wire, e.g. "NotFound".
func (c Code) String() string {
	if int(c) < len(codeNames) {
		return codeNames[c]
	}
	return fmt.Sprintf("Code(%d)", c)
}

// ParseCode returns the code named s (as produced by Code.String, case
// insensitive). Unrecognised names yield Unknown and false.
func ParseCode(s string) (Code, bool) {
	for i, n := range codeNames {
		if strings.EqualFold(n, s) {
			return Code(i), true
		}
	}
	return Unknown, false
}

// Error is the one error type that carries a Code. It crosses the wire
// between services (see package wire) and is what every Switchboard call
// returns on failure, so callers use errors.As or ErrorCode on it.
type Error struct {
	Code    Code
	Message string
	// Details are optional key/value facts a caller may act on, such as
	// "retry_after" or "field".
	Details map[string]string
	// Err is the underlying cause, if any. It is not sent on the wire.
	Err error
}

// Errorf returns an *Error with the given code and formatted message.
// A %w verb in format is honoured: the wrapped error becomes the cause.
func Errorf(code Code, format string, args ...any) *Error {
	e := fmt.Errorf(format, args...)
	return &Error{Code: code, Message: e.Error(), Err: errors.Unwrap(e)}
}

func (e *Error) Error() string {
	return e.Code.String() + ": " + e.Message
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Is reports whether target is an *Error with the same code and no message,
// so errors.Is(err, &bus.Error{Code: bus.NotFound}) works.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Message == "" && t.Code == e.Code
}

// WithDetail returns e after setting a detail key.
func (e *Error) WithDetail(key, value string) *Error {
	if e.Details == nil {
		e.Details = map[string]string{}
	}
	e.Details[key] = value
	return e
}

// ErrorCode returns the code of err: OK for nil, the Code of the first *Error
// in its chain, DeadlineExceeded or Canceled for context errors, and Unknown
// otherwise.
func ErrorCode(err error) Code {
	if err == nil {
		return OK
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	switch {
	case errors.Is(err, contextDeadline):
		return DeadlineExceeded
	case errors.Is(err, contextCanceled):
		return Canceled
	}
	return Unknown
}

// RetryAfter returns the "retry_after" hint of err, if it carries one.
func RetryAfter(err error) (time.Duration, bool) {
	var e *Error
	if !errors.As(err, &e) || e.Details == nil {
		return 0, false
	}
	d, perr := time.ParseDuration(e.Details["retry_after"])
	return d, perr == nil
}

// Sentinel errors of package bus, each an *Error with a code.
var (
	// ErrClosed is returned by calls on a closed Conn or Subscription.
	ErrClosed = &Error{Code: Unavailable, Message: "bus: connection closed"}
)

// wrapDriver classifies a driver error into an *Error exactly once.
func wrapDriver(op, subject string, err error) error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	code := Unavailable
	switch {
	case errors.Is(err, driver.ErrNoResponders):
		code = Unavailable
	case errors.Is(err, driver.ErrTimeout), errors.Is(err, contextDeadline):
		code = DeadlineExceeded
	case errors.Is(err, driver.ErrCanceled), errors.Is(err, contextCanceled):
		code = Canceled
	case errors.Is(err, driver.ErrTooLarge), errors.Is(err, driver.ErrInvalid):
		code = InvalidArgument
	case errors.Is(err, driver.ErrClosed), errors.Is(err, driver.ErrDisconnected):
		code = Unavailable
	}
	return &Error{Code: code, Message: fmt.Sprintf("bus: %s %q: %v", op, subject, err), Err: err}
}

// IsNoResponders reports whether err says nothing was serving a request's
// subject (as opposed to a slow or failed responder).
func IsNoResponders(err error) bool { return errors.Is(err, driver.ErrNoResponders) }
