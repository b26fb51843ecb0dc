package resilience

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/bus"
)

// State is a circuit breaker's state.
type State string

// The states of a circuit breaker.
const (
	// StateClosed lets calls through and counts their outcomes.
	StateClosed State = "closed"
	// StateOpen fails calls at once, until OpenFor has passed.
	StateOpen State = "open"
	// StateHalfOpen lets Probes calls through; they decide whether the
	// breaker closes (all succeed) or opens again (one fails).
	StateHalfOpen State = "half-open"
)

// Breaker is client middleware with a circuit breaker per target: one per
// service and endpoint, and one per instance for point-to-point calls
// (call.Envelope.Instance set), so a bad instance does not close off its
// healthy siblings.
//
// A breaker opens when, over the rolling Window, at least MinRequests calls
// finished and at least FailureRatio of them failed in a way that says the
// target is unhealthy (IsFailure: by default Unavailable, DeadlineExceeded,
// Internal and ResourceExhausted; InvalidArgument, NotFound and other
// caller errors count as successes, and calls the caller canceled do not
// count). While open it fails calls at once with Unavailable, details
// "breaker": "open" and "retry_after": the time until it lets a probe
// through. After OpenFor it is half-open: up to Probes calls go through,
// others fail with "breaker": "half-open"; if the probes succeed it closes,
// if one fails it opens again.
//
// State changes are logged, passed to OnStateChange, and visible in States.
//
// The breaker is github.com/sony/gobreaker/v2 (rolling window counts,
// success and exclusion classifiers, half-open probe limit); Breaker adds the
// per-target breakers, the failure-ratio trip rule, the errors and the
// state snapshots.
//
// The zero value is a safe default. Configure it before the first call;
// a Breaker is safe for concurrent use and must not be copied after.
type Breaker struct {
	// FailureRatio of finished calls that opens the breaker (default 0.5).
	FailureRatio float64
	// MinRequests is how many calls must finish in the window before the
	// breaker may open (default 20).
	MinRequests int
	// Window is the rolling window over which outcomes count (default 10s,
	// in 10 buckets).
	Window time.Duration
	// OpenFor is how long the breaker stays open before probing (default 5s).
	OpenFor time.Duration
	// Probes is how many calls the half-open breaker lets through at a time,
	// and how many must succeed in a row to close it (default 1).
	Probes int
	// IsFailure, if set, says which errors count against the target.
	IsFailure func(err error) bool
	// SharedAcrossInstances makes point-to-point calls share their
	// endpoint's breaker instead of having one per instance.
	SharedAcrossInstances bool
	// MaxTargets bounds how many breakers are kept (default 10000); closed
	// breakers idle for a window are dropped first.
	MaxTargets int
	// OnStateChange, if set, is called after each state change, outside
	// the breaker's locks (it may call States).
	OnStateChange func(Transition)
	// Observe, if set, receives every call the breaker rejects.
	Observe func(Decision)
	// Logger receives state changes (default slog.Default()): opening at
	// Warn, half-open and closing at Info.
	Logger *slog.Logger

	once     sync.Once
	mu       sync.RWMutex
	circuits map[circuitKey]*circuit
	sweptAt  time.Time
}

// Transition is a breaker's change of state.
type Transition struct {
	Service, Endpoint, Instance string
	From, To                    State
	// Reason says why, e.g. "12 of 20 calls failed in 10s (last: Unavailable: …)".
	Reason string
	At     time.Time
}

// BreakerStatus is a snapshot of one target's breaker, for describe and
// metrics.
type BreakerStatus struct {
	Service  string `json:"service"`
	Endpoint string `json:"endpoint,omitempty"`
	Instance string `json:"instance,omitempty"`
	State    State  `json:"state"`
	// Since is when the breaker entered State.
	Since time.Time `json:"since"`
	// Successes and Failures counted in the current window (closed) or
	// among the probes (half-open).
	Successes int `json:"successes"`
	Failures  int `json:"failures"`
	// LastFailure is the last error that counted as a failure.
	LastFailure string `json:"last_failure,omitempty"`
	// RetryIn is how long until an open breaker lets a probe through.
	RetryIn time.Duration `json:"retry_in_ns,omitempty"`
}

type circuitKey struct{ service, endpoint, instance string }

type circuit struct {
	key circuitKey
	cb  *gobreaker.CircuitBreaker[struct{}]

	mu          sync.Mutex
	state       State
	since       time.Time
	lastFailure string
	tripReason  string // set by ReadyToTrip
	openReason  string // why the breaker last opened
	pending     []Transition
	npending    atomic.Int32 // len(pending), read without c.mu on every call

	deliver  sync.Mutex
	lastUsed atomic.Int64 // unix nanos
}

