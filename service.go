package switchboard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/wire"
)

// Service is one instance of a named, versioned service: the endpoints it
// serves and the events it consumes. Register endpoints and subscriptions,
// then Start it on a bus connection (or use Run). A Service is also a Caller:
// calls and publishes made through it carry its name.
type Service struct {
	name     string
	version  string
	id       string
	cfg      serviceConfig
	started  time.Time
	logger   *slog.Logger
	hostname string

	mu        sync.Mutex
	state     int // stateNew, stateRunning, stateStopped
	endpoints map[string]*endpoint
	consumers []*consumer
	publishes []wire.TopicInfo
	conn      *bus.Conn
	cl        *Client
	subs      []*bus.Subscription // request subscriptions
	csubs     []*bus.Subscription // event subscriptions
	stop      chan struct{}
	loops     sync.WaitGroup
	inflight  sync.WaitGroup
	draining  atomic.Bool
	handler   Handler // endpoint dispatch wrapped in middleware
	faults    faultSet
}

const (
	stateNew = iota
	stateRunning
	stateStopped
)

type serviceConfig struct {
	description string
	metadata    map[string]string
	heartbeat   time.Duration
	middleware  []Middleware
	consumerMW  []ConsumerMiddleware
	clientOpts  []ClientOption
	logger      *slog.Logger
	drain       time.Duration
	noFaults    bool
	status      []statusReporter
	observers   []Observer // see observe.go
}

type statusReporter struct {
	name string
	fn   func() any
}

// ServiceOption configures a Service.
type ServiceOption func(*serviceConfig)

// WithDescription sets the service's one-line description.
func WithDescription(s string) ServiceOption { return func(c *serviceConfig) { c.description = s } }

// WithMetadata adds key/value metadata shown in discovery.
func WithMetadata(kv map[string]string) ServiceOption {
	return func(c *serviceConfig) {
		for k, v := range kv {
			c.metadata[k] = v
		}
	}
}

// WithHeartbeat sets how often the instance announces itself (default 5s).
// Others consider it gone after three silent intervals.
func WithHeartbeat(d time.Duration) ServiceOption { return func(c *serviceConfig) { c.heartbeat = d } }

// WithMiddleware appends server middleware, applied to every endpoint in the
// order given (the first is outermost).
func WithMiddleware(mw ...Middleware) ServiceOption {
	return func(c *serviceConfig) { c.middleware = append(c.middleware, mw...) }
}

// WithConsumerMiddleware appends consumer middleware, applied to every event
// the service consumes, in the order given (the first is outermost).
func WithConsumerMiddleware(mw ...ConsumerMiddleware) ServiceOption {
	return func(c *serviceConfig) { c.consumerMW = append(c.consumerMW, mw...) }
}

// WithClientOptions configures the client the service uses for its own
// outgoing calls and publishes.
func WithClientOptions(opts ...ClientOption) ServiceOption {
	return func(c *serviceConfig) { c.clientOpts = append(c.clientOpts, opts...) }
}

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) ServiceOption { return func(c *serviceConfig) { c.logger = l } }

// WithStatus adds a named part to what the instance reports about itself in
// discovery (wire.InstanceInfo.Status): fn's result, encoded as JSON, on
// every announcement. `switchboard describe` shows it; package resilience
// uses it for breaker states, shedding limits and the retry budget. fn is
// called on every heartbeat and must be fast and safe for concurrent use.
func WithStatus(name string, fn func() any) ServiceOption {
	return func(c *serviceConfig) { c.status = append(c.status, statusReporter{name, fn}) }
}

// Reports reports whether the service has a status reporter named name
// (WithStatus): for example whether protections are installed already.
func (s *Service) Reports(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.ContainsFunc(s.cfg.status, func(r statusReporter) bool { return r.name == name })
}

// WithDrainTimeout bounds how long Shutdown waits for in-flight work when its
// context has no deadline (default 10s).
func WithDrainTimeout(d time.Duration) ServiceOption { return func(c *serviceConfig) { c.drain = d } }

var semverRE = regexp.MustCompile(`^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$`)

