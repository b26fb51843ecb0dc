package resilience

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/bus"
)

// Limit is a token bucket: Rate calls per second on average, bursts of up
// to Burst calls.
type Limit struct {
	// Rate is the sustained rate in calls per second. Zero means no limit.
	Rate float64 `json:"rate"`
	// Burst is the bucket's size (default: a tenth of a second's worth,
	// at least 1).
	Burst int `json:"burst,omitempty"`
}

func (l Limit) burst() int {
	if l.Burst > 0 {
		return l.Burst
	}
	return max(1, int(math.Ceil(l.Rate/10)))
}

// String renders the limit as in error details: "100/s" or "100/s burst 20".
func (l Limit) String() string {
	s := strconv.FormatFloat(l.Rate, 'f', -1, 64) + "/s"
	if l.Burst > 0 {
		s += " burst " + strconv.Itoa(l.Burst)
	}
	return s
}

// RateLimit limits calls with a token bucket per key (golang.org/x/time/rate).
// On the server (Server) the key is by default the endpoint; PerCaller or
// PerCallerEndpoint limit each calling service. On the client (Client) the
// key is by default the target endpoint, to protect a downstream that cannot
// scale. Stack several RateLimits to limit by several keys at once.
//
// A call over the limit fails at once with ResourceExhausted, details
// "rate_limit" (the key), "limit", "retry_after" (when the bucket will have
// a token for it) and, on the server, "unprocessed" (no handler ran) — unless MaxWait allows waiting that long within the
// call's deadline, in which case the call waits for its token.
//
// Limits are per process: a service with N instances admits up to N × Rate.
// The caller's name comes from the envelope, which the caller writes: per
// caller limits keep well-behaved services from crowding each other out,
// they are not a defence against a hostile caller.
//
// The zero value limits nothing. Configure it before the first call; a
// RateLimit is safe for concurrent use and must not be copied after.
type RateLimit struct {
	// Limit applies to every key without an entry in Overrides. A zero Rate
	// lets those keys through unlimited.
	Limit Limit
	// Overrides sets the limit of specific keys, e.g. "greeter.hello" with
	// PerEndpoint or "billing" with PerCaller.
	Overrides map[string]Limit
	// Key picks a call's bucket (default PerEndpoint).
	Key func(call *switchboard.Call) string
	// MaxWait is how long a call may wait for a token instead of failing
	// (default 0: never wait).
	MaxWait time.Duration
	// MaxKeys bounds the buckets kept (default 10000). Full buckets are
	// dropped first (a full bucket is the same as a new one); beyond that,
	// new keys share one overflow bucket with Limit.
	MaxKeys int
	// Observe, if set, receives every call the limit rejects.
	Observe func(Decision)

	once     sync.Once
	mu       sync.Mutex
	buckets  map[string]*bucket
	overflow *bucket
	sweptAt  time.Time
}

type bucket struct {
	lim   *rate.Limiter
	limit Limit
}

// PerEndpoint keys a call by its target endpoint: "greeter.hello".
func PerEndpoint(call *switchboard.Call) string { return call.Service + "." + call.Endpoint }

// PerService keys a call by its target service: "greeter".
func PerService(call *switchboard.Call) string { return call.Service }

// PerCaller keys a call by the calling service named in its envelope
// ("anonymous" when it names none).
func PerCaller(call *switchboard.Call) string {
	if call.Envelope.Caller == "" {
		return "anonymous"
	}
	return call.Envelope.Caller
}

// PerCallerEndpoint keys a call by caller and endpoint: "web/greeter.hello".
func PerCallerEndpoint(call *switchboard.Call) string {
	return PerCaller(call) + "/" + PerEndpoint(call)
}

func (l *RateLimit) setup() {
	l.once.Do(func() {
		if l.Key == nil {
			l.Key = PerEndpoint
		}
		if l.MaxKeys <= 0 {
			l.MaxKeys = 10000
		}
		l.buckets = map[string]*bucket{}
	})
}

func newBucket(lim Limit) *bucket {
	return &bucket{lim: rate.NewLimiter(rate.Limit(lim.Rate), lim.burst()), limit: lim}
}

