// Package controlplane is Switchboard's control plane: a Switchboard service
// that watches the running system from the bus and serves what it sees as a
// JSON HTTP API and a web dashboard.
//
// It learns everything from the bus, with no agent on the instances:
//
//   - discovery announcements (sb.disc.*): services, versions, instances,
//     endpoints with their JSON Schemas, and per-endpoint request and error
//     counters, from which it computes rates over 1, 5 and 15 minutes and
//     the mean latency; the control plane asks every instance to announce
//     (sb.disc.ping) every Options.Poll so that the figures are fresh;
//   - the traffic report of instances that run package traffic
//     (InstanceInfo.Status["traffic"]): requests per caller, which make the
//     edges of the service graph, and a latency histogram per endpoint,
//     which gives the p50 and p99;
//   - health reports (sb.health.report.>), which colour services and
//     instances healthy, degraded or unhealthy;
//   - a live tail of every topic (bus.Conn.Tail), kept per topic;
//   - dead letters, browsed and replayed through package bus;
//   - traces, asked of the trace store (service "traces", package
//     tracestore) when one runs.
//
// Memory is bounded whatever runs and for however long: stats keep a fixed
// ring of buckets per endpoint and a bounded number of endpoints, the event
// tail a bounded number of events per topic and of topics (see Options).
//
// The control plane is a platform service (layer 5 of the brief). `switchboard
// dev` runs one next to the example services; `switchboard controlplane
// --bus URL` runs one on its own. The API is described in
// docs/operations.md ("Control plane and dashboard"); the dashboard
// (embedded, no external resource) is served at /.
package controlplane

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/health"
	"github.com/switchboard-dev/switchboard/wire"
)

// ServiceName is the name the control plane runs under on the bus.
const ServiceName = "controlplane"

// Version is the control plane's version.
const Version = "1.0.0"

// Caller is the caller name of calls made from the dashboard's form, so
// that they show in the service graph as coming from "dashboard".
const Caller = "dashboard"

// Options configure a control plane. The zero value is ready for
// production use.
type Options struct {
	// HTTPAddr is where the API and the dashboard listen (default
	// 127.0.0.1:0, a free port on the loopback interface).
	HTTPAddr string
	// Poll is how often the control plane asks every instance to announce
	// itself, which refreshes the stats (default 5s; negative: never, rely
	// on the instances' heartbeats).
	Poll time.Duration
	// Bucket is the width of one stats bucket, the resolution of graphs
	// (default 5s).
	Bucket time.Duration
	// History is how far back stats go (default 15m, at least 15 minutes
	// so that the 15-minute rate is known).
	History time.Duration
	// MaxSeries bounds the endpoints that stats are kept for (default
	// 1024); beyond it the one updated least recently is forgotten.
	MaxSeries int
	// MaxInstances bounds the instances tracked (default 4096).
	MaxInstances int
	// EventsPerTopic is how many recent events are kept per topic
	// (default 50); MaxTopics bounds the topics (default 256), forgetting
	// the one quiet longest.
	EventsPerTopic, MaxTopics int
	// MaxEventBody bounds the bytes kept of one event's body (default
	// 16 KiB); longer bodies are cut and marked truncated.
	MaxEventBody int
	// Events is the topic pattern the live tail follows (default ">",
	// every topic; '*' matches one dot-separated name). The tail receives
	// a copy of every matching event, so on a bus with heavy topics narrow
	// it, or set NoEvents.
	Events string
	// NoEvents turns the live event tail off.
	NoEvents bool
	// Logger logs the control plane's own trouble (default slog.Default()).
	Logger *slog.Logger
	// ServiceOptions are added to the control plane's own service.
	ServiceOptions []switchboard.ServiceOption
}

