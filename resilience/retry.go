package resilience

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/bus"
)

// Retry is client middleware that retries a failed call when that is safe
// and useful:
//
//   - Unavailable is always retried: the call did not reach a handler or the
//     instance is going away, so another attempt may find a healthy one.
//   - DeadlineExceeded, ResourceExhausted and Aborted are retried only for
//     endpoints declared idempotent (Idempotent, IsIdempotent): the handler
//     may have run.
//   - A call refused inside this client by a protection (a Breaker or a
//     client RateLimit below Retry) was never sent, and a call the server
//     refused before running its handler (detail "unprocessed" naming the
//     endpoint called, set by Shed and server RateLimits) was never
//     processed: both are retried whatever the endpoint.
//   - Nothing else is retried: InvalidArgument, NotFound and the like would
//     fail again.
//
// The wait before attempt n+1 is drawn uniformly from [0, min(MaxDelay,
// BaseDelay×2ⁿ⁻¹)) ("full jitter"), unless the error carries a Retry-After
// hint (bus.RetryAfter), which is then waited instead. Retry never waits past
// the caller's deadline and does not start an attempt with less than
// MinAttemptTime left. Each retry takes a token from Budget; when the budget
// is exhausted the call fails with its last error.
//
// When Retry gives up on a retryable error it returns a *bus.Error that wraps
// the last error, keeps its code and details, and says why in its message
// and in the details "retry" ("budget exhausted", "deadline", "attempts
// exhausted", "canceled") and "attempts".
//
// The zero value is a safe default. Retry is configuration: Middleware
// copies it, so change it before calling Middleware.
type Retry struct {
	// MaxAttempts bounds the attempts of one call, the first included
	// (default 3).
	MaxAttempts int
	// BaseDelay and MaxDelay shape the backoff (defaults 50ms and 1s).
	BaseDelay, MaxDelay time.Duration
	// MinAttemptTime is the least time before the caller's deadline worth
	// starting an attempt with (default 10ms).
	MinAttemptTime time.Duration
	// AttemptTimeout, if set, bounds each attempt (and the deadline the
	// server sees), so a hung attempt of an idempotent call leaves time for
	// another. Zero lets every attempt use all the time left.
	AttemptTimeout time.Duration
	// Idempotent lists the endpoints that are safe to call twice, as
	// "service.endpoint" or "service.*".
	Idempotent []string
	// IsIdempotent, if set, is asked about calls Idempotent does not list.
	IsIdempotent func(call *switchboard.Call) bool
	// Budget limits retries across calls (default: a new Budget with its
	// defaults for each Middleware).
	Budget *Budget
	// Observe, if set, receives every retry and every give-up.
	Observe func(Decision)
}

const (
	retryBudget   = "budget exhausted"
	retryDeadline = "deadline"
	retryAttempts = "attempts exhausted"
	retryNotIdem  = "not idempotent"
	retryCanceled = "canceled"
)

func (r Retry) normalize() Retry {
	if r.MaxAttempts <= 0 {
		r.MaxAttempts = 3
	}
	if r.BaseDelay <= 0 {
		r.BaseDelay = 50 * time.Millisecond
	}
	if r.MaxDelay <= 0 {
		r.MaxDelay = time.Second
	}
	r.MaxDelay = max(r.MaxDelay, r.BaseDelay)
	if r.MinAttemptTime <= 0 {
		r.MinAttemptTime = 10 * time.Millisecond
	}
	if r.Budget == nil {
		r.Budget = &Budget{}
	}
	return r
}

// backoff returns the full-jitter wait before attempt n+1 (n ≥ 1 attempts
// made), given u uniform in [0, 1).
func (r Retry) backoff(n int, u float64) time.Duration {
	ceiling := r.MaxDelay
	if n-1 < 32 {
		if d := r.BaseDelay << (n - 1); d > 0 && d < ceiling {
			ceiling = d
		}
	}
	return time.Duration(u * float64(ceiling))
}

func (r Retry) idempotent(call *switchboard.Call) bool {
	for _, p := range r.Idempotent {
		if svc, ep, ok := strings.Cut(p, "."); ok && svc == call.Service && (ep == "*" || ep == call.Endpoint) {
			return true
		}
	}
	return r.IsIdempotent != nil && r.IsIdempotent(call)
}

