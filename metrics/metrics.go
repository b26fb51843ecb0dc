// Package metrics gives every Switchboard service Prometheus metrics:
// requests by endpoint, caller and code with a latency histogram and
// in-flight gauges on the server; calls by target and code on the client;
// events published, consumed, redelivered and dead-lettered per topic and
// group.
//
// It plugs in through the SDK's hooks (switchboard.Observer, which also sees
// requests refused before any middleware runs, and ClientMiddleware), so
// the SDK itself does not depend on Prometheus. Package app instruments
// every service it runs and serves the registry as /metrics on the admin
// port (package admin).
//
// Names follow the Prometheus conventions (base units, _total counters):
//
//	switchboard_rpc_server_requests_total{service,endpoint,caller,code}
//	switchboard_rpc_server_duration_seconds{service,endpoint,caller}     histogram
//	switchboard_rpc_server_in_flight{service,endpoint}                  gauge
//	switchboard_rpc_server_max_in_flight{service,endpoint}              gauge
//	switchboard_rpc_client_requests_total{caller,service,endpoint,code}
//	switchboard_rpc_client_duration_seconds{caller,service,endpoint}     histogram
//	switchboard_events_published_total{service,topic,code}
//	switchboard_events_consumed_total{service,topic,group,outcome}      outcome: acked, retried, dead_lettered, dropped, skipped
//	switchboard_events_redelivered_total{service,topic,group}           deliveries with attempt > 1
//	switchboard_events_dead_lettered_total{service,topic,group}
//	switchboard_event_handler_duration_seconds{service,topic,group}      histogram
//	switchboard_consumer_lag_messages{service,topic,group}              gauge, where the driver can tell
//	switchboard_consumer_unacked_messages{service,topic,group}          gauge, where the driver can tell
//	switchboard_resilience_decisions_total{service,protection,action,reason,target_service,target_endpoint}
//	switchboard_fault_injected{service,instance,target,fault}            gauge, 1 per fault in force
//	switchboard_fault_fired{service,instance,target}                     gauge, calls or events it changed
//
// The consumer gauges ask the broker at scrape time (bus.Conn.Backlog),
// within ScrapeTimeout, and only on drivers that implement it; every
// instance of a group reports the same backlog, so aggregate with max.
//
// Label values come from the service's own contracts, except caller, which
// is what the calling side sends: keep caller names a small set. Requests
// to endpoints a service does not have are counted under endpoint
// "_unknown".
package metrics

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/bus"
)

// Buckets are the latency histogram's upper bounds, in seconds: from half a
// millisecond (a local call) to ten seconds (the default timeout).
var Buckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// Metrics holds the Switchboard metrics of one process and registers them
// with a Prometheus registry. Make one with New; it is safe for concurrent
// use.
type Metrics struct {
	serverReqs   *prometheus.CounterVec
	serverDur    *prometheus.HistogramVec
	clientReqs   *prometheus.CounterVec
	clientDur    *prometheus.HistogramVec
	published    *prometheus.CounterVec
	consumed     *prometheus.CounterVec
	redelivered  *prometheus.CounterVec
	deadLettered *prometheus.CounterVec
	handlerDur   *prometheus.HistogramVec
	inFlight     *prometheus.Desc
	maxInFlight  *prometheus.Desc
	lag, unacked *prometheus.Desc
	decisions    *prometheus.CounterVec
	faultActive  *prometheus.Desc
	faultFired   *prometheus.Desc

	mu   sync.Mutex
	svcs []*switchboard.Service

	// Children resolved once per label set: the hot path then costs a map
	// read and the counter and histogram updates, with no allocation.
	server, client cache[rpcKey, *rpcChild]
	pub            cache[rpcKey, prometheus.Counter]
	events         cache[eventKey, *eventChild]
}