func (o Options) withDefaults() Options {
	if o.HTTPAddr == "" {
		o.HTTPAddr = "127.0.0.1:0"
	}
	if o.Poll == 0 {
		o.Poll = 5 * time.Second
	}
	if o.Bucket <= 0 {
		o.Bucket = 5 * time.Second
	}
	if o.History < 15*time.Minute {
		o.History = 15 * time.Minute
	}
	if o.MaxSeries <= 0 {
		o.MaxSeries = 1024
	}
	if o.MaxInstances <= 0 {
		o.MaxInstances = 4096
	}
	if o.EventsPerTopic <= 0 {
		o.EventsPerTopic = 50
	}
	if o.MaxTopics <= 0 {
		o.MaxTopics = 256
	}
	if o.MaxEventBody <= 0 {
		o.MaxEventBody = 16 << 10
	}
	if o.Events == "" {
		o.Events = ">"
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// ControlPlane watches a bus and serves the API and dashboard. Make one
// with Start; stop it with Shutdown. Safe for concurrent use.
type ControlPlane struct {
	conn   *bus.Conn
	opts   Options
	log    *slog.Logger
	svc    *switchboard.Service
	health *health.Checker
	client *switchboard.Client

	state  *state
	stats  *stats
	events *eventTail

	ln   net.Listener
	http *http.Server
	url  string

	subs   []*bus.Subscription
	stop   chan struct{}
	loops  sync.WaitGroup
	closed sync.Once
}

// Start starts a control plane on conn: it listens on Options.HTTPAddr,
// subscribes to discovery, health and every topic, starts its own
// service (named ServiceName, its dashboard URL in the metadata under
// "dashboard") and asks every instance to announce itself. conn stays the
// caller's.
func Start(ctx context.Context, conn *bus.Conn, opts Options) (*ControlPlane, error) {
	opts = opts.withDefaults()
	cp := &ControlPlane{conn: conn, opts: opts, log: opts.Logger.With("service", ServiceName), stop: make(chan struct{})}
	cp.state = newState(opts.MaxInstances)
	cp.stats = newStats(opts.Bucket, opts.History, opts.MaxSeries)
	cp.events = newEventTail(opts.EventsPerTopic, opts.MaxTopics, opts.MaxEventBody)

	ln, err := net.Listen("tcp", opts.HTTPAddr)
	if err != nil {
		return nil, fmt.Errorf("controlplane: listen on %s: %w", opts.HTTPAddr, err)
	}
	cp.ln = ln
	cp.url = "http://" + ln.Addr().String() + "/"

	fail := func(err error) (*ControlPlane, error) {
		ln.Close()
		cp.stopSubs()
		return nil, err
	}
	for _, s := range []struct {
		pattern string
		tail    bool
		fn      func(*bus.Message)
	}{
		{"sb.disc.*", false, cp.observeDiscovery},
		{HealthReportPattern, false, cp.observeHealth},
		{opts.Events, true, cp.observeEvent},
	} {
		if s.tail && opts.NoEvents {
			continue
		}
		var sub *bus.Subscription
		if s.tail {
			sub, err = conn.Tail(ctx, s.pattern, s.fn)
		} else {
			sub, err = conn.Listen(ctx, s.pattern, s.fn)
		}
		if err != nil {
			return fail(fmt.Errorf("controlplane: subscribe to %s: %w", s.pattern, err))
		}
		cp.subs = append(cp.subs, sub)
	}

	svcOpts := append([]switchboard.ServiceOption{
		switchboard.WithDescription("control plane: services, stats, service graph, events, dead letters and traces; the dashboard's API"),
		switchboard.WithMetadata(map[string]string{"dashboard": cp.url}),
		switchboard.WithLogger(opts.Logger),
	}, opts.ServiceOptions...)
	cp.svc = switchboard.NewService(ServiceName, Version, svcOpts...)
	cp.handleEndpoints()
	cp.health = health.For(cp.svc).WithLogger(opts.Logger)
	if err := cp.svc.Start(ctx, conn); err != nil {
		return fail(fmt.Errorf("controlplane: start the service: %w", err))
	}
	if err := cp.health.Start(ctx); err != nil {
		return fail(errors.Join(fmt.Errorf("controlplane: start its health checks: %w", err), cp.svc.Shutdown(context.Background())))
	}
	cp.client = switchboard.NewClient(conn, switchboard.WithCaller(Caller))

	cp.http = &http.Server{Handler: cp.Handler(), ReadHeaderTimeout: 10 * time.Second}
	cp.loops.Add(2)
	go func() {
		defer cp.loops.Done()
		if err := cp.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			cp.log.Error("dashboard server stopped", "err", err)
		}
	}()
	go cp.pollLoop()
	return cp, nil
}

// URL is the dashboard's address, e.g. http://127.0.0.1:4251/.
func (cp *ControlPlane) URL() string { return cp.url }

// Service returns the control plane's own service.
func (cp *ControlPlane) Service() *switchboard.Service { return cp.svc }

// pollLoop asks for announcements every Poll and prunes what went silent.
func (cp *ControlPlane) pollLoop() {
	defer cp.loops.Done()
	cp.ping()
	every := cp.opts.Poll
	if every < 0 {
		every = cp.opts.Bucket
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-cp.stop:
			return
		case <-t.C:
			if cp.opts.Poll > 0 {
				cp.ping()
			}
			cp.state.prune(time.Now())
		}
	}
}

func (cp *ControlPlane) ping() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := cp.conn.Send(ctx, &bus.Message{Subject: wire.SubjectPing, Header: bus.Header{}}); err != nil {
		cp.log.Debug("discovery ping failed", "err", err)
	}
}