// classify says whether err may be retried; if not, why (empty when the
// code is never retried).
func (r Retry) classify(call *switchboard.Call, err error) (ok bool, why string) {
	if notSent(err) || unprocessed(call, err) {
		return true, ""
	}
	switch bus.ErrorCode(err) {
	case bus.Unavailable:
		return true, ""
	case bus.DeadlineExceeded, bus.ResourceExhausted, bus.Aborted:
		if r.idempotent(call) {
			return true, ""
		}
		return false, retryNotIdem
	}
	return false, ""
}

// Middleware returns the client middleware.
func (r Retry) Middleware() switchboard.ClientMiddleware {
	r = r.normalize()
	return func(next switchboard.Invoker) switchboard.Invoker {
		return func(ctx context.Context, call *switchboard.Call, reply any) error {
			r.Budget.call()
			deadline, hasDeadline := ctx.Deadline()
			for attempt := 1; ; attempt++ {
				err := r.attempt(ctx, next, call, reply, deadline, hasDeadline)
				if err == nil {
					return nil
				}
				ok, why := r.classify(call, err)
				if !ok {
					if why != "" {
						return r.giveUp(call, err, attempt, why, "not_idempotent",
							"%s is not retried: %s.%s is not declared idempotent", bus.ErrorCode(err), call.Service, call.Endpoint)
					}
					return err
				}
				if attempt >= r.MaxAttempts {
					return r.giveUp(call, err, attempt, retryAttempts, "attempts", "gave up after %d attempts", attempt)
				}
				wait, hinted := bus.RetryAfter(err)
				if !hinted || wait < 0 {
					wait = r.backoff(attempt, rand.Float64())
				}
				if hasDeadline {
					if left := time.Until(deadline); left-wait < r.MinAttemptTime {
						what := "backoff"
						if hinted {
							what = "retry-after hint"
						}
						return r.giveUp(call, err, attempt, retryDeadline, "deadline",
							"not retried: %v left before the deadline, the %s is %v and an attempt needs at least %v",
							max(left, 0).Round(time.Millisecond), what, roundWait(wait), r.MinAttemptTime)
					}
				}
				if !r.Budget.retry() {
					s := r.Budget.Stats()
					return r.giveUp(call, err, attempt, retryBudget, "budget_exhausted",
						"not retried: retry budget exhausted, %d retries for %d calls in the window (ratio %g)",
						s.Retries, s.Calls, s.Ratio)
				}
				r.observe(decision("retry", "retry", reasonOf(err), call, wait, err))
				if wait > 0 {
					t := time.NewTimer(wait)
					select {
					case <-t.C:
					case <-ctx.Done():
						t.Stop()
						return r.giveUp(call, err, attempt, retryCanceled, "canceled",
							"not retried: the caller gave up during the backoff: %v", ctx.Err())
					}
				}
			}
		}
	}
}

// attempt runs one attempt, under AttemptTimeout if set.
func (r Retry) attempt(ctx context.Context, next switchboard.Invoker, call *switchboard.Call, reply any, deadline time.Time, hasDeadline bool) error {
	if r.AttemptTimeout <= 0 {
		return next(ctx, call, reply)
	}
	actx, cancel := context.WithTimeout(ctx, r.AttemptTimeout)
	defer cancel()
	orig := call.Envelope.Deadline
	if d, _ := actx.Deadline(); !hasDeadline || d.Before(deadline) {
		call.Envelope.Deadline = d // the server must not work past this attempt
	}
	err := next(actx, call, reply)
	call.Envelope.Deadline = orig
	return err
}

func (r Retry) giveUp(call *switchboard.Call, err error, attempts int, why, reason, format string, args ...any) error {
	out := annotate(err, fmt.Sprintf(format, args...), DetailRetry, why, DetailAttempts, itoa(attempts))
	r.observe(decision("retry", "give_up", reason, call, 0, out))
	return out
}

func (r Retry) observe(d Decision) {
	if r.Observe != nil {
		r.Observe(d)
	}
}

func unprocessed(call *switchboard.Call, err error) bool {
	var e *bus.Error
	return errors.As(err, &e) && e.Details[DetailUnprocessed] == PerEndpoint(call)
}

// reasonOf names err's code as a metrics label: "unavailable", "not_sent"…
func reasonOf(err error) string {
	if notSent(err) {
		return "not_sent"
	}
	return strings.ToLower(bus.ErrorCode(err).String())
}
