package tracing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/bus"
)

// DefaultRatio is the share of new traces recorded in production when
// OTEL_TRACES_SAMPLER is not set: parent-based, 1 in 10. A call whose
// caller sent trace context follows the caller's decision.
const DefaultRatio = 0.1

// Options configure a Pipeline. The zero value is the production default:
// parent-based sampling at DefaultRatio (or what OTEL_TRACES_SAMPLER says),
// OTLP/HTTP export when OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set, nothing over the bus.
type Options struct {
	// Bus, if set, receives finished spans on Subject, batched.
	Bus *bus.Conn
	// BatchTimeout is the longest a finished span waits before its batch
	// goes over the bus (default 1s). Spans go sooner when a batch fills.
	BatchTimeout time.Duration
	// Sampler decides which traces are recorded. Nil means
	// OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG if set, else
	// parent-based with ratio DefaultRatio (Dev: everything).
	Sampler sdktrace.Sampler
	// Dev records every trace unless OTEL_TRACES_SAMPLER says otherwise.
	Dev bool
	// NoOTLP turns off OTLP export even when the environment asks for it.
	NoOTLP bool
	// SpanProcessors receive every span too, for tests (a
	// tracetest.InMemoryExporter in a SimpleSpanProcessor) or other
	// exporters. The Pipeline shuts them down.
	//
	// Without them and without OTLP, spans go only over the bus, and the
	// middleware records the spans of calls and events itself rather than
	// through the SDK (see lightSpan): they implement trace.Span, but are
	// not sdktrace.ReadWriteSpan, and they keep no events. Spans a handler
	// starts itself come from the SDK either way.
	SpanProcessors []sdktrace.SpanProcessor
	// Propagator carries trace context in headers (default W3C trace
	// context).
	Propagator propagation.TextMapPropagator
	// Logger reports export failures (default slog.Default()).
	Logger *slog.Logger
}

// Pipeline is a process's tracing: the sampler and the span exporters that
// every service's tracer provider shares. Create it with New, install it
// with Instrument (or ServiceOptions / ClientOptions), and Shutdown it after
// the services stopped to send the last spans. It is safe for concurrent
// use.
type Pipeline struct {
	disabled    bool
	sampler     sdktrace.Sampler
	samplerDesc string
	// root is the sampler for new traces when sampler is
	// ParentBased(root) (New made it, or Options gave one made by ParentBased);
	// itself; nil when the sampler came from Options.
	root         sdktrace.Sampler
	prop         propagation.TextMapPropagator
	batchTimeout time.Duration
	logger       *slog.Logger

	// light says every span goes to the bus batchers and nowhere else (no
	// OTLP, no processors of the caller's): the middleware may then record
	// its sampled spans itself (see lightSpan), into sinks.
	light bool
	sinks atomic.Pointer[[]*batcher]

	mu         sync.Mutex
	processors []sdktrace.SpanProcessor
	exporting  []string // what spans go to, for Describe
	providers  []*sdktrace.TracerProvider
	byKey      map[[3]string]provider
}

// provider is the tracer provider of one service and its resource.
type provider struct {
	tp  *sdktrace.TracerProvider
	res *resource.Resource
}