// NewService returns a service instance named name at semantic version
// version ("1.4.2"). It panics on an invalid name or version, which are
// programming errors.
func NewService(name, version string, opts ...ServiceOption) *Service {
	if err := wire.ValidateName("service", name); err != nil {
		panic(err)
	}
	if !semverRE.MatchString(version) {
		panic(fmt.Sprintf("switchboard: service %q: version %q is not a semantic version like 1.2.3", name, version))
	}
	cfg := serviceConfig{metadata: map[string]string{}, heartbeat: 5 * time.Second, drain: 10 * time.Second}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.logger == nil {
		cfg.logger = slog.Default()
	}
	host, _ := os.Hostname()
	id := strings.ReplaceAll(uuid.NewString(), "-", "")[:22]
	s := &Service{
		name: name, version: version, id: id, cfg: cfg, hostname: host,
		endpoints: map[string]*endpoint{},
		logger:    cfg.logger.With("service", name, "instance", id),
	}
	s.chainHandlers()
	return s
}

func (s *Service) chainHandlers() {
	s.handler = chain(func(ctx context.Context, call *Call) (any, error) {
		return s.endpoints[call.Endpoint].handler(ctx, call)
	}, s.cfg.middleware)
}

// Apply adds options to a service that is not started yet, as if they had
// been given to NewService after the others: middleware added here wraps
// every endpoint and consumer, including those registered before. It is
// how a runner such as package app installs platform defaults (metrics,
// tracing, protections) on services built elsewhere. After Start it
// returns FailedPrecondition and changes nothing.
func (s *Service) Apply(opts ...ServiceOption) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != stateNew {
		return bus.Errorf(bus.FailedPrecondition, "switchboard: service %q: options applied after Start", s.name)
	}
	for _, o := range opts {
		o(&s.cfg)
	}
	if s.cfg.logger == nil {
		s.cfg.logger = slog.Default()
	}
	s.logger = s.cfg.logger.With("service", s.name, "instance", s.id)
	s.chainHandlers()
	return nil
}

// Name returns the service name.
func (s *Service) Name() string { return s.name }

// Version returns the service version.
func (s *Service) Version() string { return s.version }

// ID returns this instance's unique id (used for point-to-point calls).
func (s *Service) ID() string { return s.id }

// Conn returns the bus connection the service runs on (nil before Start).
func (s *Service) Conn() *bus.Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conn
}

func (s *Service) client() *Client {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cl == nil {
		return &Client{err: bus.Errorf(bus.FailedPrecondition, "switchboard: service %q is not started: call Start before making calls", s.name)}
	}
	return s.cl
}

type endpoint struct {
	info        wire.EndpointInfo
	maxInFlight int64
	inFlight    atomic.Int64
	newReq      func() any
	handler     Handler

	requests, errors, nanos atomic.Int64
	lastErr                 atomic.Value  // string
	expectP99               time.Duration // ExpectLatency; 0 if none
}

func (s *Service) addEndpoint(e *endpoint) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != stateNew {
		panic(fmt.Sprintf("switchboard: endpoint %s.%s registered after Start", s.name, e.info.Name))
	}
	if _, dup := s.endpoints[e.info.Name]; dup {
		panic(fmt.Sprintf("switchboard: endpoint %s.%s registered twice", s.name, e.info.Name))
	}
	s.endpoints[e.info.Name] = e
}

// Start connects the service to the bus: it serves its endpoints, starts its
// event consumers and announces itself. conn stays owned by the caller.
func (s *Service) Start(ctx context.Context, conn *bus.Conn) error {
	s.mu.Lock()
	if s.state != stateNew {
		s.mu.Unlock()
		return bus.Errorf(bus.FailedPrecondition, "switchboard: service %q already started", s.name)
	}
	s.state = stateRunning
	s.conn = conn
	s.started = time.Now()
	s.stop = make(chan struct{})
	s.cl = NewClient(conn, append(append([]ClientOption{WithCaller(s.name)}, s.cfg.clientOpts...), s.observerClientOptions()...)...)
	s.mu.Unlock()

	shared, own := wire.ServiceSubjects(s.name, s.id)
	serve := func(subject, queue string, h bus.RequestHandler) error {
		sub, err := conn.Serve(ctx, subject, queue, h)
		if err != nil {
			return err
		}
		s.mu.Lock()
		s.subs = append(s.subs, sub)
		s.mu.Unlock()
		return nil
	}
	err := errors.Join(
		serve(shared, wire.ServiceQueue(s.name), s.serveRequest),
		serve(own, "", s.serveRequest),
		serve(wire.SubjectPing, "", s.answerPing),
	)
	if err == nil && !s.cfg.noFaults {
		err = serve(wire.FaultSubject(s.id), "", s.serveFault)
	}
	if err == nil {
		err = s.serveNATSMicro(ctx, serve)
	}
	for _, c := range s.consumers {
		if err != nil {
			break
		}
		err = c.start(ctx, s)
	}
	if err != nil {
		_ = s.Shutdown(context.Background())
		return fmt.Errorf("switchboard: start %s: %w", s.name, err)
	}
	s.announce(ctx, wire.SubjectAnnounce)
	s.loops.Add(1)
	go s.heartbeatLoop()
	s.logger.Info("service started", "version", s.version, "endpoints", len(s.endpoints), "consumers", len(s.consumers))
	return nil
}

