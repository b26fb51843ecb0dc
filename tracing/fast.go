package tracing

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/wire"
)

// Most calls in production are not sampled (DefaultRatio records one new
// trace in ten), yet each still needs a span context to pass on, so that
// the calls it makes follow the same decision. The SDK makes that span with
// allocations and work meant for recorded ones. When the Pipeline built the
// sampler itself, it knows the SDK's answer in advance: a child of an
// unsampled parent is dropped (parent-based), and a new trace is dropped
// when the root sampler says so for its trace ID. The middleware then makes
// the dropped span itself; everything else goes through the SDK. The span
// contexts are the ones the SDK would make: the parent's trace ID and trace
// state, a fresh random span ID, the sampled flag off.

// ParentBased returns sdktrace.ParentBased(root): a span follows its
// parent's decision, and root decides for new traces. Give it as
// Options.Sampler rather than sdktrace.ParentBased so that the Pipeline
// knows the sampler and spares unsampled calls the SDK's work (a Pipeline
// recognises only its own samplers; New uses this one when no sampler is
// given).
func ParentBased(root sdktrace.Sampler) sdktrace.Sampler {
	return parentBased{Sampler: sdktrace.ParentBased(root), root: root}
}

type parentBased struct {
	sdktrace.Sampler
	root sdktrace.Sampler
}

// sampling is what the middleware knows of a Pipeline's sampler: that it is
// parent-based with the default options, and its sampler for new traces.
type sampling struct {
	root sdktrace.Sampler
	// w3c says the propagator is W3C trace context only, so that a
	// traceparent can be read without it.
	w3c bool
	// light, when set, records the sampled spans of the middleware without
	// the SDK (see lightSpan): the Pipeline sends spans only over the bus.
	light *lightRecorder
}

// decision is what start decides for a span before making it.
type decision struct {
	// drop says the span is not recorded: it belongs to trace tid, with
	// trace state ts.
	drop bool
	// fresh says a new trace tid is recorded: the SDK makes the span with
	// that trace ID.
	fresh bool
	// light, when set, records the span without the SDK: in trace tid,
	// with trace state ts and flags (sampled added), a child of parent
	// (invalid for a new trace), with the attributes the sampler gave.
	light  *lightRecorder
	parent trace.SpanContext
	attrs  []attribute.KeyValue
	tid    trace.TraceID
	flags  trace.TraceFlags
	ts     trace.TraceState
}

// decide says what the sampler would decide for a span started in ctx
// whose parent is psc (ctx's span, or the remote caller's). It builds the
// span's name only when the root sampler decides on a new trace. A nil s
// decides nothing: the SDK does.
func (s *sampling) decide(ctx context.Context, psc trace.SpanContext, name spanName, kind trace.SpanKind) decision {
	if s == nil {
		return decision{}
	}
	switch {
	case psc.IsValid():
		if !psc.IsSampled() {
			return decision{drop: true, tid: psc.TraceID(), flags: psc.TraceFlags(), ts: psc.TraceState()}
		}
		if s.light != nil {
			// Parent-based: a sampled parent, local or remote, has its
			// child sampled (AlwaysSample: no attributes, the parent's
			// trace state).
			return decision{light: s.light, parent: psc, tid: psc.TraceID(), flags: psc.TraceFlags(), ts: psc.TraceState()}
		}
	case !psc.TraceID().IsValid():
		tid := newTraceID()
		res := s.root.ShouldSample(sdktrace.SamplingParameters{ParentContext: ctx, TraceID: tid, Name: name.get(), Kind: kind})
		switch {
		case res.Decision == sdktrace.Drop:
			return decision{drop: true, tid: tid, flags: psc.TraceFlags(), ts: res.Tracestate}
		case res.Decision == sdktrace.RecordAndSample && s.light != nil:
			return decision{light: s.light, tid: tid, flags: psc.TraceFlags(), ts: res.Tracestate, attrs: res.Attributes}
		}
		return decision{fresh: true, tid: tid}
	}
	return decision{}
}

// start starts a span in ctx as tracer.Start(ctx, name.get(), opt) would,
// making it without the SDK when the sampler is known to drop it, or when
// the span is recorded and the Pipeline sends spans only over the bus.
func (s *sampling) start(ctx context.Context, tracer trace.Tracer, tp trace.TracerProvider, name spanName, kind trace.SpanKind, opt trace.SpanStartOption) (context.Context, trace.Span) {
	return s.decide(ctx, trace.SpanContextFromContext(ctx), name, kind).start(ctx, tracer, tp, name, kind, opt)
}

