package switchboard

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/switchboard-dev/switchboard/bus"
)

// Observer is told what a service does, as it happens: the hooks packages
// health and metrics use, so that the SDK itself depends on neither. Every
// field may be nil. The hooks run synchronously on the request or delivery
// path, so they must be fast, must not block, and must be safe for
// concurrent use.
type Observer struct {
	// Request is called once for every request the service finished,
	// including those refused before the handler ran (bulkhead full,
	// deadline passed, malformed body, unknown endpoint, shutting down),
	// which middleware never sees.
	Request func(RequestResult)
	// Call is called once for every call the service makes to another
	// endpoint, as the caller sees it (after client middleware such as
	// retries and breakers).
	Call func(CallResult)
	// Delivery is called once for every event delivery one of the service's
	// consumers settled: acknowledged, retried, dead-lettered.
	Delivery func(bus.Settled)
	// Publish is called once for every event the service published.
	Publish func(PublishResult)
}

// RequestResult is one request as the serving instance finished it.
type RequestResult struct {
	// Endpoint is the endpoint called, or UnknownEndpoint when the service
	// has no such endpoint (so that callers cannot grow label sets).
	Endpoint string
	// Caller is the caller's name from the envelope ("" if it sent none).
	Caller string
	// Code is OK or the code of the error returned to the caller.
	Code Code
	// Duration is the time from receiving the request to having its reply.
	Duration time.Duration
}

// UnknownEndpoint is RequestResult.Endpoint for a request to an endpoint the
// service does not have.
const UnknownEndpoint = "_unknown"

// CallResult is one outgoing call as its caller saw it.
type CallResult struct {
	Caller, Service, Endpoint string
	Code                      Code
	Duration                  time.Duration
}

// PublishResult is one publish: Code is OK once the broker stored the event.
type PublishResult struct {
	Caller, Topic string
	Code          Code
	Duration      time.Duration
}

// WithObserver adds an observer to the service (see Observer).
func WithObserver(o Observer) ServiceOption {
	return func(c *serviceConfig) { c.observers = append(c.observers, o) }
}

// Observe adds an observer to a service that has not started, for code that
// receives services made elsewhere (package app instruments every service it
// runs this way). It panics after Start: observers are fixed then.
func (s *Service) Observe(o Observer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != stateNew {
		panic(fmt.Sprintf("switchboard: service %s: Observe called after Start", s.name))
	}
	s.cfg.observers = append(s.cfg.observers, o)
}

// observerClientOptions are the options that install the observers' Call
// and Publish hooks on the service's client; Start applies them last.
func (s *Service) observerClientOptions() []ClientOption {
	var calls []func(CallResult)
	var pubs []func(PublishResult)
	for _, o := range s.cfg.observers {
		if o.Call != nil {
			calls = append(calls, o.Call)
		}
		if o.Publish != nil {
			pubs = append(pubs, o.Publish)
		}
	}
	var opts []ClientOption
	if len(calls) > 0 {
		// Outermost, so that it sees the call as the caller does.
		opts = append(opts, func(c *Client) {
			c.mw = append([]ClientMiddleware{observeCalls(calls)}, c.mw...)
		})
	}
	if len(pubs) > 0 {
		opts = append(opts, func(c *Client) {
			c.onPublish = func(r PublishResult) {
				for _, f := range pubs {
					f(r)
				}
			}
		})
	}
	return opts
}

func observeCalls(fns []func(CallResult)) ClientMiddleware {
	return func(next Invoker) Invoker {
		return func(ctx context.Context, call *Call, reply any) error {
			start := time.Now()
			err := next(ctx, call, reply)
			r := CallResult{Caller: call.Envelope.Caller, Service: call.Service, Endpoint: call.Endpoint,
				Code: bus.ErrorCode(err), Duration: time.Since(start)}
			for _, f := range fns {
				f(r)
			}
			return err
		}
	}
}

// observeRequest tells the observers about a finished request.
func (s *Service) observeRequest(endpoint, caller string, err error, start time.Time) {
	if len(s.cfg.observers) == 0 {
		return
	}
	if s.endpoints[endpoint] == nil {
		endpoint = UnknownEndpoint
	}
	r := RequestResult{Endpoint: endpoint, Caller: caller, Code: bus.ErrorCode(err), Duration: time.Since(start)}
	for _, o := range s.cfg.observers {
		if o.Request != nil {
			o.Request(r)
		}
	}
}

// observed returns opts with the observers' Delivery hooks added to any
// Observe hook opts already has.
func (s *Service) observed(opts bus.SubscribeOptions) bus.SubscribeOptions {
	var fns []func(bus.Settled)
	if opts.Observe != nil {
		fns = append(fns, opts.Observe)
	}
	for _, o := range s.cfg.observers {
		if o.Delivery != nil {
			fns = append(fns, o.Delivery)
		}
	}
	switch len(fns) {
	case 0:
	case 1:
		opts.Observe = fns[0]
	default:
		opts.Observe = func(st bus.Settled) {
			for _, f := range fns {
				f(st)
			}
		}
	}
	return opts
}

// EndpointLoad is one endpoint's load at a moment, for health and metrics.
type EndpointLoad struct {
	Endpoint string
	// InFlight is how many of its handlers run now; MaxInFlight is its
	// bulkhead (calls beyond it are refused with ResourceExhausted).
	InFlight, MaxInFlight int64
	// ExpectP99 is the 99th-percentile latency the endpoint declared with
	// ExpectLatency; 0 if it declared none.
	ExpectP99 time.Duration
}

// Load returns the load of each of the service's endpoints, sorted by name.
// It is cheap (a few atomic loads per endpoint) and safe for concurrent use.
func (s *Service) Load() []EndpointLoad {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]EndpointLoad, 0, len(s.endpoints))
	for n, e := range s.endpoints {
		out = append(out, EndpointLoad{Endpoint: n, InFlight: e.inFlight.Load(), MaxInFlight: e.maxInFlight, ExpectP99: e.expectP99})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Endpoint < out[j].Endpoint })
	return out
}

// Consumers returns the topics and groups the service consumes, in the
// order they were subscribed.
func (s *Service) Consumers() []TopicGroup {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]TopicGroup, len(s.consumers))
	for i, c := range s.consumers {
		out[i] = TopicGroup{Topic: c.topic, Group: c.group}
	}
	return out
}

// TopicGroup names a consumer group on a topic.
type TopicGroup struct{ Topic, Group string }

// ExpectLatency declares the endpoint's latency objective: 99% of calls
// should be served within p99. The SDK does not enforce it; package health
// reports the endpoint degraded while the observed 99th percentile exceeds
// it, so a slow handler shows in `switchboard health` and /readyz output
// before callers time out.
func ExpectLatency(p99 time.Duration) EndpointOption {
	return func(c *endpointConfig) { c.expectP99 = p99 }
}