func (s *Service) heartbeatLoop() {
	defer s.loops.Done()
	t := time.NewTicker(s.cfg.heartbeat)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), max(s.cfg.heartbeat, 2*time.Second))
			s.announce(ctx, wire.SubjectAnnounce)
			cancel()
		}
	}
}

// Info describes this instance as discovery announces it.
func (s *Service) Info() wire.InstanceInfo {
	status := s.status() // outside s.mu: reporters are the user's code
	s.mu.Lock()
	defer s.mu.Unlock()
	info := wire.InstanceInfo{
		Service: s.name, ID: s.id, Version: s.version, Description: s.cfg.description,
		Metadata: s.cfg.metadata, Host: s.hostname, PID: os.Getpid(), Started: s.started,
		HeartbeatMS: s.cfg.heartbeat.Milliseconds(), Publishes: s.publishes,
		Stats: map[string]wire.EndpointStats{},
	}
	names := make([]string, 0, len(s.endpoints))
	for n := range s.endpoints {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		e := s.endpoints[n]
		info.Endpoints = append(info.Endpoints, e.info)
		st := wire.EndpointStats{Requests: e.requests.Load(), Errors: e.errors.Load(), ProcessingTime: e.nanos.Load()}
		st.LastError, _ = e.lastErr.Load().(string)
		info.Stats[n] = st
	}
	for _, c := range s.consumers {
		info.Subscribes = append(info.Subscribes, c.info)
	}
	if f := s.faults.state(); len(f) > 0 {
		info.Faults = f
	}
	info.Status = status
	return info
}

// status runs the status reporters. One that fails or panics reports its
// error instead of breaking the announcement.
func (s *Service) status() map[string]json.RawMessage {
	if len(s.cfg.status) == 0 {
		return nil
	}
	out := make(map[string]json.RawMessage, len(s.cfg.status))
	for _, r := range s.cfg.status {
		out[r.name] = reportStatus(r.fn)
	}
	return out
}

func reportStatus(fn func() any) (b json.RawMessage) {
	defer func() {
		if r := recover(); r != nil {
			b, _ = json.Marshal(map[string]string{"error": fmt.Sprint("status reporter panicked: ", r)})
		}
	}()
	b, err := json.Marshal(fn())
	if err != nil {
		b, _ = json.Marshal(map[string]string{"error": err.Error()})
	}
	return b
}

func (s *Service) announce(ctx context.Context, subject string) {
	body, err := jsonMarshal(s.Info())
	if err == nil {
		err = s.conn.Send(ctx, &bus.Message{Subject: subject, Header: bus.Header{wire.HeaderContentType: wire.ContentTypeJSON}, Body: body})
	}
	if err != nil && !s.draining.Load() {
		s.logger.Warn("discovery announce failed", "subject", subject, "err", err)
	}
}

func (s *Service) answerPing(ctx context.Context, m *bus.Message) *bus.Message {
	if want := m.Header.Get(wire.HeaderService); want != "" && want != s.name {
		return nil
	}
	s.announce(ctx, wire.SubjectAnnounce)
	return nil
}

// serveRequest runs one request through validation, the bulkhead, decoding,
// middleware and the handler, and always produces a reply.
func (s *Service) serveRequest(ctx context.Context, m *bus.Message) *bus.Message {
	s.inflight.Add(1)
	defer s.inflight.Done()
	start := time.Now()
	reply := &bus.Message{Header: bus.Header{wire.HeaderInstance: s.id}}
	name := wire.EndpointOf(m.Subject)
	env, err := wire.DecodeEnvelope(m.Header)
	if err != nil {
		wire.EncodeError(reply.Header, err)
		s.observeRequest(name, "", err, start)
		return reply
	}
	env.Service, env.Endpoint = s.name, name
	ct := env.ContentType
	e := s.endpoints[name]
	if e == nil {
		err := s.unknownEndpoint(name)
		wire.EncodeError(reply.Header, err)
		s.observeRequest(name, env.Caller, err, start)
		return reply
	}
	fault := s.faults.endpoint(name)
	rsp, err := s.dispatch(ctx, e, env, m, fault)
	if fault.dropped() {
		e.requests.Add(1)
		e.nanos.Add(int64(time.Since(start)))
		s.observeRequest(name, env.Caller, err, start)
		return nil // injected: the caller hears nothing and waits for its deadline
	}
	if err == nil {
		body, merr := wire.Marshal(rsp, ct)
		if merr != nil {
			err = bus.Errorf(bus.Internal, "switchboard: %s.%s: encode reply: %v", s.name, name, merr)
		} else {
			reply.Body = body
			if ct != wire.ContentTypeJSON {
				reply.Header[wire.HeaderContentType] = ct
			}
		}
	}
	e.requests.Add(1)
	e.nanos.Add(int64(time.Since(start)))
	if err != nil {
		e.errors.Add(1)
		e.lastErr.Store(err.Error())
		wire.EncodeError(reply.Header, err)
		reply.Header[wire.HeaderVersion] = s.version // helps tell which version failed
	}
	s.observeRequest(name, env.Caller, err, start)
	return reply
}

