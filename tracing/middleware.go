package tracing

import (
	"context"
	"slices"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/wire"
)

// ScopeName is the instrumentation scope of the spans this package makes.
const ScopeName = "github.com/switchboard-dev/switchboard/tracing"

// HeaderCarrier adapts message headers to the OpenTelemetry propagation
// API, so that a propagator reads and writes traceparent and tracestate
// there.
type HeaderCarrier bus.Header

var _ propagation.TextMapCarrier = HeaderCarrier(nil)

// Get returns the value of key.
func (c HeaderCarrier) Get(key string) string { return c[key] }

// Set sets key to value.
func (c HeaderCarrier) Set(key, value string) { c[key] = value }

// Keys lists the keys present.
func (c HeaderCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// Instrumentation makes the tracing middleware. Its zero value uses the
// global tracer provider (otel.GetTracerProvider) and the W3C trace context
// propagator.
type Instrumentation struct {
	// TracerProvider creates the spans; nil means otel.GetTracerProvider().
	TracerProvider trace.TracerProvider
	// Propagator carries trace context in headers; nil means W3C trace
	// context (traceparent, tracestate), which is what the wire protocol
	// specifies.
	Propagator propagation.TextMapPropagator

	// fast is set by Pipeline, which knows its sampler: see sampling.
	fast *sampling
}

func (in Instrumentation) tracer() trace.Tracer { return in.provider().Tracer(ScopeName) }

func (in Instrumentation) provider() trace.TracerProvider {
	if in.TracerProvider == nil {
		return otel.GetTracerProvider()
	}
	return in.TracerProvider
}

func (in Instrumentation) propagator() propagation.TextMapPropagator {
	if in.Propagator == nil {
		return propagation.TraceContext{}
	}
	return in.Propagator
}

// ServiceOptions returns the options that install all four middleware on a
// service: for calls it serves and events it consumes, and for the calls and
// publishes it makes. Give them to switchboard.NewService or Service.Apply.
func (in Instrumentation) ServiceOptions() []switchboard.ServiceOption {
	return []switchboard.ServiceOption{
		switchboard.WithMiddleware(in.Server()),
		switchboard.WithConsumerMiddleware(in.Consumer()),
		switchboard.WithClientOptions(in.ClientOptions()...),
	}
}

// ClientOptions returns the options that trace the calls and publishes of a
// client.
func (in Instrumentation) ClientOptions() []switchboard.ClientOption {
	return []switchboard.ClientOption{
		switchboard.WithClientMiddleware(in.Client()),
		switchboard.WithPublishMiddleware(in.Publish()),
	}
}

// Server returns middleware that runs each call a service serves in a SERVER
// span, a child of the caller's span when the request carries trace
// context. Calls refused before the middleware chain runs (bulkhead full,
// deadline already passed, unknown endpoint, malformed body) get no server
// span; the caller's CLIENT span records them.
func (in Instrumentation) Server() switchboard.Middleware {
	tracer, prop, tp, fast := in.tracer(), in.propagator(), in.provider(), in.fast
	spanNames := &names{sep: "/"}
	return func(next switchboard.Handler) switchboard.Handler {
		return func(ctx context.Context, call *switchboard.Call) (any, error) {
			name := spanName{spanNames, call.Service, call.Endpoint}
			var span trace.Span
			if sc, ok := fast.caller(call); ok {
				// Dropped, or recorded without the SDK: no context to extract.
				ctx, span = fast.decide(ctx, sc, name, trace.SpanKindServer).start(ctx, tracer, tp, name, trace.SpanKindServer, kindServer)
			} else {
				if call.Header != nil {
					ctx = prop.Extract(ctx, HeaderCarrier(call.Header))
				} else if call.Envelope.TraceParent != "" {
					ctx = prop.Extract(ctx, envCarrier{&call.Envelope})
				}
				ctx, span = fast.start(ctx, tracer, tp, name, trace.SpanKindServer, kindServer)
			}
			if span.IsRecording() {
				setAttributes(span, keyRPCSystem.String(System), keyRPCService.String(call.Service),
					keyRPCMethod.String(call.Endpoint), keyCaller.String(call.Envelope.Caller))
			}
			rsp, err := next(ctx, call)
			endRPC(span, err, serverFault)
			return rsp, err
		}
	}
}

// Client returns client middleware that runs each call in a CLIENT span and
// sends its trace context with the request. The parent is the span in ctx
// (the handler's SERVER span, say), or else the trace context already in
// the call's envelope.
func (in Instrumentation) Client() switchboard.ClientMiddleware {
	tracer, prop, tp, fast := in.tracer(), in.propagator(), in.provider(), in.fast
	spanNames := &names{sep: "/"}
	return func(next switchboard.Invoker) switchboard.Invoker {
		return func(ctx context.Context, call *switchboard.Call, reply any) error {
			if call.Header == nil {
				call.Header = bus.Header{}
			}
			name := spanName{spanNames, call.Service, call.Endpoint}
			d, parent := fast.send(ctx, prop, envCarrier{&call.Envelope}, name, trace.SpanKindClient)
			if fast.inject(d, call.Header) {
				// Not recorded, and nothing after this reads a client span:
				// the call carries its trace context without one.
				call.Envelope.TraceParent = call.Header[wire.HeaderTraceParent]
				call.Envelope.TraceState = call.Header[wire.HeaderTraceState]
				return next(ctx, call, reply)
			}
			ctx, span := d.start(parent, tracer, tp, name, trace.SpanKindClient, kindClient)
			if span.IsRecording() {
				setAttributes(span, keyRPCSystem.String(System), keyRPCService.String(call.Service),
					keyRPCMethod.String(call.Endpoint))
			}
			if !fast.injectSpan(span, call.Header) {
				inject(ctx, prop, call.Header)
			}
			// The envelope is what goes on the wire: keep it in step.
			call.Envelope.TraceParent = call.Header[wire.HeaderTraceParent]
			call.Envelope.TraceState = call.Header[wire.HeaderTraceState]
			err := next(ctx, call, reply)
			endRPC(span, err, anyFault)
			return err
		}
	}
}

// Publish returns publish middleware that runs each publish in a PRODUCER
// span and sends its trace context with the event.
func (in Instrumentation) Publish() switchboard.PublishMiddleware {
	tracer, prop, tp, fast := in.tracer(), in.propagator(), in.provider(), in.fast
	spanNames := &names{sep: " "}
	return func(next switchboard.Publisher) switchboard.Publisher {
		return func(ctx context.Context, p *switchboard.Publication) error {
			name := spanName{spanNames, "send", p.Topic}
			d, parent := fast.send(ctx, prop, HeaderCarrier(p.Header), name, trace.SpanKindProducer)
			if fast.inject(d, p.Header) {
				return next(ctx, p)
			}
			ctx, span := d.start(parent, tracer, tp, name, trace.SpanKindProducer, kindProducer)
			if span.IsRecording() {
				setAttributes(span, keyMsgSystem.String(System), keyMsgDestination.String(p.Topic),
					keyMsgOpType.String("send"), keyMsgOpName.String("publish"), keyMsgID.String(p.Event.ID))
			}
			if !fast.injectSpan(span, p.Header) {
				inject(ctx, prop, p.Header)
			}
			err := next(ctx, p)
			endMessaging(span, err)
			return err
		}
	}
}

// Consumer returns consumer middleware that runs each delivery in a
// CONSUMER span. The span is a child of the producer's span (so the
// handling is part of the trace that published the event) and also links to
// it, as the OpenTelemetry messaging conventions recommend; a redelivery
// makes another CONSUMER span under the same producer.
func (in Instrumentation) Consumer() switchboard.ConsumerMiddleware {
	tracer, prop, tp, fast := in.tracer(), in.propagator(), in.provider(), in.fast
	spanNames := &names{sep: " "}
	return func(next switchboard.EventHandler) switchboard.EventHandler {
		return func(ctx context.Context, ev *switchboard.EventCall) error {
			name := spanName{spanNames, "process", ev.Topic}
			var span trace.Span
			if ev.Info != nil && ev.Info.Header != nil {
				ctx = prop.Extract(ctx, HeaderCarrier(ev.Info.Header))
			}
			// A dropped parent has its child dropped: no span to link from.
			if sc := trace.SpanContextFromContext(ctx); sc.IsValid() && (fast == nil || sc.IsSampled()) {
				if fast != nil && fast.light != nil {
					ctx, span = fast.start(ctx, tracer, tp, name, trace.SpanKindConsumer, kindConsumer)
					span.AddLink(trace.Link{SpanContext: sc})
				} else {
					ctx, span = tracer.Start(ctx, name.get(), kindConsumer, trace.WithLinks(trace.Link{SpanContext: sc}))
				}
			} else {
				ctx, span = fast.start(ctx, tracer, tp, name, trace.SpanKindConsumer, kindConsumer)
			}
			if span.IsRecording() {
				setAttributes(span, keyMsgSystem.String(System), keyMsgDestination.String(ev.Topic),
					keyMsgOpType.String("process"), keyMsgOpName.String("process"))
				if ev.Info != nil {
					setAttributes(span, keyMsgID.String(ev.Info.ID), keyMsgGroup.String(ev.Info.Group),
						keyMsgAttempt.Int(ev.Info.Attempt))
				}
			}
			err := next(ctx, ev)
			endMessaging(span, err)
			return err
		}
	}
}

// The span kinds as start options, made once: each costs an allocation.
var (
	kindServer   = trace.WithSpanKind(trace.SpanKindServer)
	kindClient   = trace.WithSpanKind(trace.SpanKindClient)
	kindProducer = trace.WithSpanKind(trace.SpanKindProducer)
	kindConsumer = trace.WithSpanKind(trace.SpanKindConsumer)
)

// inject writes ctx's trace context into h, replacing what h carried.
func inject(ctx context.Context, prop propagation.TextMapPropagator, h bus.Header) {
	delete(h, wire.HeaderTraceParent)
	delete(h, wire.HeaderTraceState)
	prop.Inject(ctx, HeaderCarrier(h))
}

// setAttributes is span.SetAttributes for the middleware's own attributes:
// a lightSpan takes them without the allocation that arguments to an
// interface method cost (kvs does not escape).
func setAttributes(span trace.Span, kvs ...attribute.KeyValue) {
	if ls, ok := span.(*lightSpan); ok {
		ls.SetAttributes(kvs...)
		return
	}
	span.SetAttributes(slices.Clone(kvs)...)
}

// serverFault says which codes mark a SERVER span as failed: those that
// mean the server failed, as the OpenTelemetry RPC conventions say for
// gRPC. A NotFound or InvalidArgument is the caller's problem, recorded in
// rpc.response.status_code but not as an error of the server.
func serverFault(c bus.Code) bool {
	switch c {
	case bus.Unknown, bus.DeadlineExceeded, bus.Unimplemented, bus.Internal, bus.Unavailable, bus.DataLoss:
		return true
	}
	return false
}

func anyFault(c bus.Code) bool { return c != bus.OK }

func endRPC(span trace.Span, err error, fault func(bus.Code) bool) {
	if span.IsRecording() {
		code := bus.ErrorCode(err)
		setAttributes(span, keyRPCStatus.String(code.String()))
		if err != nil {
			setAttributes(span, keyErrorType.String(code.String()))
			if fault(code) {
				span.SetStatus(codes.Error, strings.TrimPrefix(err.Error(), code.String()+": "))
			}
		}
	}
	span.End()
}

func endMessaging(span trace.Span, err error) {
	if err != nil && span.IsRecording() {
		setAttributes(span, keyErrorType.String(bus.ErrorCode(err).String()))
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// envCarrier reads trace context from an envelope's fields.
type envCarrier struct{ e *wire.Envelope }

func (c envCarrier) Get(key string) string {
	switch key {
	case wire.HeaderTraceParent:
		return c.e.TraceParent
	case wire.HeaderTraceState:
		return c.e.TraceState
	}
	return ""
}
func (c envCarrier) Set(string, string) {}
func (c envCarrier) Keys() []string     { return []string{wire.HeaderTraceParent, wire.HeaderTraceState} }