// start starts the span d was decided for, in ctx.
func (d decision) start(ctx context.Context, tracer trace.Tracer, tp trace.TracerProvider, name spanName, kind trace.SpanKind, opt trace.SpanStartOption) (context.Context, trace.Span) {
	switch {
	case d.drop:
		return dropped(ctx, tp, d.tid, d.flags, d.ts)
	case d.light != nil:
		return d.light.start(ctx, d, name.get(), kind)
	case d.fresh:
		// Recorded: the SDK makes the span, with the trace ID just
		// decided on (presetIDs), so that its sampler decides the same.
		_, span := tracer.Start(context.WithValue(ctx, presetTraceID{}, d.tid), name.get(), opt)
		return trace.ContextWithSpan(ctx, span), span
	}
	return tracer.Start(ctx, name.get(), opt)
}

// send decides for the span of a call or publish started in ctx, whose
// parent is ctx's span or else the trace context the message already
// carries (traceparent, tracestate): the parent the propagator would
// extract. extracted is ctx with that parent when the propagator had to
// read it (the fast reading did not apply), else ctx.
func (s *sampling) send(ctx context.Context, prop propagation.TextMapPropagator, carrier propagation.TextMapCarrier, name spanName, kind trace.SpanKind) (d decision, extracted context.Context) {
	psc := trace.SpanContextFromContext(ctx)
	if !psc.IsValid() {
		if tp := carrier.Get(wire.HeaderTraceParent); tp != "" {
			if sc, ok := s.readParent(tp, carrier.Get(wire.HeaderTraceState)); ok {
				psc = sc
			} else {
				ctx = prop.Extract(ctx, carrier)
				psc = trace.SpanContextFromContext(ctx)
			}
		}
	}
	return s.decide(ctx, psc, name, kind), ctx
}

// readParent is the package's readParent when the propagator is W3C's, so
// that its reading is the propagator's, and when decide makes the span
// without the SDK: for an unsampled parent (dropped), or a sampled one with
// light set. Otherwise the SDK makes the span, under the context the
// propagator extracts.
func (s *sampling) readParent(traceparent, tracestate string) (trace.SpanContext, bool) {
	if s == nil || !s.w3c {
		return trace.SpanContext{}, false
	}
	sc, ok := readParent(traceparent, tracestate)
	if !ok || sc.IsSampled() && s.light == nil {
		return trace.SpanContext{}, false
	}
	return sc, true
}

// inject writes the trace context of a dropped span d was decided for into
// h, as the W3C propagator writes it (of the flags, the random one), without
// making the span: when
// nothing reads the span, only the context it sends on matters. ok is
// false, and h unchanged, when d is not such a decision or the propagator
// is not W3C's.
func (s *sampling) inject(d decision, h bus.Header) (ok bool) {
	if s == nil || !s.w3c || !d.drop {
		return false
	}
	setTraceContext(h, d.tid, newSpanID(), d.flags&trace.FlagsRandom, d.ts)
	return true
}

// injectSpan writes the trace context of span into h as the W3C
// propagator does, when span is a lightSpan and the propagator W3C's; ok is
// false, and h unchanged, otherwise.
func (s *sampling) injectSpan(span trace.Span, h bus.Header) (ok bool) {
	ls, light := span.(*lightSpan)
	if s == nil || !s.w3c || !light {
		return false
	}
	sc := ls.sc
	setTraceContext(h, sc.TraceID(), sc.SpanID(), sc.TraceFlags()&(trace.FlagsSampled|trace.FlagsRandom), sc.TraceState())
	return true
}

// setTraceContext replaces h's trace context with the one given.
func setTraceContext(h bus.Header, tid trace.TraceID, sid trace.SpanID, flags trace.TraceFlags, ts trace.TraceState) {
	delete(h, wire.HeaderTraceParent)
	delete(h, wire.HeaderTraceState)
	h[wire.HeaderTraceParent] = traceparent(tid, sid, flags)
	if ts.Len() > 0 {
		h[wire.HeaderTraceState] = ts.String()
	}
}

