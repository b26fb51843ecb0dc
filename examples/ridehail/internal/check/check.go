// Package check builds the errors the example services return: for bad
// input, InvalidArgument errors that name the field at fault in their
// message and in the "field" detail, so callers and tools can point at it;
// for a failed downstream call, the callee's error relayed with its code.
package check

import (
	"errors"
	"fmt"
	"maps"

	"github.com/switchboard-dev/switchboard"
)

// Invalid returns an InvalidArgument error about field. The message starts
// with the field name.
func Invalid(field, format string, args ...any) *switchboard.Error {
	return switchboard.Errorf(switchboard.InvalidArgument, "%s: %s", field, sprintf(format, args...)).WithDetail("field", field)
}

// Required returns an InvalidArgument error if value is empty.
func Required(field, value string) error {
	if value == "" {
		return Invalid(field, "required")
	}
	return nil
}

// First returns the first non-nil error, so handlers can list their checks
// in the order fields appear.
func First(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// Relay returns err, the error of a call to another service, prefixed with
// op and keeping the callee's code and details, so that a caller several
// hops away still sees NotFound or InvalidArgument rather than Internal.
func Relay(op string, err error) error {
	var e *switchboard.Error
	if errors.As(err, &e) {
		return &switchboard.Error{Code: e.Code, Message: op + ": " + e.Message, Details: maps.Clone(e.Details), Err: err}
	}
	return fmt.Errorf("%s: %w", op, err)
}

func sprintf(format string, args ...any) string {
	if len(args) == 0 {
		return format
	}
	return fmt.Sprintf(format, args...)
}
