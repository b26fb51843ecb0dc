package resilience

import (
	"cmp"
	"slices"

	"github.com/switchboard-dev/switchboard"
)

// Protections is a set of protections for a service or a client: the
// pointers are shared by the middlewares built from them, so Breaker.States
// and Shed.Stats show what those middlewares decided.
type Protections struct {
	// Client side, outermost first: Retry, ClientRateLimits, Breaker.
	Retry            *Retry
	ClientRateLimits []*RateLimit
	Breaker          *Breaker
	// Server side, outermost first: ServerRateLimits, Shed.
	ServerRateLimits []*RateLimit
	Shed             *Shed
}

// Defaults returns the protections every service should have: retries of
// Unavailable with a 10% budget, a circuit breaker per target, and adaptive
// load shedding; no rate limits (they depend on what a downstream can take).
// Change the fields before calling Client, Server or ServiceOptions.
func Defaults() *Protections {
	return &Protections{Retry: &Retry{Budget: &Budget{}}, Breaker: &Breaker{}, Shed: &Shed{}}
}

// Client returns the client middleware, outermost first: Retry, then the
// client rate limits, then Breaker. Retry sits outside so each attempt goes
// through the limits and the breaker, and a refusal by either (never sent)
// can be retried after its Retry-After; the rate limits sit outside Breaker
// so it only sees calls that were sent.
func (p *Protections) Client() []switchboard.ClientMiddleware {
	var mw []switchboard.ClientMiddleware
	if p.Retry != nil {
		mw = append(mw, p.Retry.Middleware())
	}
	for _, l := range p.ClientRateLimits {
		mw = append(mw, l.Client())
	}
	if p.Breaker != nil {
		mw = append(mw, p.Breaker.Middleware())
	}
	return mw
}

// Server returns the server middleware, outermost first: the rate limits,
// then Shed, so calls over a rate limit do not take a concurrency slot.
func (p *Protections) Server() []switchboard.Middleware {
	var mw []switchboard.Middleware
	for _, l := range p.ServerRateLimits {
		mw = append(mw, l.Server())
	}
	if p.Shed != nil {
		mw = append(mw, p.Shed.Middleware())
	}
	return mw
}

// ServiceOptions installs the protections on a service: Server on its
// endpoints, Client on the calls it makes, and Status in what the instance
// reports to discovery (under StatusName), so `switchboard describe` shows
// breaker states, shedding limits and the retry budget.
func (p *Protections) ServiceOptions() []switchboard.ServiceOption {
	return []switchboard.ServiceOption{
		switchboard.WithMiddleware(p.Server()...),
		switchboard.WithClientOptions(switchboard.WithClientMiddleware(p.Client()...)),
		switchboard.WithStatus(StatusName, func() any { return p.Status() }),
	}
}

// ClientOptions installs the client protections on a switchboard.Client.
func (p *Protections) ClientOptions() []switchboard.ClientOption {
	return []switchboard.ClientOption{switchboard.WithClientMiddleware(p.Client()...)}
}

// StatusName is the name under which ServiceOptions reports Status in
// discovery (wire.InstanceInfo.Status), for `switchboard describe`.
const StatusName = "resilience"

// Status is a snapshot of what the protections are doing: the state of
// every breaker, each endpoint's shedding limit, the retry budget and the
// rate limits in force.
type Status struct {
	Breakers    []BreakerStatus   `json:"breakers,omitempty"`
	Shed        []ShedStatus      `json:"shed,omitempty"`
	RetryBudget *BudgetStats      `json:"retry_budget,omitempty"`
	RateLimits  []RateLimitStatus `json:"rate_limits,omitempty"`
}

// RateLimitStatus describes one rate limit: which side it guards, its
// default limit and its overrides by key.
type RateLimitStatus struct {
	Side      string           `json:"side"` // "server" or "client"
	Limit     Limit            `json:"limit"`
	Overrides map[string]Limit `json:"overrides,omitempty"`
}

// Status returns a snapshot of the protections' state. It is safe to call
// while calls go through them.
func (p *Protections) Status() Status {
	var st Status
	if p.Breaker != nil {
		st.Breakers = p.Breaker.States()
		slices.SortFunc(st.Breakers, func(a, b BreakerStatus) int {
			return cmp.Or(cmp.Compare(a.Service, b.Service), cmp.Compare(a.Endpoint, b.Endpoint), cmp.Compare(a.Instance, b.Instance))
		})
	}
	if p.Shed != nil {
		st.Shed = p.Shed.Stats()
	}
	if p.Retry != nil && p.Retry.Budget != nil {
		b := p.Retry.Budget.Stats()
		st.RetryBudget = &b
	}
	for _, l := range p.ServerRateLimits {
		st.RateLimits = append(st.RateLimits, RateLimitStatus{Side: "server", Limit: l.Limit, Overrides: l.Overrides})
	}
	for _, l := range p.ClientRateLimits {
		st.RateLimits = append(st.RateLimits, RateLimitStatus{Side: "client", Limit: l.Limit, Overrides: l.Overrides})
	}
	return st
}

// ObserveDecisions passes every decision of every protection in p to f, in
// addition to any Observe hook already set: for metrics and logs. Call it
// before Client, Server or ServiceOptions (Retry is copied into its
// middleware). f is called on the call's path: keep it fast.
func (p *Protections) ObserveDecisions(f func(Decision)) {
	both := func(prev func(Decision)) func(Decision) {
		if prev == nil {
			return f
		}
		return func(d Decision) { prev(d); f(d) }
	}
	if p.Retry != nil {
		p.Retry.Observe = both(p.Retry.Observe)
	}
	if p.Breaker != nil {
		p.Breaker.Observe = both(p.Breaker.Observe)
	}
	if p.Shed != nil {
		p.Shed.Observe = both(p.Shed.Observe)
	}
	for _, l := range append(append([]*RateLimit(nil), p.ServerRateLimits...), p.ClientRateLimits...) {
		l.Observe = both(l.Observe)
	}
}