func (cp *ControlPlane) stopSubs() {
	for _, s := range cp.subs {
		_ = s.Stop(context.Background())
	}
	cp.subs = nil
}

// Shutdown stops the dashboard server (finishing requests in flight),
// leaves discovery and stops listening. It returns when everything it
// started has ended, or with ctx's error.
func (cp *ControlPlane) Shutdown(ctx context.Context) error {
	var errs []error
	cp.closed.Do(func() {
		close(cp.stop)
		if err := cp.http.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("controlplane: stop the dashboard server: %w", err))
		}
		errs = append(errs, cp.health.Stop(ctx), cp.client.Close(), cp.svc.Shutdown(ctx))
		cp.stopSubs()
		done := make(chan struct{})
		go func() { cp.loops.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			errs = append(errs, ctx.Err())
		}
	})
	return errors.Join(errs...)
}

// observeDiscovery keeps the instance table and feeds stats.
func (cp *ControlPlane) observeDiscovery(m *bus.Message) {
	var info wire.InstanceInfo
	if json.Unmarshal(m.Body, &info) != nil || info.ID == "" || info.Service == "" {
		return // a malformed announcement is ignored, as Discovery does
	}
	now := time.Now()
	switch m.Subject {
	case wire.SubjectAnnounce:
		prev, ok := cp.state.announce(info, now)
		cp.stats.observe(info, prev, ok, now)
	case wire.SubjectLeave:
		cp.state.leave(info, now)
	}
}

// state is the table of instances and their health.
type state struct {
	max int

	mu        sync.Mutex
	instances map[string]*instance
	// gone remembers when a service's last instance left, to say so.
	gone map[string]time.Time
}

type instance struct {
	info     wire.InstanceInfo
	lastSeen time.Time
	health   *HealthReport
}

func newState(max int) *state {
	return &state{max: max, instances: map[string]*instance{}, gone: map[string]time.Time{}}
}

// announce records info and returns the instance's previous announcement.
func (s *state) announce(info wire.InstanceInfo, now time.Time) (prev wire.InstanceInfo, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in := s.instances[info.ID]
	if in != nil {
		prev, ok = in.info, true
		in.info, in.lastSeen = info, now
		return prev, ok
	}
	if len(s.instances) >= s.max {
		s.evictOldest()
	}
	s.instances[info.ID] = &instance{info: info, lastSeen: now}
	delete(s.gone, info.Service)
	return prev, false
}

func (s *state) evictOldest() {
	var oldest string
	var at time.Time
	for id, in := range s.instances {
		if oldest == "" || in.lastSeen.Before(at) {
			oldest, at = id, in.lastSeen
		}
	}
	s.remove(oldest, at)
}

// remove deletes an instance; if it was its service's last, the service is
// remembered as gone. s.mu is held.
func (s *state) remove(id string, at time.Time) {
	in := s.instances[id]
	if in == nil {
		return
	}
	delete(s.instances, id)
	for _, o := range s.instances {
		if o.info.Service == in.info.Service {
			return
		}
	}
	s.gone[in.info.Service] = at
	if len(s.gone) > s.max { // bounded too: forget the longest gone
		var name string
		var t time.Time
		for n, g := range s.gone {
			if name == "" || g.Before(t) {
				name, t = n, g
			}
		}
		delete(s.gone, name)
	}
}

func (s *state) leave(info wire.InstanceInfo, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.remove(info.ID, now)
}

// prune forgets instances silent for three heartbeats, and health reports
// gone stale.
func (s *state) prune(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, in := range s.instances {
		hb := in.info.Heartbeat()
		if hb <= 0 {
			hb = 5 * time.Second
		}
		if now.Sub(in.lastSeen) > 3*hb {
			s.remove(id, in.lastSeen)
		}
	}
}

// snapshot returns the live instances, sorted by service and id, with their
// health (nil if none reported or the report is stale).
func (s *state) snapshot(now time.Time) []instanceView {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]instanceView, 0, len(s.instances))
	for _, in := range s.instances {
		v := instanceView{Info: in.info, LastSeen: in.lastSeen}
		if h := in.health; h != nil && !h.stale(now) {
			v.Health = h
		}
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Info.Service != out[j].Info.Service {
			return out[i].Info.Service < out[j].Info.Service
		}
		return out[i].Info.ID < out[j].Info.ID
	})
	return out
}

// goneAt says when service's last instance left, if it did.
func (s *state) goneAt(service string) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.gone[service]
	return t, ok
}

type instanceView struct {
	Info     wire.InstanceInfo
	LastSeen time.Time
	Health   *HealthReport
}