func (b *Breaker) setup() {
	b.once.Do(func() {
		if b.FailureRatio <= 0 || b.FailureRatio > 1 {
			b.FailureRatio = 0.5
		}
		if b.MinRequests <= 0 {
			b.MinRequests = 20
		}
		if b.Window <= 0 {
			b.Window = 10 * time.Second
		}
		if b.OpenFor <= 0 {
			b.OpenFor = 5 * time.Second
		}
		if b.Probes <= 0 {
			b.Probes = 1
		}
		if b.MaxTargets <= 0 {
			b.MaxTargets = 10000
		}
		if b.Logger == nil {
			b.Logger = slog.Default()
		}
		b.circuits = map[circuitKey]*circuit{}
	})
}

// DefaultIsFailure reports whether err says the target is unhealthy:
// Unavailable, DeadlineExceeded, Internal or ResourceExhausted.
func DefaultIsFailure(err error) bool {
	switch bus.ErrorCode(err) {
	case bus.Unavailable, bus.DeadlineExceeded, bus.Internal, bus.ResourceExhausted:
		return true
	}
	return false
}

func (b *Breaker) isFailure(err error) bool {
	if b.IsFailure != nil {
		return b.IsFailure(err)
	}
	return DefaultIsFailure(err)
}

// excluded: outcomes that say nothing about the target.
func excluded(err error) bool {
	return bus.ErrorCode(err) == bus.Canceled || errors.Is(err, context.Canceled) || notSent(err)
}

func (b *Breaker) circuit(call *switchboard.Call) *circuit {
	k := circuitKey{service: call.Service, endpoint: call.Endpoint}
	if !b.SharedAcrossInstances {
		k.instance = call.Envelope.Instance
	}
	now := time.Now()
	b.mu.RLock()
	c := b.circuits[k]
	b.mu.RUnlock()
	if c == nil {
		b.mu.Lock()
		if c = b.circuits[k]; c == nil {
			if len(b.circuits) >= b.MaxTargets {
				b.sweep(now)
			}
			c = b.newCircuit(k, now)
			b.circuits[k] = c
		}
		b.mu.Unlock()
	}
	c.lastUsed.Store(now.UnixNano())
	return c
}

// sweep drops closed breakers idle for a window, at most once a second
// (b.mu held).
func (b *Breaker) sweep(now time.Time) {
	if now.Sub(b.sweptAt) < time.Second {
		return
	}
	b.sweptAt = now
	for k, c := range b.circuits {
		c.mu.Lock()
		closed := c.state == StateClosed
		c.mu.Unlock()
		if closed && now.Sub(time.Unix(0, c.lastUsed.Load())) > b.Window {
			delete(b.circuits, k)
		}
	}
}

func (b *Breaker) newCircuit(k circuitKey, now time.Time) *circuit {
	c := &circuit{key: k, state: StateClosed, since: now}
	c.cb = gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Name:         k.service + "." + k.endpoint,
		MaxRequests:  uint32(b.Probes),
		Interval:     b.Window,
		BucketPeriod: b.Window / 10,
		Timeout:      b.OpenFor,
		ReadyToTrip: func(n gobreaker.Counts) bool {
			done := n.TotalSuccesses + n.TotalFailures
			if int(done) < b.MinRequests || float64(n.TotalFailures) < b.FailureRatio*float64(done) {
				return false
			}
			// Called under gobreaker's lock, just before the state change.
			c.mu.Lock()
			c.tripReason = fmt.Sprintf("%d of %d calls failed in the last %v (last: %s)", n.TotalFailures, done, b.Window, c.lastFailure)
			c.mu.Unlock()
			return true
		},
		IsSuccessful: func(err error) bool { return err == nil || !b.isFailure(err) },
		IsExcluded:   excluded,
		OnStateChange: func(_ string, from, to gobreaker.State) {
			now := time.Now()
			c.mu.Lock()
			defer c.mu.Unlock()
			c.state, c.since = state(to), now
			reason := ""
			switch to {
			case gobreaker.StateOpen:
				reason = c.tripReason
				if from == gobreaker.StateHalfOpen {
					reason = "a probe failed: " + c.lastFailure
				}
				c.openReason = reason
			case gobreaker.StateHalfOpen:
				reason = fmt.Sprintf("open for %v: probing with up to %d calls", b.OpenFor, b.Probes)
			case gobreaker.StateClosed:
				reason = fmt.Sprintf("%d probe calls succeeded", b.Probes)
			}
			c.pending = append(c.pending, Transition{Service: k.service, Endpoint: k.endpoint, Instance: k.instance,
				From: state(from), To: state(to), Reason: reason, At: now})
			c.npending.Store(int32(len(c.pending)))
		},
	})
	return c
}