// New builds a Pipeline from o and the standard OpenTelemetry environment
// variables (OTEL_SDK_DISABLED, OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG,
// OTEL_EXPORTER_OTLP_*; OTEL_TRACES_EXPORTER=none turns OTLP off). A
// malformed sampler setting is an InvalidArgument error, so a typo does not
// silently trace everything or nothing. With OTEL_SDK_DISABLED=true it
// returns a Pipeline that installs nothing.
func New(ctx context.Context, o Options) (*Pipeline, error) {
	if strings.EqualFold(strings.TrimSpace(os.Getenv("OTEL_SDK_DISABLED")), "true") {
		for _, sp := range o.SpanProcessors {
			_ = sp.Shutdown(ctx)
		}
		return &Pipeline{disabled: true}, nil
	}
	p := &Pipeline{sampler: o.Sampler, prop: o.Propagator}
	if p.prop == nil {
		p.prop = propagation.TraceContext{}
	}
	switch {
	case p.sampler != nil:
		p.samplerDesc = p.sampler.Description()
		if pb, ok := p.sampler.(parentBased); ok {
			p.root = pb.root
		}
	case os.Getenv("OTEL_TRACES_SAMPLER") != "":
		s, root, err := samplerFromEnv(nil)
		if err != nil {
			return nil, err
		}
		p.sampler, p.root = s, root
		p.samplerDesc = "OTEL_TRACES_SAMPLER=" + os.Getenv("OTEL_TRACES_SAMPLER")
		if arg := os.Getenv("OTEL_TRACES_SAMPLER_ARG"); arg != "" {
			p.samplerDesc += " " + arg
		}
	case o.Dev:
		p.root = sdktrace.AlwaysSample()
		p.sampler = ParentBased(p.root)
		p.samplerDesc = "every trace"
	default:
		p.root = sdktrace.TraceIDRatioBased(DefaultRatio)
		p.sampler = ParentBased(p.root)
		p.samplerDesc = fmt.Sprintf("parent-based, %g%% of new traces", DefaultRatio*100)
	}
	logger := o.Logger
	if logger == nil {
		logger = slog.Default()
	}
	p.batchTimeout, p.logger = o.BatchTimeout, logger
	if p.batchTimeout <= 0 {
		p.batchTimeout = time.Second
	}
	p.light = len(o.SpanProcessors) == 0
	if o.Bus != nil {
		b := p.busProcessor(o.Bus)
		p.processors = append(p.processors, b)
		p.sinks.Store(&[]*batcher{b})
		p.exporting = append(p.exporting, "bus "+Subject)
	}
	if !o.NoOTLP && otlpWanted() {
		p.light = false
		exp, err := otlptracehttp.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("tracing: OTLP exporter: %w", err)
		}
		p.processors = append(p.processors, sdktrace.NewBatchSpanProcessor(exp))
		p.exporting = append(p.exporting, "OTLP/HTTP")
	}
	p.processors = append(p.processors, o.SpanProcessors...)
	return p, nil
}

// busProcessor batches the spans of conn's services onto the bus (see
// batcher: no goroutine wake-up per recorded span).
func (p *Pipeline) busProcessor(conn *bus.Conn) *batcher {
	return newBatcher(&busExporter{conn: conn, log: p.logger}, p.batchTimeout, 512, 8192, p.logger)
}

// AttachBus sends the spans of every service the pipeline traces (those
// instrumented already and those to come) over conn from now on, as
// Options.Bus does. It is for runners that install tracing before they
// connect, so that tracing wraps every other middleware. A second call
// adds a second destination.
func (p *Pipeline) AttachBus(conn *bus.Conn) {
	if p.disabled {
		return
	}
	sp := p.busProcessor(conn)
	p.mu.Lock()
	defer p.mu.Unlock()
	var sinks []*batcher
	if old := p.sinks.Load(); old != nil {
		sinks = append(sinks, *old...)
	}
	sinks = append(sinks, sp)
	p.sinks.Store(&sinks)
	p.processors = append(p.processors, sp)
	p.exporting = append(p.exporting, "bus "+Subject)
	for _, tp := range p.providers {
		tp.RegisterSpanProcessor(shared{sp})
	}
}

