package tracing

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"
)

// A sampled call's two spans cost several microseconds and some thirty
// allocations in the SDK: a recording span built for every feature of the
// API, a snapshot of it when it ends, the processors' bookkeeping. When the
// Pipeline's only destination is the bus (no OTLP exporter and no span
// processors of the caller's, which may want everything the SDK records),
// all that leaves the process is the compact form of package tracing: name,
// kind, times, status, attributes, links. The middleware then records its
// spans itself, as lightSpan, in one allocation that holds the span and the
// context carrying it (spanCtx), and hands them to the same batchers as the
// SDK's spans. Spans that the handlers start themselves, with the service's
// tracer provider, still come from the SDK; the two kinds are children and
// parents of each other as usual, since both are spans of package trace.

// finished is what the exporter reads of an ended span: a snapshot from the
// SDK (sdktrace.ReadOnlySpan has these methods) or a lightSpan.
type finished interface {
	SpanContext() trace.SpanContext
	Parent() trace.SpanContext
	Name() string
	SpanKind() trace.SpanKind
	Resource() *resource.Resource
	StartTime() time.Time
	EndTime() time.Time
	Status() sdktrace.Status
	Attributes() []attribute.KeyValue
	Links() []sdktrace.Link
}

var _ finished = sdktrace.ReadOnlySpan(nil)

// lightRecorder is what the lightSpans of one service share: the service's
// tracer provider and resource (as the SDK's spans of that service would
// have them), and the Pipeline's batchers.
type lightRecorder struct {
	tp    trace.TracerProvider
	res   *resource.Resource
	sinks *atomic.Pointer[[]*batcher]
}

// Limits of a lightSpan, those of the SDK's defaults: past them,
// attributes and links are dropped.
const (
	lightMaxAttrs = 128
	lightMaxLinks = 128
)

// lightSpan is a sampled span that the middleware records without the SDK.
// It implements trace.Span as the SDK's recording span does, except that
// events (AddEvent, RecordError) are not kept: the compact form has no
// place for them.
type lightSpan struct {
	embedded.Span
	rec    *lightRecorder
	sc     trace.SpanContext
	parent trace.SpanContext
	kind   trace.SpanKind
	start  time.Time

	mu     sync.Mutex
	ended  bool
	name   string
	end    time.Time
	status sdktrace.Status
	attrs  []attribute.KeyValue
	links  []sdktrace.Link
	buf    [8]attribute.KeyValue // attrs' first backing array
}

var (
	_ trace.Span = (*lightSpan)(nil)
	_ finished   = (*lightSpan)(nil)
)

// start starts a span that d decided to record, a child of d.parent (none
// for a new trace), and returns ctx with it.
func (r *lightRecorder) start(ctx context.Context, d decision, name string, kind trace.SpanKind) (context.Context, *lightSpan) {
	var s *lightSpan
	if spanKey != nil {
		c := &spanCtx[lightSpan]{Context: ctx}
		s, ctx = &c.span, c
	} else {
		s = &lightSpan{}
		ctx = trace.ContextWithSpan(ctx, s)
	}
	s.rec, s.parent, s.kind, s.name = r, d.parent, kind, name
	s.sc = trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: d.tid, SpanID: newSpanID(), TraceFlags: d.flags | trace.FlagsSampled, TraceState: d.ts,
	})
	s.attrs = s.buf[:0]
	if len(d.attrs) > 0 {
		s.setAttributes(d.attrs)
	}
	s.start = time.Now()
	return ctx, s
}

// End ends the span and queues it for export. Only the first call counts.
func (s *lightSpan) End(options ...trace.SpanEndOption) {
	et := time.Now()
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return
	}
	if len(options) > 0 {
		if cfg := trace.NewSpanEndConfig(options...); !cfg.Timestamp().IsZero() {
			et = cfg.Timestamp()
		}
	}
	s.ended, s.end = true, et
	s.attrs = dedupe(s.attrs)
	s.mu.Unlock()
	if sinks := s.rec.sinks.Load(); sinks != nil {
		for _, b := range *sinks {
			b.add(s)
		}
	}
}

// dedupe keeps one attribute per key, in the place where the key first
// appeared, with the value it was last given: what the SDK's spans report.
func dedupe(kvs []attribute.KeyValue) []attribute.KeyValue {
	out := kvs[:0]
next:
	for _, kv := range kvs {
		for i := range out {
			if out[i].Key == kv.Key {
				out[i] = kv
				continue next
			}
		}
		out = append(out, kv)
	}
	clear(kvs[len(out):])
	return out
}

// AddEvent does nothing: events are not exported over the bus.
func (s *lightSpan) AddEvent(string, ...trace.EventOption) {}

// RecordError does nothing: the SDK records an error as an event, and
// events are not exported over the bus. SetStatus marks a failed span.
func (s *lightSpan) RecordError(error, ...trace.EventOption) {}

// AddLink links the span to another, as the SDK's spans do.
func (s *lightSpan) AddLink(link trace.Link) {
	if !link.SpanContext.IsValid() && len(link.Attributes) == 0 && link.SpanContext.TraceState().Len() == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended || len(s.links) >= lightMaxLinks {
		return
	}
	s.links = append(s.links, sdktrace.Link{SpanContext: link.SpanContext, Attributes: link.Attributes})
}

// IsRecording reports whether the span has not ended.
func (s *lightSpan) IsRecording() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.ended
}

// SpanContext returns the span's span context.
func (s *lightSpan) SpanContext() trace.SpanContext { return s.sc }

// SetStatus sets the status as the SDK does: Ok is final, Error overrides
// Unset, and only Error keeps its description.
func (s *lightSpan) SetStatus(code codes.Code, description string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended || s.status.Code > code {
		return
	}
	st := sdktrace.Status{Code: code}
	if code == codes.Error {
		st.Description = description
	}
	s.status = st
}

// SetName renames the span.
func (s *lightSpan) SetName(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.ended {
		s.name = name
	}
}

// SetAttributes sets attributes; a key set twice keeps the last value.
func (s *lightSpan) SetAttributes(kv ...attribute.KeyValue) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.ended {
		s.setAttributes(kv)
	}
}

func (s *lightSpan) setAttributes(kvs []attribute.KeyValue) {
	for _, kv := range kvs {
		if !kv.Valid() {
			continue
		}
		if len(s.attrs) == lightMaxAttrs {
			s.attrs = dedupe(s.attrs)
			if len(s.attrs) == lightMaxAttrs {
				return
			}
		}
		s.attrs = append(s.attrs, kv)
	}
}

// TracerProvider returns the service's tracer provider, with which a
// handler starts spans of its own.
func (s *lightSpan) TracerProvider() trace.TracerProvider { return s.rec.tp }

// The methods of finished, read by the exporter once the span ended.

func (s *lightSpan) Parent() trace.SpanContext    { return s.parent }
func (s *lightSpan) SpanKind() trace.SpanKind     { return s.kind }
func (s *lightSpan) Resource() *resource.Resource { return s.rec.res }
func (s *lightSpan) StartTime() time.Time         { return s.start }

func (s *lightSpan) Name() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.name
}

func (s *lightSpan) EndTime() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.end
}

func (s *lightSpan) Status() sdktrace.Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status
}

func (s *lightSpan) Attributes() []attribute.KeyValue {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.attrs
}

func (s *lightSpan) Links() []sdktrace.Link {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.links
}