func state(s gobreaker.State) State {
	switch s {
	case gobreaker.StateOpen:
		return StateOpen
	case gobreaker.StateHalfOpen:
		return StateHalfOpen
	}
	return StateClosed
}

// flush delivers pending transitions outside gobreaker's lock, one
// deliverer at a time and in order. A flush that finds another deliverer at
// work (including OnStateChange calling States) leaves the work to it.
func (b *Breaker) flush(c *circuit) {
	for c.npending.Load() > 0 {
		if !c.deliver.TryLock() {
			return
		}
		for {
			c.mu.Lock()
			ts := c.pending
			c.pending = nil
			c.npending.Store(0)
			c.mu.Unlock()
			if len(ts) == 0 {
				break
			}
			for _, t := range ts {
				b.report(t)
			}
		}
		c.deliver.Unlock()
	}
}

func (b *Breaker) report(t Transition) {
	level := slog.LevelInfo
	if t.To == StateOpen {
		level = slog.LevelWarn
	}
	b.Logger.Log(context.Background(), level, "circuit breaker "+string(t.To),
		"service", t.Service, "endpoint", t.Endpoint, "instance", t.Instance, "from", string(t.From), "reason", t.Reason)
	if b.OnStateChange != nil {
		b.OnStateChange(t)
	}
}

// Middleware returns the client middleware.
func (b *Breaker) Middleware() switchboard.ClientMiddleware {
	b.setup()
	return func(next switchboard.Invoker) switchboard.Invoker {
		return func(ctx context.Context, call *switchboard.Call, reply any) error {
			c := b.circuit(call)
			var callErr error
			_, err := c.cb.Execute(func() (struct{}, error) {
				callErr = next(ctx, call, reply)
				if callErr != nil && !excluded(callErr) && b.isFailure(callErr) {
					c.mu.Lock()
					c.lastFailure = callErr.Error()
					c.mu.Unlock()
				}
				return struct{}{}, callErr
			})
			b.flush(c)
			if err != nil && callErr == nil {
				return b.reject(c, call, err)
			}
			return callErr
		}
	}
}

// reject turns gobreaker's refusal into the error the caller gets.
func (b *Breaker) reject(c *circuit, call *switchboard.Call, err error) error {
	c.mu.Lock()
	since, why, last := c.since, c.openReason, c.lastFailure
	c.mu.Unlock()
	var out *bus.Error
	var wait time.Duration
	reason := "open"
	if errors.Is(err, gobreaker.ErrOpenState) {
		wait = roundWait(time.Until(since.Add(b.OpenFor)))
		out = bus.Errorf(bus.Unavailable, "resilience: circuit breaker for %s is open: %s; next probe in %v",
			target(call), why, wait).
			WithDetail(DetailBreaker, string(StateOpen)).WithDetail(DetailRetryAfter, wait.String())
	} else {
		reason = "half_open"
		out = bus.Errorf(bus.Unavailable, "resilience: circuit breaker for %s is half-open: waiting for its probe calls (%d at a time) to succeed; it opened because of: %s",
			target(call), b.Probes, last).
			WithDetail(DetailBreaker, string(StateHalfOpen))
	}
	out.Err = errNotSent
	if b.Observe != nil {
		b.Observe(decision("breaker", "reject", reason, call, wait, out))
	}
	return out
}

// States returns a snapshot of every breaker, ordered by service, endpoint
// and instance.
func (b *Breaker) States() []BreakerStatus {
	b.setup()
	b.mu.RLock()
	cs := make([]*circuit, 0, len(b.circuits))
	for _, c := range b.circuits {
		cs = append(cs, c)
	}
	b.mu.RUnlock()
	out := make([]BreakerStatus, 0, len(cs))
	now := time.Now()
	for _, c := range cs {
		st := c.cb.State() // moves an expired open breaker to half-open
		n := c.cb.Counts()
		b.flush(c)
		c.mu.Lock()
		s := BreakerStatus{Service: c.key.service, Endpoint: c.key.endpoint, Instance: c.key.instance,
			State: state(st), Since: c.since, Successes: int(n.TotalSuccesses), Failures: int(n.TotalFailures),
			LastFailure: c.lastFailure}
		c.mu.Unlock()
		if s.State == StateOpen {
			s.RetryIn = max(s.Since.Add(b.OpenFor).Sub(now), 0)
		}
		out = append(out, s)
	}
	slices.SortFunc(out, func(x, y BreakerStatus) int {
		return cmp.Or(cmp.Compare(x.Service, y.Service), cmp.Compare(x.Endpoint, y.Endpoint), cmp.Compare(x.Instance, y.Instance))
	})
	return out
}