// traceparent formats a W3C traceparent of version 00.
func traceparent(tid trace.TraceID, sid trace.SpanID, flags trace.TraceFlags) string {
	var b [2 + 1 + 32 + 1 + 16 + 1 + 2]byte
	b[0], b[1], b[2] = '0', '0', '-'
	hex.Encode(b[3:35], tid[:])
	b[35] = '-'
	hex.Encode(b[36:52], sid[:])
	b[52] = '-'
	hex.Encode(b[53:55], []byte{byte(flags)})
	return string(b[:])
}

// dropped returns ctx with a span that is not recorded, in trace tid: in
// one allocation, the span and the context holding it together.
func dropped(ctx context.Context, tp trace.TracerProvider, tid trace.TraceID, flags trace.TraceFlags, ts trace.TraceState) (context.Context, trace.Span) {
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: tid, SpanID: newSpanID(), TraceFlags: flags &^ trace.FlagsSampled, TraceState: ts,
	})
	if spanKey == nil {
		sp := &droppedSpan{tp: tp, sc: sc}
		return trace.ContextWithSpan(ctx, sp), sp
	}
	c := &spanCtx[droppedSpan]{Context: ctx, span: droppedSpan{tp: tp, sc: sc}}
	return c, &c.span
}

// spanCtx is the context trace.ContextWithSpan(parent, &span) would make,
// with the span inside it, so that both take one allocation: it answers
// the key under which package trace keeps a context's span (spanKey) with
// its span, and every other key as its parent does. S is droppedSpan or
// lightSpan.
type spanCtx[S any] struct {
	context.Context
	span S
}

func (c *spanCtx[S]) Value(key any) any {
	if key == spanKey {
		return &c.span
	}
	return c.Context.Value(key)
}

// spanKey is the context key of package trace's span, learnt by asking:
// the one key trace.SpanFromContext asks its context for. It is nil, and
// dropped uses trace.ContextWithSpan, should package trace look a span up
// any other way (init checks that a spanCtx holds its span for it).
var spanKey any

func init() {
	probe := &keyProbe{}
	trace.SpanFromContext(probe)
	if probe.n != 1 || probe.key == nil {
		return
	}
	spanKey = probe.key
	c := &spanCtx[droppedSpan]{Context: context.Background(), span: droppedSpan{sc: trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}})}}
	if trace.SpanFromContext(c) != trace.Span(&c.span) || !trace.SpanContextFromContext(c).Equal(c.span.sc) {
		spanKey = nil
	}
}

// keyProbe is a context that counts the keys it is asked for and keeps
// the last.
type keyProbe struct {
	context.Context
	key any
	n   int
}

func (p *keyProbe) Value(key any) any {
	p.key = key
	p.n++
	return nil
}

// droppedSpan is a span the sampler dropped: it records nothing and carries
// its span context on. Its TracerProvider is the service's, as the SDK's
// own non-recording spans say. (It does not embed noop.Span, whose span
// context would make it 64 bytes larger.)
type droppedSpan struct {
	embedded.Span
	tp trace.TracerProvider
	sc trace.SpanContext
}

func (s *droppedSpan) SpanContext() trace.SpanContext        { return s.sc }
func (s *droppedSpan) TracerProvider() trace.TracerProvider  { return s.tp }
func (*droppedSpan) IsRecording() bool                       { return false }
func (*droppedSpan) SetStatus(codes.Code, string)            {}
func (*droppedSpan) SetAttributes(...attribute.KeyValue)     {}
func (*droppedSpan) End(...trace.SpanEndOption)              {}
func (*droppedSpan) RecordError(error, ...trace.EventOption) {}
func (*droppedSpan) AddEvent(string, ...trace.EventOption)   {}
func (*droppedSpan) AddLink(trace.Link)                      {}
func (*droppedSpan) SetName(string)                          {}

// presetTraceID is the context key under which start hands presetIDs the
// trace ID of a new trace it decided to record.
type presetTraceID struct{}

// presetIDs is the ID generator of the Pipeline's tracer providers: random
// IDs, as the SDK's own, except that a new trace takes the trace ID found
// under presetTraceID.
type presetIDs struct{}

func (presetIDs) NewIDs(ctx context.Context) (trace.TraceID, trace.SpanID) {
	if tid, ok := ctx.Value(presetTraceID{}).(trace.TraceID); ok && tid.IsValid() {
		return tid, newSpanID()
	}
	return newTraceID(), newSpanID()
}

