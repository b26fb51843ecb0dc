package tracing_test

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/tracing"
	"github.com/switchboard-dev/switchboard/wire"
)

// What the SDK would do for an unsampled trace, the Pipeline does without
// it: every service along the calls keeps the trace ID and the unsampled
// flag, each span has a span ID of its own, nothing is recorded, and a
// trace state the caller sent goes on.
func TestUnsampledTracesKeepOneTraceAcrossServices(t *testing.T) {
	for _, tc := range []struct{ name, state string }{{"no-state", ""}, {"with-state", "k=v"}} {
		t.Run(tc.name, func(t *testing.T) {
			conn := embeddedBus(t)
			mem := tracetest.NewInMemoryExporter()
			p, err := tracing.New(testContext(t), tracing.Options{Sampler: tracing.ParentBased(sdktrace.NeverSample()),
				SpanProcessors: []sdktrace.SpanProcessor{sdktrace.NewSimpleSpanProcessor(mem)}})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { p.Shutdown(context.Background()) })
			type seen struct {
				header, state string
				span          trace.Span
			}
			atA, atC := make(chan seen, 1), make(chan seen, 1)
			a := switchboard.NewService("svca", "1.0.0", switchboard.WithLogger(quiet()))
			c := switchboard.NewService("svcc", "1.0.0", switchboard.WithLogger(quiet()))
			look := func(ctx context.Context) seen {
				call, _ := switchboard.CallFrom(ctx)
				return seen{call.Header[wire.HeaderTraceParent], call.Header[wire.HeaderTraceState], trace.SpanFromContext(ctx)}
			}
			epA.Handle(a, func(ctx context.Context, r *req) (*rep, error) {
				atA <- look(ctx)
				return epC.Call(ctx, a, r)
			})
			epC.Handle(c, func(ctx context.Context, r *req) (*rep, error) {
				atC <- look(ctx)
				return &rep{}, nil
			})
			start(t, conn, p, c, a)
			cl := switchboard.NewClient(conn, p.ClientOptions("tester")...)
			defer cl.Close()

			ctx := testContext(t)
			var parent trace.SpanContext
			if tc.state != "" {
				ts, err := trace.ParseTraceState(tc.state)
				if err != nil {
					t.Fatal(err)
				}
				parent = trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1, 2, 3}, SpanID: trace.SpanID{4, 5, 6}, TraceState: ts, Remote: true})
				ctx = trace.ContextWithRemoteSpanContext(ctx, parent)
			}
			if _, err := epA.Call(ctx, cl, &req{}); err != nil {
				t.Fatal(err)
			}
			sa, sc := <-atA, <-atC
			for _, s := range []seen{sa, sc} {
				if len(s.header) != 55 || s.header[53:] != "00" {
					t.Fatalf("traceparent %q: want a W3C value with the unsampled flag", s.header)
				}
				if s.state != tc.state {
					t.Errorf("tracestate %q, want %q", s.state, tc.state)
				}
				if s.span.IsRecording() || s.span.SpanContext().IsSampled() {
					t.Errorf("server span recording %v, sampled %v: want neither", s.span.IsRecording(), s.span.SpanContext().IsSampled())
				}
				if _, ok := s.span.TracerProvider().(*sdktrace.TracerProvider); !ok {
					t.Errorf("server span's tracer provider is %T, want the service's", s.span.TracerProvider())
				}
			}
			tidA, tidC := sa.span.SpanContext().TraceID(), sc.span.SpanContext().TraceID()
			if !tidA.IsValid() || tidA != tidC || sa.header[3:35] != tidA.String() || sc.header[3:35] != tidA.String() {
				t.Errorf("trace IDs: A's span %s, C's span %s, headers %q and %q: want one trace", tidA, tidC, sa.header, sc.header)
			}
			if parent.IsValid() && tidA != parent.TraceID() {
				t.Errorf("trace %s, want the caller's %s", tidA, parent.TraceID())
			}
			// Span IDs: A's server span is a child of the tester's client
			// span (the header's parent-id); C's header names A's client
			// span, a child of A's server span.
			ids := map[string]bool{sa.header[36:52]: true, sa.span.SpanContext().SpanID().String(): true,
				sc.header[36:52]: true, sc.span.SpanContext().SpanID().String(): true}
			if len(ids) != 4 {
				t.Errorf("span IDs %v: want four different ones", ids)
			}
			if n := len(mem.GetSpans()); n != 0 {
				t.Errorf("%d spans recorded, want none", n)
			}
		})
	}
}