// bucket returns key's bucket, nil when the key is not limited.
func (l *RateLimit) bucket(key string, now time.Time) *bucket {
	lim, ok := l.Overrides[key]
	if !ok {
		lim = l.Limit
	}
	if lim.Rate <= 0 {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if b := l.buckets[key]; b != nil {
		return b
	}
	if !ok && len(l.buckets) >= l.MaxKeys {
		// Overridden keys are few and configured: only the others overflow.
		l.sweep(now)
		if len(l.buckets) >= l.MaxKeys {
			if l.overflow == nil {
				l.overflow = newBucket(l.Limit)
			}
			return l.overflow
		}
	}
	b := newBucket(lim)
	l.buckets[key] = b
	return b
}

// sweep drops full buckets, at most once a second (l.mu held).
func (l *RateLimit) sweep(now time.Time) {
	if now.Sub(l.sweptAt) < time.Second {
		return
	}
	l.sweptAt = now
	for k, b := range l.buckets {
		if b.lim.TokensAt(now) >= float64(b.lim.Burst()) {
			delete(l.buckets, k)
		}
	}
}

// admit takes a token for call, waiting up to MaxWait, or returns the
// rejection.
//
// A rejection reserves nothing: x/time/rate cannot fully give back a
// cancelled reservation once others were made after it, so reserving and
// cancelling under contention would drain the bucket. The wait is computed
// from the tokens instead.
func (l *RateLimit) admit(ctx context.Context, call *switchboard.Call, side string) error {
	key := l.Key(call)
	now := time.Now()
	b := l.bucket(key, now)
	if b == nil || b.lim.AllowN(now, 1) {
		return nil
	}
	wait := time.Duration((1 - b.lim.TokensAt(now)) / b.limit.Rate * float64(time.Second))
	if l.MaxWait > 0 && wait <= l.MaxWait {
		if dl, ok := ctx.Deadline(); !ok || now.Add(wait).Before(dl) {
			r := b.lim.ReserveN(now, 1)
			if d := r.DelayFrom(now); r.OK() && d <= l.MaxWait {
				return l.wait(ctx, call, key, side, r, d)
			}
			r.CancelAt(now)
		}
	}
	return l.reject(call, key, b.limit, side, wait)
}

// wait waits d for a reserved token, giving it back if ctx ends first.
func (l *RateLimit) wait(ctx context.Context, call *switchboard.Call, key, side string, r *rate.Reservation, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		r.Cancel()
		e := bus.Errorf(bus.ErrorCode(ctx.Err()), "resilience: %s: the caller gave up while waiting %v for rate limit %q: %v", target(call), d, key, ctx.Err())
		e.Err = ctx.Err()
		if side == "client" {
			e.Err = errors.Join(ctx.Err(), errNotSent)
		}
		return e
	}
}

func (l *RateLimit) reject(call *switchboard.Call, key string, lim Limit, side string, wait time.Duration) error {
	what := "rate limit " + strconv.Quote(key)
	if side == "client" {
		what = "this client's " + what
	}
	e := bus.Errorf(bus.ResourceExhausted, "resilience: %s: %s of %s exceeded", target(call), what, lim).
		WithDetail(DetailRateLimit, key).WithDetail(DetailLimit, lim.String())
	if wait > 0 {
		wait = roundWait(wait)
		e.Message += fmt.Sprintf("; retry in %v", wait)
		e = e.WithDetail(DetailRetryAfter, wait.String())
	}
	if side == "client" {
		e.Err = errNotSent
	} else {
		e = e.WithDetail(DetailUnprocessed, PerEndpoint(call))
	}
	if l.Observe != nil {
		l.Observe(decision("ratelimit", "reject", "rate", call, wait, e))
	}
	return e
}

// Server returns the server middleware.
func (l *RateLimit) Server() switchboard.Middleware {
	l.setup()
	return func(next switchboard.Handler) switchboard.Handler {
		return func(ctx context.Context, call *switchboard.Call) (any, error) {
			if err := l.admit(ctx, call, "server"); err != nil {
				return nil, err
			}
			return next(ctx, call)
		}
	}
}

// Client returns the client middleware. Its rejections never left the
// process: Breaker does not count them and Retry may retry them.
func (l *RateLimit) Client() switchboard.ClientMiddleware {
	l.setup()
	return func(next switchboard.Invoker) switchboard.Invoker {
		return func(ctx context.Context, call *switchboard.Call, reply any) error {
			if err := l.admit(ctx, call, "client"); err != nil {
				return err
			}
			return next(ctx, call, reply)
		}
	}
}
