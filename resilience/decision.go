package resilience

import (
	"errors"
	"maps"
	"strconv"
	"time"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/bus"
)

// Detail keys that protections set on the errors they return, next to
// "retry_after" (a Go duration such as "250ms", read by bus.RetryAfter).
const (
	// DetailRetry says why Retry stopped retrying: "budget exhausted",
	// "deadline", "attempts exhausted", "not idempotent" or "canceled".
	DetailRetry = "retry"
	// DetailAttempts is how many attempts Retry made.
	DetailAttempts = "attempts"
	// DetailBreaker is the state of the breaker that refused the call:
	// "open" or "half-open".
	DetailBreaker = "breaker"
	// DetailRateLimit names the rate limit's key, e.g. "greeter.hello" or
	// the caller's name.
	DetailRateLimit = "rate_limit"
	// DetailLimit is the limit that was reached: "100/s" for a rate limit,
	// a number of concurrent calls for Shed.
	DetailLimit = "limit"
	// DetailShed says why Shed refused the call: "concurrency".
	DetailShed = "shed"
	// DetailInFlight is how many calls were in flight when Shed refused one.
	DetailInFlight = "in_flight"
	// DetailRetryAfter is bus's hint key, repeated here for completeness.
	DetailRetryAfter = "retry_after"
	// DetailUnprocessed names the endpoint ("service.endpoint") that refused
	// the call before its handler ran (Shed, a server RateLimit), so the call
	// is safe to retry whatever the endpoint, as gRPC retries a refused
	// stream. Retry trusts it only when it names the endpoint called: a
	// handler that relays a downstream's error relays its details too.
	DetailUnprocessed = "unprocessed"
)

// Decision is one decision a protection made about a call. Each protection
// passes its decisions to its Observe hook, if set, so that metrics and logs
// can count them; Reason is one short fixed word fit for a metrics label.
// Observe is called synchronously on the call's path: keep it fast.
type Decision struct {
	// Protection is "retry", "breaker", "ratelimit" or "shed".
	Protection string
	// Action is what was done: "retry" (another attempt follows), "give_up"
	// (Retry returns the last error) or "reject" (the call was refused).
	Action string
	// Reason says why, e.g. "unavailable", "budget_exhausted", "deadline",
	// "attempts", "not_idempotent", "open", "half_open", "rate", "concurrency".
	Reason string
	// Service, Endpoint and Instance name the call's target (Instance only
	// for point-to-point calls).
	Service, Endpoint, Instance string
	// Caller is the calling service, as the envelope names it.
	Caller string
	// Wait is the backoff before the next attempt ("retry") or the hint
	// given to the caller ("reject"), when there is one.
	Wait time.Duration
	// Err is the error that led to the decision, or the one returned.
	Err error
}

func decision(protection, action, reason string, call *switchboard.Call, wait time.Duration, err error) Decision {
	return Decision{Protection: protection, Action: action, Reason: reason,
		Service: call.Service, Endpoint: call.Endpoint, Instance: call.Envelope.Instance,
		Caller: call.Envelope.Caller, Wait: wait, Err: err}
}

// errNotSent marks rejections a client-side protection made before the call
// left the process: they say nothing about the target's health (Breaker
// ignores them) and are always safe to retry (Retry retries them whatever
// the endpoint).
var errNotSent = errors.New("resilience: the call was not sent")

// notSent reports whether err is a client-side rejection.
func notSent(err error) bool { return errors.Is(err, errNotSent) }

// formatWait renders d as a retry_after value: rounded up to the
// millisecond, at least 1ms, so the hint never reads as "retry now".
func formatWait(d time.Duration) string {
	return roundWait(d).String()
}

func roundWait(d time.Duration) time.Duration {
	if d < time.Millisecond {
		return time.Millisecond
	}
	return (d + time.Millisecond - 1).Truncate(time.Millisecond)
}

// annotate returns a new *bus.Error that wraps err, keeps its code and
// details, appends note to its message and adds details.
func annotate(err error, note string, kv ...string) *bus.Error {
	out := &bus.Error{Code: bus.ErrorCode(err), Err: err}
	var be *bus.Error
	if errors.As(err, &be) {
		out.Message = be.Message
		out.Details = maps.Clone(be.Details)
	} else {
		out.Message = err.Error()
	}
	if out.Code == bus.OK {
		out.Code = bus.Unknown
	}
	out.Message += " (" + note + ")"
	for i := 0; i+1 < len(kv); i += 2 {
		out = out.WithDetail(kv[i], kv[i+1])
	}
	return out
}

func itoa[T ~int | ~int64](n T) string { return strconv.FormatInt(int64(n), 10) }

// target names a call's target for messages: "greeter.hello", with the
// instance for point-to-point calls.
func target(call *switchboard.Call) string {
	s := call.Service + "." + call.Endpoint
	if call.Envelope.Instance != "" {
		s += " (instance " + call.Envelope.Instance + ")"
	}
	return s
}
