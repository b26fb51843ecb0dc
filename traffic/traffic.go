// Package traffic counts what a service instance serves, by endpoint and by
// caller, with a latency histogram per endpoint, and announces the counts in
// discovery (InstanceInfo.Status["traffic"]), so that whoever listens to
// discovery — the control plane — can draw the service graph (who calls
// whom, how often, how many fail) and the latency percentiles of every
// endpoint, with no extra protocol and no scraping.
//
// It is a cross-cutting package (layer 4): server middleware plus a status
// reporter, both through the SDK's public hooks. Install it on a service
// before Start:
//
//	if err := traffic.Install(svc); err != nil { ... }
//
// or pass traffic.ServiceOptions() to switchboard.NewService.
//
// The counts are cumulative since the instance started; a reader takes the
// difference of two announcements. Memory is fixed per endpoint: at most
// MaxCallers callers are counted by name, the rest under OtherCaller.
package traffic

import (
	"context"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-dev/switchboard"
)

// StatusName is the key of the traffic report in InstanceInfo.Status.
const StatusName = "traffic"

// MaxCallers bounds how many distinct callers an endpoint counts by name;
// calls from further callers are counted under OtherCaller, so that a
// caller sending random names cannot grow an instance's memory or its
// announcement.
const MaxCallers = 32

// OtherCaller counts the calls of callers beyond MaxCallers.
const OtherCaller = "_other"

// UnknownCaller names calls whose envelope named no caller.
const UnknownCaller = "_unknown"

// BucketBounds are the upper bounds, in milliseconds, of the latency
// histogram's buckets: from 25 µs (a call within one machine) to 10 s (the
// default timeout), a 1-2-5 series from 0.1 ms. Report.Latency has
// NumBuckets counts: one more, for calls slower than the last bound.
var BucketBounds = [NumBuckets - 1]float64{0.025, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000}

// NumBuckets is the number of counts in EndpointReport.Latency.
const NumBuckets = 19

// Report is what an instance announces under StatusName.
type Report struct {
	// Endpoints maps endpoint names to their counts.
	Endpoints map[string]EndpointReport `json:"endpoints"`
}

// EndpointReport counts the calls one endpoint handled since the instance
// started.
type EndpointReport struct {
	// Callers maps caller names (the envelope's Sb-Caller) to their calls.
	Callers map[string]CallerCount `json:"callers"`
	// Latency counts calls by handling time: Latency[i] calls took at most
	// BucketBounds[i] ms (and more than BucketBounds[i-1]); the last count
	// is for slower calls.
	Latency []int64 `json:"latency_ms_buckets"`
}

// CallerCount is how many calls one caller made to an endpoint, and how
// many of them failed.
type CallerCount struct {
	Requests int64 `json:"requests"`
	Errors   int64 `json:"errors"`
}

// Counter counts the traffic of one service instance. Its methods are safe
// for concurrent use; the hot path takes a read lock and two atomic adds.
type Counter struct {
	mu        sync.RWMutex
	endpoints map[string]*endpointCounter
}

type endpointCounter struct {
	mu      sync.RWMutex
	callers map[string]*callerCounter
	latency [NumBuckets]atomic.Int64
}

type callerCounter struct{ requests, errors atomic.Int64 }

// NewCounter returns an empty counter.
func NewCounter() *Counter { return &Counter{endpoints: map[string]*endpointCounter{}} }

// ServiceOptions returns the options that count a service's traffic with
// a new Counter and announce it: server middleware and a status reporter.
func ServiceOptions() []switchboard.ServiceOption {
	c := NewCounter()
	return []switchboard.ServiceOption{
		switchboard.WithMiddleware(c.Middleware()),
		switchboard.WithStatus(StatusName, func() any { return c.Report() }),
	}
}

// Install adds ServiceOptions to services that have not started and do not
// report traffic already.
func Install(svcs ...*switchboard.Service) error {
	for _, s := range svcs {
		if s.Reports(StatusName) {
			continue
		}
		if err := s.Apply(ServiceOptions()...); err != nil {
			return err
		}
	}
	return nil
}

// Middleware counts every call that reaches the handler chain.
func (c *Counter) Middleware() switchboard.Middleware {
	return func(next switchboard.Handler) switchboard.Handler {
		return func(ctx context.Context, call *switchboard.Call) (any, error) {
			start := time.Now()
			rsp, err := next(ctx, call)
			c.Observe(call.Endpoint, call.Envelope.Caller, err != nil, time.Since(start))
			return rsp, err
		}
	}
}

// Observe counts one call to endpoint from caller that took d.
func (c *Counter) Observe(endpoint, caller string, failed bool, d time.Duration) {
	if caller == "" {
		caller = UnknownCaller
	}
	e := c.endpoint(endpoint)
	cc := e.caller(caller)
	cc.requests.Add(1)
	if failed {
		cc.errors.Add(1)
	}
	e.latency[bucket(d)].Add(1)
}

func bucket(d time.Duration) int {
	ms := float64(d) / float64(time.Millisecond)
	return sort.SearchFloat64s(BucketBounds[:], ms) // first bound >= ms
}

func (c *Counter) endpoint(name string) *endpointCounter {
	c.mu.RLock()
	e := c.endpoints[name]
	c.mu.RUnlock()
	if e != nil {
		return e
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e = c.endpoints[name]; e == nil {
		// Endpoints are the service's own (the SDK refuses unknown ones
		// before middleware), so this map is bounded by the contract.
		e = &endpointCounter{callers: map[string]*callerCounter{}}
		c.endpoints[name] = e
	}
	return e
}

func (e *endpointCounter) caller(name string) *callerCounter {
	e.mu.RLock()
	cc := e.callers[name]
	e.mu.RUnlock()
	if cc != nil {
		return cc
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if cc = e.callers[name]; cc != nil {
		return cc
	}
	if len(e.callers) >= MaxCallers {
		name = OtherCaller
		if cc = e.callers[name]; cc != nil {
			return cc
		}
	}
	cc = &callerCounter{}
	e.callers[name] = cc
	return cc
}

// Report returns the counts so far.
func (c *Counter) Report() Report {
	c.mu.RLock()
	defer c.mu.RUnlock()
	r := Report{Endpoints: make(map[string]EndpointReport, len(c.endpoints))}
	for name, e := range c.endpoints {
		er := EndpointReport{Callers: map[string]CallerCount{}, Latency: make([]int64, len(e.latency))}
		e.mu.RLock()
		for cn, cc := range e.callers {
			er.Callers[cn] = CallerCount{Requests: cc.requests.Load(), Errors: cc.errors.Load()}
		}
		e.mu.RUnlock()
		for i := range e.latency {
			er.Latency[i] = e.latency[i].Load()
		}
		r.Endpoints[name] = er
	}
	return r
}
