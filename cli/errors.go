package cli

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/bus/driver"
)

// ExitError is an error that ends the command with a given exit code. Every
// error a command returns becomes one; Run prints it and returns Exit.
type ExitError struct {
	// Exit is the process exit code, one of the Exit constants.
	Exit int
	// Code is the Switchboard error code name ("Unavailable",
	// "InvalidArgument", …): the code a remote error carried, or the one
	// that fits a local failure.
	Code string
	// Message says what was wrong.
	Message string
	// Hint says what to try; it may be empty.
	Hint string
	// Details are the facts a remote error carried, such as "field" or
	// "offset".
	Details map[string]string
	// Err is the cause.
	Err error
	// remote says Code is what a Switchboard error carried, worth showing
	// in the text.
	remote bool
}

// Error returns the message, prefixed with the code when the error came
// from a service or the SDK ("NotFound: no such trip").
func (e *ExitError) Error() string {
	if e.remote {
		return e.Code + ": " + e.Message
	}
	return e.Message
}

// Unwrap returns the cause.
func (e *ExitError) Unwrap() error { return e.Err }

// usageErrorf is an ExitUsage error with a message and no hint.
func usageErrorf(format string, args ...any) *ExitError {
	return &ExitError{Exit: ExitUsage, Code: bus.InvalidArgument.String(), Message: fmt.Sprintf(format, args...)}
}

// withHint sets the hint of e and returns it.
func (e *ExitError) withHint(format string, args ...any) *ExitError {
	e.Hint = fmt.Sprintf(format, args...)
	return e
}

// asExitError classifies err. An error that is not an *ExitError comes from
// cobra before any command ran (an unknown command, say), so it is a usage
// error.
func asExitError(err error) *ExitError {
	var e *ExitError
	if errors.As(err, &e) {
		return e
	}
	return &ExitError{Exit: ExitUsage, Code: bus.InvalidArgument.String(), Message: err.Error(),
		Hint: "see 'switchboard --help' for the commands and flags", Err: err}
}

// failed classifies an error a command's Run returned: an *ExitError stays
// as it is, a Switchboard error (one with a code) keeps its code and gets a
// hint for it, and any other error is ExitFailed.
func failed(err error) error {
	if err == nil {
		return nil
	}
	var e *ExitError
	if errors.As(err, &e) {
		return e
	}
	if errors.Is(err, driver.ErrDisconnected) {
		return &ExitError{Exit: ExitUnavailable, Code: bus.Unavailable.String(), Message: trimPrefix(busMessage(err)), Err: err,
			Hint: "the connection to the bus was lost; check that the broker (or 'switchboard dev') is running"}
	}
	var be *bus.Error
	if errors.As(err, &be) {
		return &ExitError{Exit: ExitFailed, Code: be.Code.String(), Message: trimPrefix(be.Message),
			Details: be.Details, Hint: hintFor(be.Code), Err: err, remote: true}
	}
	code := bus.ErrorCode(err)
	return &ExitError{Exit: ExitFailed, Code: code.String(), Message: trimPrefix(err.Error()), Hint: hintFor(code), Err: err}
}

// hintFor is what to try after an error with code.
func hintFor(code bus.Code) string {
	switch code {
	case bus.Unavailable:
		return "run 'switchboard services' to see what is running"
	case bus.Unimplemented:
		return "run 'switchboard describe SERVICE' to see its endpoints"
	case bus.InvalidArgument:
		return "run 'switchboard describe SERVICE' to see the request schema"
	case bus.DeadlineExceeded:
		return "the service may be overloaded or stuck; retry with a longer --timeout"
	case bus.ResourceExhausted:
		return "the service is at its limit; retry later"
	case bus.Canceled:
		return "the command was interrupted"
	}
	return ""
}

// errorJSON is how an error is printed with -o json.
type errorJSON struct {
	Error struct {
		Code     string            `json:"code"`
		Message  string            `json:"message"`
		Hint     string            `json:"hint,omitempty"`
		Details  map[string]string `json:"details,omitempty"`
		ExitCode int               `json:"exit_code"`
	} `json:"error"`
}

// printError writes e to stderr: two lines of text, or one JSON object with
// -o json.
func (g *GlobalOptions) printError(e *ExitError) {
	w := g.IO.ErrOut
	if g.JSON() {
		var j errorJSON
		j.Error.Code, j.Error.Message, j.Error.Hint, j.Error.Details, j.Error.ExitCode = e.Code, e.Message, e.Hint, e.Details, e.Exit
		b, _ := json.Marshal(j)
		fmt.Fprintf(w, "%s\n", b)
		return
	}
	fmt.Fprintf(w, "switchboard: %s\n", e.Error())
	if e.Hint != "" {
		fmt.Fprintf(w, "hint: %s\n", e.Hint)
	}
}