// otlpWanted reports whether the environment names an OTLP endpoint.
func otlpWanted() bool {
	if strings.EqualFold(os.Getenv("OTEL_TRACES_EXPORTER"), "none") {
		return false
	}
	return os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// SamplerFromEnv returns the sampler OTEL_TRACES_SAMPLER and
// OTEL_TRACES_SAMPLER_ARG name, or def when the variable is unset. It
// knows always_on, always_off, traceidratio, parentbased_always_on,
// parentbased_always_off and parentbased_traceidratio (ratio from the
// argument, default 1). Anything else, or a ratio outside 0..1, is an
// InvalidArgument error.
func SamplerFromEnv(def sdktrace.Sampler) (sdktrace.Sampler, error) {
	s, _, err := samplerFromEnv(def)
	return s, err
}

// samplerFromEnv is SamplerFromEnv, and for the parent-based samplers also
// their sampler for new traces (root).
func samplerFromEnv(def sdktrace.Sampler) (s, root sdktrace.Sampler, err error) {
	name := strings.ToLower(strings.TrimSpace(os.Getenv("OTEL_TRACES_SAMPLER")))
	if name == "" {
		return def, nil, nil
	}
	ratio := func() (float64, error) {
		arg := strings.TrimSpace(os.Getenv("OTEL_TRACES_SAMPLER_ARG"))
		if arg == "" {
			return 1, nil
		}
		r, err := strconv.ParseFloat(arg, 64)
		if err != nil || r < 0 || r > 1 {
			return 0, bus.Errorf(bus.InvalidArgument, "tracing: OTEL_TRACES_SAMPLER_ARG=%q: want a ratio between 0 and 1", arg)
		}
		return r, nil
	}
	switch name {
	case "always_on":
		return sdktrace.AlwaysSample(), nil, nil
	case "always_off":
		return sdktrace.NeverSample(), nil, nil
	case "parentbased_always_on":
		root = sdktrace.AlwaysSample()
		return ParentBased(root), root, nil
	case "parentbased_always_off":
		root = sdktrace.NeverSample()
		return ParentBased(root), root, nil
	case "traceidratio", "parentbased_traceidratio":
		r, err := ratio()
		if err != nil {
			return nil, nil, err
		}
		if name == "traceidratio" {
			return sdktrace.TraceIDRatioBased(r), nil, nil
		}
		root = sdktrace.TraceIDRatioBased(r)
		return ParentBased(root), root, nil
	}
	return nil, nil, bus.Errorf(bus.InvalidArgument, "tracing: OTEL_TRACES_SAMPLER=%q: want always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off or parentbased_traceidratio", name)
}

// Enabled reports whether the pipeline traces anything (false with
// OTEL_SDK_DISABLED=true).
func (p *Pipeline) Enabled() bool { return !p.disabled }

// Describe says in a few words where spans go and how they are sampled, for
// banners and logs.
func (p *Pipeline) Describe() string {
	if p.disabled {
		return "off (OTEL_SDK_DISABLED)"
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	to := "nowhere"
	if len(p.exporting) > 0 {
		to = strings.Join(p.exporting, ", ")
	}
	return p.samplerDesc + " → " + to
}

// TracerProvider returns the tracer provider for one service (or client)
// named name: its resource says service.name, service.version and
// service.instance.id (plus OTEL_RESOURCE_ATTRIBUTES), and it shares the
// pipeline's sampler and exporters. The same three values give the same
// provider. The Pipeline's Shutdown covers it.
func (p *Pipeline) TracerProvider(name, version, instance string) *sdktrace.TracerProvider {
	return p.provider(name, version, instance).tp
}

func (p *Pipeline) provider(name, version, instance string) provider {
	key := [3]string{name, version, instance}
	p.mu.Lock()
	if pr, ok := p.byKey[key]; ok {
		p.mu.Unlock()
		return pr
	}
	p.mu.Unlock()
	attrs := resource.WithAttributes(keyServiceName.String(name))
	opts := []resource.Option{resource.WithFromEnv(), resource.WithTelemetrySDK(), attrs}
	if version != "" {
		opts = append(opts, resource.WithAttributes(keyServiceVersion.String(version)))
	}
	if instance != "" {
		opts = append(opts, resource.WithAttributes(keyServiceInstance.String(instance)))
	}
	res, err := resource.New(context.Background(), opts...)
	if err != nil {
		// Only a malformed OTEL_RESOURCE_ATTRIBUTES gets here; keep what parsed.
		if res == nil {
			res = resource.NewSchemaless(keyServiceName.String(name))
		}
	}
	tpo := []sdktrace.TracerProviderOption{sdktrace.WithSampler(p.sampler), sdktrace.WithResource(res), sdktrace.WithIDGenerator(presetIDs{})}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, sp := range p.processors {
		tpo = append(tpo, sdktrace.WithSpanProcessor(shared{sp}))
	}
	if pr, ok := p.byKey[key]; ok { // made meanwhile
		return pr
	}
	pr := provider{tp: sdktrace.NewTracerProvider(tpo...), res: res}
	p.providers = append(p.providers, pr.tp)
	if p.byKey == nil {
		p.byKey = map[[3]string]provider{}
	}
	p.byKey[key] = pr
	return pr
}

// Instrumentation returns the middleware maker for one service.
func (p *Pipeline) Instrumentation(name, version, instance string) Instrumentation {
	pr := p.provider(name, version, instance)
	in := Instrumentation{TracerProvider: pr.tp, Propagator: p.prop}
	if p.root != nil {
		_, w3c := p.prop.(propagation.TraceContext)
		in.fast = &sampling{root: p.root, w3c: w3c}
		if p.light {
			in.fast.light = &lightRecorder{tp: pr.tp, res: pr.res, sinks: &p.sinks}
		}
	}
	return in
}

// Instrument installs tracing on services that have not started (with
// Service.Apply): every call they serve or make, every event they publish
// or consume. Each service gets a tracer provider of its own, so that
// exported spans name the right service. With tracing disabled it does
// nothing.
func (p *Pipeline) Instrument(svcs ...*switchboard.Service) error {
	if p.disabled {
		return nil
	}
	var errs []error
	for _, s := range svcs {
		in := p.Instrumentation(s.Name(), s.Version(), s.ID())
		errs = append(errs, s.Apply(in.ServiceOptions()...))
	}
	return errors.Join(errs...)
}

// ClientOptions returns options that trace the calls and publishes of a
// client that is not part of a service (a workload, a gateway); name is the
// service name its spans carry.
func (p *Pipeline) ClientOptions(name string) []switchboard.ClientOption {
	if p.disabled {
		return nil
	}
	return p.Instrumentation(name, "", "").ClientOptions()
}

// ForceFlush sends every finished span now (over the bus: once this returns
// the batches were handed to the broker), for tests and before reading a
// trace back.
func (p *Pipeline) ForceFlush(ctx context.Context) error {
	p.mu.Lock()
	procs := p.processors
	p.mu.Unlock()
	var errs []error
	for _, sp := range procs {
		errs = append(errs, sp.ForceFlush(ctx))
	}
	return errors.Join(errs...)
}

// Shutdown flushes the spans still waiting and stops the exporters. Call it
// after the services stopped and before the bus connection closes. Spans
// ended after Shutdown are dropped; a second Shutdown does nothing.
func (p *Pipeline) Shutdown(ctx context.Context) error {
	var errs []error
	p.mu.Lock()
	providers, procs := p.providers, p.processors
	p.providers, p.processors, p.byKey = nil, nil, nil
	p.mu.Unlock()
	for _, tp := range providers {
		errs = append(errs, tp.Shutdown(ctx)) // the shared processors ignore it
	}
	for _, sp := range procs {
		errs = append(errs, sp.Shutdown(ctx))
	}
	return errors.Join(errs...)
}

// shared is a processor that several tracer providers use: only the
// Pipeline shuts it down.
type shared struct{ sdktrace.SpanProcessor }

func (shared) Shutdown(context.Context) error { return nil }

// busExporter sends spans over the bus as Batch messages on Subject.
type busExporter struct {
	conn *bus.Conn
	log  *slog.Logger
	warn sync.Once
}

// exportSpans is called by the batcher, one batch at a time.
func (e *busExporter) exportSpans(ctx context.Context, ro []finished) error {
	limit := maxBatchMsgLen
	if m := e.conn.MaxMessageSize(); m > 0 {
		limit = min(limit, m/2)
	}
	bodies := encodeOTelBatches(ro, limit)
	var errs []error
	for _, b := range bodies {
		if err := e.conn.Send(ctx, &bus.Message{Subject: Subject, Header: bus.Header{"Content-Type": "application/json"}, Body: b}); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		// Tracing must not make noise on every batch while the broker is away.
		// The spans are dropped either way; returning the error would have
		// the SDK's global handler print it for every batch.
		e.warn.Do(func() {
			e.log.Warn("tracing: sending spans over the bus failed; spans are dropped while it fails (reported once)", "err", err)
		})
	}
	return nil
}

// Shutdown does nothing: the connection belongs to the caller.
func (e *busExporter) Shutdown(context.Context) error { return nil }