// New traces are recorded by the root sampler's decision on their trace
// ID, whether the Pipeline or the SDK makes the span; and the services
// called follow it.
func TestNewTracesAreSampledByTheirTraceID(t *testing.T) {
	conn := embeddedBus(t)
	mem := tracetest.NewInMemoryExporter()
	root := sdktrace.TraceIDRatioBased(0.5)
	p, err := tracing.New(testContext(t), tracing.Options{Sampler: tracing.ParentBased(root),
		SpanProcessors: []sdktrace.SpanProcessor{sdktrace.NewSimpleSpanProcessor(mem)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Shutdown(context.Background()) })
	svc := switchboard.NewService("svcc", "1.0.0", switchboard.WithLogger(quiet()))
	const n = 400
	headers := make(chan string, n)
	epC.Handle(svc, func(ctx context.Context, r *req) (*rep, error) {
		call, _ := switchboard.CallFrom(ctx)
		headers <- call.Header[wire.HeaderTraceParent]
		return &rep{}, nil
	})
	start(t, conn, p, svc)
	cl := switchboard.NewClient(conn, p.ClientOptions("tester")...)
	defer cl.Close()
	for range n {
		if _, err := epC.Call(testContext(t), cl, &req{}); err != nil {
			t.Fatal(err)
		}
	}
	close(headers)
	sampled := map[string]bool{}
	for h := range headers {
		tid, err := trace.TraceIDFromHex(h[3:35])
		if err != nil {
			t.Fatalf("traceparent %q: %v", h, err)
		}
		want := root.ShouldSample(sdktrace.SamplingParameters{ParentContext: context.Background(), TraceID: tid}).Decision == sdktrace.RecordAndSample
		if got := h[53:] == "01"; got != want {
			t.Errorf("traceparent %q: sampled %v, the root sampler says %v", h, got, want)
		}
		if want {
			sampled[tid.String()] = true
		}
	}
	// 400 draws at 0.5: 35% to 65% is six standard deviations either way.
	// A decision made twice (the Pipeline's, then the SDK's on another
	// trace ID) would sample a quarter.
	if len(sampled) < n*35/100 || len(sampled) > n*65/100 {
		t.Errorf("%d of %d new traces sampled at ratio 0.5, want about half", len(sampled), n)
	}
	recorded := map[string]int{}
	for _, s := range mem.GetSpans() {
		recorded[s.SpanContext.TraceID().String()]++
	}
	for tid := range sampled {
		if recorded[tid] != 2 {
			t.Errorf("trace %s: %d spans recorded, want the client's and the server's", tid, recorded[tid])
		}
	}
	if len(recorded) != len(sampled) {
		t.Errorf("%d traces recorded, %d sampled", len(recorded), len(sampled))
	}
}

// An event published in an unsampled trace carries that trace on, unsampled,
// under a span ID of its own (the producer's, which nobody records); the
// consumer's span continues it, and nothing is recorded anywhere.
func TestUnsampledEventsKeepTheirTrace(t *testing.T) {
	conn := embeddedBus(t)
	mem := tracetest.NewInMemoryExporter()
	p, err := tracing.New(testContext(t), tracing.Options{Sampler: tracing.ParentBased(sdktrace.NeverSample()),
		SpanProcessors: []sdktrace.SpanProcessor{sdktrace.NewSimpleSpanProcessor(mem)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Shutdown(context.Background()) })
	type seen struct {
		header string
		span   trace.SpanContext
	}
	atA, atD := make(chan seen, 1), make(chan seen, 1)
	a := switchboard.NewService("svca", "1.0.0", switchboard.WithLogger(quiet()))
	d := switchboard.NewService("svcd", "1.0.0", switchboard.WithLogger(quiet()))
	epA.Handle(a, func(ctx context.Context, r *req) (*rep, error) {
		atA <- seen{span: trace.SpanContextFromContext(ctx)}
		return &rep{}, done.Publish(ctx, a, &event{N: r.N})
	})
	done.Subscribe(d, "svcd", func(ctx context.Context, ev *event) error {
		info, _ := switchboard.EventFrom(ctx)
		atD <- seen{header: info.Header[wire.HeaderTraceParent], span: trace.SpanContextFromContext(ctx)}
		return nil
	})
	start(t, conn, p, d, a)
	cl := switchboard.NewClient(conn, p.ClientOptions("tester")...)
	defer cl.Close()
	if _, err := epA.Call(testContext(t), cl, &req{}); err != nil {
		t.Fatal(err)
	}
	var sa, sd seen
	select {
	case sa = <-atA:
	case <-time.After(timeout):
		t.Fatal("svca was not called")
	}
	select {
	case sd = <-atD:
	case <-time.After(timeout):
		t.Fatal("the event was not consumed")
	}
	tid := sa.span.TraceID()
	if !tid.IsValid() || sd.span.TraceID() != tid || len(sd.header) != 55 || sd.header[3:35] != tid.String() || sd.header[53:] != "00" {
		t.Fatalf("handler in trace %s, event traceparent %q, consumer in trace %s: want one unsampled trace", tid, sd.header, sd.span.TraceID())
	}
	if sd.span.IsSampled() || !sd.span.SpanID().IsValid() {
		t.Errorf("consumer span context %v: want a valid unsampled span", sd.span)
	}
	ids := map[string]bool{sa.span.SpanID().String(): true, sd.header[36:52]: true, sd.span.SpanID().String(): true}
	if len(ids) != 3 {
		t.Errorf("span IDs of handler, producer and consumer %v: want three different ones", ids)
	}
	if n := len(mem.GetSpans()); n != 0 {
		t.Errorf("%d spans recorded, want none", n)
	}
}

// With a propagator other than W3C trace context alone, unsampled calls
// and events go through it: what it carries besides traceparent (here
// baggage) arrives.
func TestOtherPropagatorsCarryEverythingForUnsampledCalls(t *testing.T) {
	conn := embeddedBus(t)
	prop := propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	p, err := tracing.New(testContext(t), tracing.Options{Sampler: tracing.ParentBased(sdktrace.NeverSample()), Propagator: prop})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Shutdown(context.Background()) })
	gotA, gotD := make(chan string, 1), make(chan string, 1)
	a := switchboard.NewService("svca", "1.0.0", switchboard.WithLogger(quiet()))
	d := switchboard.NewService("svcd", "1.0.0", switchboard.WithLogger(quiet()))
	epA.Handle(a, func(ctx context.Context, r *req) (*rep, error) {
		gotA <- baggage.FromContext(ctx).Member("tenant").Value()
		return &rep{}, done.Publish(ctx, a, &event{N: r.N})
	})
	done.Subscribe(d, "svcd", func(ctx context.Context, ev *event) error {
		gotD <- baggage.FromContext(ctx).Member("tenant").Value()
		return nil
	})
	start(t, conn, p, d, a)
	cl := switchboard.NewClient(conn, p.ClientOptions("tester")...)
	defer cl.Close()
	m, err := baggage.NewMember("tenant", "acme")
	if err != nil {
		t.Fatal(err)
	}
	bg, err := baggage.New(m)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := epA.Call(baggage.ContextWithBaggage(testContext(t), bg), cl, &req{}); err != nil {
		t.Fatal(err)
	}
	for who, ch := range map[string]chan string{"handler": gotA, "consumer": gotD} {
		select {
		case v := <-ch:
			if v != "acme" {
				t.Errorf("%s: baggage tenant = %q, want acme", who, v)
			}
		case <-time.After(timeout):
			t.Fatalf("%s was not reached", who)
		}
	}
}