func (presetIDs) NewSpanID(context.Context, trace.TraceID) trace.SpanID { return newSpanID() }

func newTraceID() (tid trace.TraceID) {
	for !tid.IsValid() {
		binary.NativeEndian.PutUint64(tid[:8], rand.Uint64())
		binary.NativeEndian.PutUint64(tid[8:], rand.Uint64())
	}
	return tid
}

func newSpanID() (sid trace.SpanID) {
	for !sid.IsValid() {
		binary.NativeEndian.PutUint64(sid[:], rand.Uint64())
	}
	return sid
}

// caller returns the span context of the caller of call when its trace
// context is one that readParent reads and the span is made without the
// SDK (see sampling.readParent).
func (s *sampling) caller(call *switchboard.Call) (trace.SpanContext, bool) {
	if s == nil || !s.w3c {
		return trace.SpanContext{}, false
	}
	tp, ts := call.Envelope.TraceParent, call.Envelope.TraceState
	if call.Header != nil {
		tp, ts = call.Header[wire.HeaderTraceParent], call.Header[wire.HeaderTraceState]
	}
	return s.readParent(tp, ts)
}

// readParent reads a traceparent in the form this package and every W3C
// implementation sends ("00-" 32 hex "-" 16 hex "-" 2 hex, lowercase) with
// no tracestate, and returns its span context as a remote parent, as the
// propagator would. ok is false for anything else (absent, another
// version, malformed, reserved flags, a tracestate): the propagator then
// reads it, with all the rules of the specification.
func readParent(traceparent, tracestate string) (sc trace.SpanContext, ok bool) {
	const n = 2 + 1 + 32 + 1 + 16 + 1 + 2
	tp := traceparent
	if len(tp) != n || tp[0] != '0' || tp[1] != '0' || tp[2] != '-' || tp[35] != '-' || tp[52] != '-' || tracestate != "" {
		return sc, false
	}
	var tid trace.TraceID
	var sid trace.SpanID
	var flags [1]byte
	if !lowerHex(tid[:], tp[3:35]) || !lowerHex(sid[:], tp[36:52]) || !lowerHex(flags[:], tp[53:55]) {
		return sc, false
	}
	f := trace.TraceFlags(flags[0])
	if f > trace.FlagsSampled|trace.FlagsRandom || !tid.IsValid() || !sid.IsValid() {
		// Version 00 reserves the other flags: the propagator refuses them.
		return sc, false
	}
	return trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: f, Remote: true}), true
}

// lowerHex decodes the lowercase hex digits of src into dst, which is half
// as long, and reports whether they all were.
func lowerHex(dst []byte, src string) bool {
	for i := range dst {
		hi, lo := hexVal[src[2*i]], hexVal[src[2*i+1]]
		if hi|lo == 0xff {
			return false
		}
		dst[i] = hi<<4 | lo
	}
	return true
}

// hexVal maps '0'-'9' and 'a'-'f' to their values, every other byte to 0xff.
var hexVal = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for i, c := range "0123456789abcdef" {
		t[c] = byte(i)
	}
	return t
}()

// names remembers the span names built from two parts, so that a call does
// not build its span's name anew. It keeps at most maxNames; past that it
// builds them.
type names struct {
	sep string
	m   atomic.Pointer[map[[2]string]string]
	mu  sync.Mutex
}

const maxNames = 1024

// spanName is a span's name not built yet: from a and b, by n.
type spanName struct {
	n    *names
	a, b string
}

func (s spanName) get() string { return s.n.get(s.a, s.b) }

func (c *names) get(a, b string) string {
	key := [2]string{a, b}
	if m := c.m.Load(); m != nil {
		if n, ok := (*m)[key]; ok {
			return n
		}
	}
	n := a + c.sep + b
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.m.Load()
	if old != nil && len(*old) >= maxNames {
		return n
	}
	m := make(map[[2]string]string, 1+lenOf(old))
	if old != nil {
		for k, v := range *old {
			m[k] = v
		}
	}
	m[key] = n
	c.m.Store(&m)
	return n
}

func lenOf(m *map[[2]string]string) int {
	if m == nil {
		return 0
	}
	return len(*m)
}
