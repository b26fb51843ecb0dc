package tracing_test

import (
	"context"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/tracing"
)

// BenchmarkCall measures one call over an embedded NATS server, with
// tracing off and on: production default sampling (parent-based, 10% of
// new traces), and every call sampled. Spans go over the bus as app.Run
// sends them (no collector listening). The difference between the
// sub-benchmarks is what tracing costs a call, both sides included.
//
//	go test -run '^$' -bench 'Call|Middleware' -benchmem ./tracing
func BenchmarkCall(b *testing.B) {
	for _, bc := range []struct {
		name    string
		sampler sdktrace.Sampler // nil: tracing off
	}{
		{"off", nil},
		{"on-default-10pct", tracing.ParentBased(sdktrace.TraceIDRatioBased(tracing.DefaultRatio))},
		{"on-all-sampled", tracing.ParentBased(sdktrace.AlwaysSample())},
	} {
		b.Run(bc.name, func(b *testing.B) {
			conn := embeddedBus(b)
			svc := switchboard.NewService("svcc", "1.0.0", switchboard.WithLogger(quiet()))
			epC.Handle(svc, func(ctx context.Context, r *req) (*rep, error) { return &rep{N: r.N}, nil })
			var opts []switchboard.ClientOption
			if bc.sampler != nil {
				p, err := tracing.New(context.Background(), tracing.Options{Bus: conn, Sampler: bc.sampler})
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { p.Shutdown(context.Background()) })
				if err := p.Instrument(svc); err != nil {
					b.Fatal(err)
				}
				opts = p.ClientOptions("bench")
			}
			if err := svc.Start(context.Background(), conn); err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { svc.Shutdown(context.Background()) })
			cl := switchboard.NewClient(conn, opts...)
			defer cl.Close()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := epC.Call(ctx, cl, &req{N: 1}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkMiddleware measures the tracing middleware alone, without a
// call on the bus: a client span, the trace context written into the
// headers and read back, and a server span, as one call makes them. The
// "-sdk" cases export to a span processor of the caller's (as with OTLP),
// so every recorded span comes from the SDK; the others send spans over
// the bus only (as app.Run without an OTLP endpoint), where the middleware
// records them itself.
func BenchmarkMiddleware(b *testing.B) {
	for _, bc := range []struct {
		name    string
		sampler sdktrace.Sampler
		sdk     bool
	}{
		{"unsampled", tracing.ParentBased(sdktrace.NeverSample()), false},
		{"default-10pct", tracing.ParentBased(sdktrace.TraceIDRatioBased(tracing.DefaultRatio)), false},
		{"sampled", tracing.ParentBased(sdktrace.AlwaysSample()), false},
		{"default-10pct-sdk", tracing.ParentBased(sdktrace.TraceIDRatioBased(tracing.DefaultRatio)), true},
		{"sampled-sdk", tracing.ParentBased(sdktrace.AlwaysSample()), true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			o := tracing.Options{Sampler: bc.sampler, Bus: embeddedBus(b)}
			if bc.sdk {
				// A batch processor with no exporter behind it costs what
				// the real one costs on the call path: the span is queued.
				o.SpanProcessors = []sdktrace.SpanProcessor{sdktrace.NewBatchSpanProcessor(discard{})}
			}
			p, err := tracing.New(context.Background(), o)
			if err != nil {
				b.Fatal(err)
			}
			defer p.Shutdown(context.Background())
			in := p.Instrumentation("svcc", "1.0.0", "i1")
			server := in.Server()(func(ctx context.Context, call *switchboard.Call) (any, error) { return nil, nil })
			client := in.Client()(func(ctx context.Context, call *switchboard.Call, reply any) error {
				// What the server receives: the headers sent.
				_, err := server(ctx, &switchboard.Call{Service: call.Service, Endpoint: call.Endpoint, Header: call.Header, Envelope: call.Envelope})
				return err
			})
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				call := &switchboard.Call{Service: "svcc", Endpoint: "c", Header: bus.Header{}}
				if err := client(ctx, call, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

type discard struct{}

func (discard) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discard) Shutdown(context.Context) error                             { return nil }

// BenchmarkCallOverhead interleaves calls to an untraced and a traced copy
// of one endpoint on the same embedded bus (spans over the bus), so that
// both see the same load on the machine, and reports what tracing adds to
// a call: overhead-ns/call and the ratio traced/untraced. "unsampled" is
// the cost of propagation alone (every call pays it), "default-10pct" the
// production default, "all-sampled" what dev pays.
func BenchmarkCallOverhead(b *testing.B) {
	for _, bc := range []struct {
		name    string
		sampler sdktrace.Sampler
	}{
		{"unsampled", tracing.ParentBased(sdktrace.NeverSample())},
		{"default-10pct", tracing.ParentBased(sdktrace.TraceIDRatioBased(tracing.DefaultRatio))},
		{"all-sampled", tracing.ParentBased(sdktrace.AlwaysSample())},
	} {
		b.Run(bc.name, func(b *testing.B) { callOverhead(b, bc.sampler) })
	}
}

func callOverhead(b *testing.B, sampler sdktrace.Sampler) {
	conn := embeddedBus(b)
	p, err := tracing.New(context.Background(), tracing.Options{Bus: conn, Sampler: sampler})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Shutdown(context.Background()) })
	plainEP := switchboard.Endpoint[*req, *rep]("plain", "c")
	tracedEP := switchboard.Endpoint[*req, *rep]("traced", "c")
	plain := switchboard.NewService("plain", "1.0.0", switchboard.WithLogger(quiet()))
	traced := switchboard.NewService("traced", "1.0.0", switchboard.WithLogger(quiet()))
	plainEP.Handle(plain, func(ctx context.Context, r *req) (*rep, error) { return &rep{N: r.N}, nil })
	tracedEP.Handle(traced, func(ctx context.Context, r *req) (*rep, error) { return &rep{N: r.N}, nil })
	if err := p.Instrument(traced); err != nil {
		b.Fatal(err)
	}
	for _, s := range []*switchboard.Service{plain, traced} {
		if err := s.Start(context.Background(), conn); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Shutdown(context.Background()) })
	}
	off := switchboard.NewClient(conn)
	on := switchboard.NewClient(conn, p.ClientOptions("bench")...)
	defer off.Close()
	defer on.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var tOff, tOn time.Duration
	n := 0
	call := func(traced bool) {
		start := time.Now()
		var err error
		if traced {
			_, err = tracedEP.Call(ctx, on, &req{N: 1})
			tOn += time.Since(start)
		} else {
			_, err = plainEP.Call(ctx, off, &req{N: 1})
			tOff += time.Since(start)
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	for b.Loop() {
		// Alternate which goes first, so that neither gains from order.
		first := n%2 == 0
		call(first)
		call(!first)
		n++
	}
	b.ReportMetric(float64(tOff.Nanoseconds())/float64(n), "untraced-ns/call")
	b.ReportMetric(float64(tOn.Nanoseconds())/float64(n), "traced-ns/call")
	b.ReportMetric(float64((tOn-tOff).Nanoseconds())/float64(n), "overhead-ns/call")
	b.ReportMetric(float64(tOn)/float64(tOff), "ratio")
}