// New makes the metrics and registers them with reg
// (prometheus.DefaultRegisterer if nil). It fails if they are registered
// there already.
func New(reg prometheus.Registerer) (*Metrics, error) {
	if reg == nil {
		reg = prometheus.DefaultRegisterer
	}
	m := &Metrics{
		serverReqs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_rpc_server_requests_total",
			Help: "Requests served, by endpoint, caller and result code (OK or the error code returned)."},
			[]string{"service", "endpoint", "caller", "code"}),
		serverDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "switchboard_rpc_server_duration_seconds",
			Help: "Time from receiving a request to having its reply, by endpoint and caller.", Buckets: Buckets},
			[]string{"service", "endpoint", "caller"}),
		clientReqs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_rpc_client_requests_total",
			Help: "Calls made, by caller, target endpoint and result code, as the caller saw them."},
			[]string{"caller", "service", "endpoint", "code"}),
		clientDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "switchboard_rpc_client_duration_seconds",
			Help: "Duration of calls as the caller saw them, by caller and target endpoint.", Buckets: Buckets},
			[]string{"caller", "service", "endpoint"}),
		published: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_events_published_total",
			Help: "Events published, by topic and result code (OK once the broker stored it)."},
			[]string{"service", "topic", "code"}),
		consumed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_events_consumed_total",
			Help: "Event deliveries settled, by topic, consumer group and outcome (acked, retried, dead_lettered, dropped, skipped)."},
			[]string{"service", "topic", "group", "outcome"}),
		redelivered: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_events_redelivered_total",
			Help: "Event deliveries that were redeliveries (attempt > 1), by topic and consumer group."},
			[]string{"service", "topic", "group"}),
		deadLettered: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_events_dead_lettered_total",
			Help: "Events moved to their dead-letter topic after their last attempt failed, by topic and consumer group."},
			[]string{"service", "topic", "group"}),
		handlerDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "switchboard_event_handler_duration_seconds",
			Help: "Time event handlers ran, by topic and consumer group.", Buckets: Buckets},
			[]string{"service", "topic", "group"}),
		inFlight: prometheus.NewDesc("switchboard_rpc_server_in_flight",
			"Handlers running now, by endpoint.", []string{"service", "endpoint"}, nil),
		maxInFlight: prometheus.NewDesc("switchboard_rpc_server_max_in_flight",
			"The endpoint's bulkhead (MaxInFlight): calls beyond it are refused with ResourceExhausted.", []string{"service", "endpoint"}, nil),
		lag: prometheus.NewDesc("switchboard_consumer_lag_messages",
			"Messages stored on the topic and not yet delivered to the consumer group (as the broker reports it).", []string{"service", "topic", "group"}, nil),
		unacked: prometheus.NewDesc("switchboard_consumer_unacked_messages",
			"Messages delivered to the consumer group and not yet acknowledged (as the broker reports it).", []string{"service", "topic", "group"}, nil),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_resilience_decisions_total",
			Help: "Decisions of the protections (retry, breaker, ratelimit, shed): the action taken and why, by target."},
			[]string{"service", "protection", "action", "reason", "target_service", "target_endpoint"}),
		faultActive: prometheus.NewDesc("switchboard_fault_injected",
			"1 for each fault injected into the instance now (switchboard fault), by target: a fault left on is an outage someone forgot.", []string{"service", "instance", "target", "fault"}, nil),
		faultFired: prometheus.NewDesc("switchboard_fault_fired",
			"How many calls or events a fault in force has changed since it was set.", []string{"service", "instance", "target"}, nil),
	}
	for _, c := range []prometheus.Collector{m.serverReqs, m.serverDur, m.clientReqs, m.clientDur, m.published,
		m.consumed, m.redelivered, m.deadLettered, m.handlerDur, m.decisions, loadCollector{m}} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Instrument attaches the metrics to svc. Call it before svc.Start (it
// panics after, as switchboard.Service.Observe does). Each service is
// instrumented once; a second call does nothing.
func (m *Metrics) Instrument(svc *switchboard.Service) {
	m.mu.Lock()
	if slices.Contains(m.svcs, svc) {
		m.mu.Unlock()
		return
	}
	m.svcs = append(m.svcs, svc)
	m.mu.Unlock()
	name := svc.Name()
	svc.Observe(switchboard.Observer{
		Request:  func(r switchboard.RequestResult) { m.observeRequest(name, r) },
		Call:     m.observeCall,
		Delivery: func(s bus.Settled) { m.observeDelivery(name, s) },
		Publish:  func(p switchboard.PublishResult) { m.observePublish(name, p) },
	})
}

// ClientMiddleware returns middleware that counts and times the calls of a
// client that is not a service's own (services get it from Instrument),
// e.g. one made with switchboard.NewClient for a gateway or a workload.
func (m *Metrics) ClientMiddleware() switchboard.ClientMiddleware {
	return func(next switchboard.Invoker) switchboard.Invoker {
		return func(ctx context.Context, call *switchboard.Call, reply any) error {
			start := time.Now()
			err := next(ctx, call, reply)
			m.observeCall(switchboard.CallResult{Caller: call.Envelope.Caller, Service: call.Service, Endpoint: call.Endpoint,
				Code: bus.ErrorCode(err), Duration: time.Since(start)})
			return err
		}
	}
}

type rpcKey struct {
	a, b, c string
	code    bus.Code
}

type rpcChild struct {
	count prometheus.Counter
	dur   prometheus.Observer
}

func (m *Metrics) observeRequest(service string, r switchboard.RequestResult) {
	ch := m.server.get(rpcKey{service, r.Endpoint, r.Caller, r.Code}, func() *rpcChild {
		return &rpcChild{
			count: m.serverReqs.WithLabelValues(service, r.Endpoint, r.Caller, r.Code.String()),
			dur:   m.serverDur.WithLabelValues(service, r.Endpoint, r.Caller)}
	})
	ch.count.Inc()
	ch.dur.Observe(r.Duration.Seconds())
}

func (m *Metrics) observeCall(r switchboard.CallResult) {
	ch := m.client.get(rpcKey{r.Caller, r.Service, r.Endpoint, r.Code}, func() *rpcChild {
		return &rpcChild{
			count: m.clientReqs.WithLabelValues(r.Caller, r.Service, r.Endpoint, r.Code.String()),
			dur:   m.clientDur.WithLabelValues(r.Caller, r.Service, r.Endpoint)}
	})
	ch.count.Inc()
	ch.dur.Observe(r.Duration.Seconds())
}

func (m *Metrics) observePublish(service string, p switchboard.PublishResult) {
	m.pub.get(rpcKey{service, p.Topic, "", p.Code}, func() prometheus.Counter {
		return m.published.WithLabelValues(service, p.Topic, p.Code.String())
	}).Inc()
}

type eventKey struct {
	service, topic, group string
	outcome               bus.Outcome
}

type eventChild struct {
	consumed, redelivered, dead prometheus.Counter
	dur                         prometheus.Observer
}

func (m *Metrics) observeDelivery(service string, s bus.Settled) {
	ch := m.events.get(eventKey{service, s.Topic, s.Group, s.Outcome}, func() *eventChild {
		return &eventChild{
			consumed:    m.consumed.WithLabelValues(service, s.Topic, s.Group, s.Outcome.String()),
			redelivered: m.redelivered.WithLabelValues(service, s.Topic, s.Group),
			dead:        m.deadLettered.WithLabelValues(service, s.Topic, s.Group),
			dur:         m.handlerDur.WithLabelValues(service, s.Topic, s.Group)}
	})
	ch.consumed.Inc()
	if s.Attempt > 1 {
		ch.redelivered.Inc()
	}
	if s.Outcome == bus.DeadLettered {
		ch.dead.Inc()
	}
	if s.Outcome != bus.Skipped {
		ch.dur.Observe(s.Duration.Seconds())
	}
}

// loadCollector reads the endpoints' in-flight counts at scrape time, so
// the request path pays nothing for the gauges.
type loadCollector struct{ m *Metrics }

func (l loadCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- l.m.inFlight
	ch <- l.m.maxInFlight
	ch <- l.m.lag
	ch <- l.m.unacked
	ch <- l.m.faultActive
	ch <- l.m.faultFired
}

// ScrapeTimeout bounds the broker calls a scrape makes for the consumer
// gauges.
var ScrapeTimeout = 2 * time.Second

func (l loadCollector) Collect(ch chan<- prometheus.Metric) {
	l.m.mu.Lock()
	svcs := slices.Clone(l.m.svcs)
	l.m.mu.Unlock()
	for _, s := range svcs {
		for _, f := range s.Faults() {
			ch <- prometheus.MustNewConstMetric(l.m.faultActive, prometheus.GaugeValue, 1, s.Name(), s.ID(), f.Target(), f.Fault.String())
			ch <- prometheus.MustNewConstMetric(l.m.faultFired, prometheus.GaugeValue, float64(f.Fired), s.Name(), s.ID(), f.Target())
		}
		for _, e := range s.Load() {
			ch <- prometheus.MustNewConstMetric(l.m.inFlight, prometheus.GaugeValue, float64(e.InFlight), s.Name(), e.Endpoint)
			ch <- prometheus.MustNewConstMetric(l.m.maxInFlight, prometheus.GaugeValue, float64(e.MaxInFlight), s.Name(), e.Endpoint)
		}
		conn := s.Conn()
		if conn == nil || !conn.CanReportBacklog() {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), ScrapeTimeout)
		for _, tg := range s.Consumers() {
			b, err := conn.Backlog(ctx, tg.Topic, tg.Group)
			if err != nil {
				continue // absent rather than wrong; the broker's own metrics say why
			}
			ch <- prometheus.MustNewConstMetric(l.m.lag, prometheus.GaugeValue, float64(b.Pending), s.Name(), tg.Topic, tg.Group)
			if !b.UnackedUnknown {
				ch <- prometheus.MustNewConstMetric(l.m.unacked, prometheus.GaugeValue, float64(b.Unacked), s.Name(), tg.Topic, tg.Group)
			}
		}
		cancel()
	}
}

// Decision counts one decision a protection made for service, as
// switchboard_resilience_decisions_total: protection ("retry", "breaker",
// "ratelimit", "shed"), action ("retry", "give_up", "reject"), reason (one
// fixed word) and the target. Package app passes every decision of the
// protections it installs (resilience.Protections.ObserveDecisions).
func (m *Metrics) Decision(service, protection, action, reason, targetService, targetEndpoint string) {
	m.decisions.WithLabelValues(service, protection, action, reason, targetService, targetEndpoint).Inc()
}