func (s *Service) dispatch(ctx context.Context, e *endpoint, env wire.Envelope, m *bus.Message, fault *activeFault) (rsp any, err error) {
	if s.draining.Load() {
		return nil, bus.Errorf(bus.Unavailable, "switchboard: %s is shutting down", s.name).
			WithDetail("unprocessed", s.name+"."+e.info.Name)
	}
	if !env.Deadline.IsZero() && !time.Now().Before(env.Deadline) {
		return nil, bus.Errorf(bus.DeadlineExceeded, "switchboard: %s.%s: the caller's deadline passed before the handler started", s.name, e.info.Name)
	}
	// The handler's context: the caller's deadline and the Call.
	hc := &handlerCtx{}
	hc.Init(ctx, env.Deadline)
	defer hc.Cancel()
	ctx = hc
	if n := e.inFlight.Add(1); n > e.maxInFlight {
		e.inFlight.Add(-1)
		return nil, bus.Errorf(bus.ResourceExhausted, "switchboard: %s.%s: %d calls in flight, the limit is %d", s.name, e.info.Name, n-1, e.maxInFlight).
			WithDetail("retry_after", "100ms").WithDetail("unprocessed", s.name+"."+e.info.Name)
	}
	defer e.inFlight.Add(-1)
	req := e.newReq()
	if err := wire.Unmarshal(m.Body, env.ContentType, req); err != nil {
		return nil, fmt.Errorf("switchboard: %s.%s: request: %w", s.name, e.info.Name, err)
	}
	if fault != nil {
		if err := s.injectCall(ctx, fault, e.info.Name); err != nil {
			return nil, err
		}
	}
	hc.call = Call{Service: s.name, Endpoint: e.info.Name, Envelope: env, Header: m.Header, Request: req}
	call := &hc.call
	defer func() {
		if r := recover(); r != nil {
			s.logger.Error("handler panicked", "endpoint", e.info.Name, "panic", r, "stack", string(debug.Stack()))
			rsp, err = nil, bus.Errorf(bus.Internal, "switchboard: %s.%s: handler panicked: %v", s.name, e.info.Name, r)
		}
	}()
	return s.handler(ctx, call)
}

func (s *Service) unknownEndpoint(name string) error {
	names := make([]string, 0, len(s.endpoints))
	for n := range s.endpoints {
		names = append(names, n)
	}
	slices.Sort(names)
	return bus.Errorf(bus.Unimplemented, "switchboard: service %q has no endpoint %q; its endpoints are: %s", s.name, name, strings.Join(names, ", ")).
		WithDetail("endpoints", strings.Join(names, ","))
}

// Shutdown stops the service gracefully: it stops taking requests and events,
// lets in-flight handlers finish until ctx ends (or the drain timeout when
// ctx has no deadline), leaves discovery, and releases its subscriptions.
// The bus connection stays open; it belongs to the caller.
func (s *Service) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.state != stateRunning {
		s.mu.Unlock()
		return nil
	}
	s.state = stateStopped
	subs, csubs := s.subs, s.csubs
	s.mu.Unlock()
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.cfg.drain)
		defer cancel()
	}
	close(s.stop)
	s.loops.Wait()
	s.faults.stopTimers()
	// Leave discovery first so callers stop choosing this instance.
	s.announce(ctx, wire.SubjectLeave)
	var errs []error
	for _, sub := range append(subs, csubs...) {
		// Stop waits for the subscription's running handlers.
		if err := sub.Stop(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	s.draining.Store(true)
	done := make(chan struct{})
	go func() { s.inflight.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("switchboard: %s: in-flight work did not finish: %w", s.name, ctx.Err()))
	}
	s.logger.Info("service stopped")
	return errors.Join(errs...)
}
