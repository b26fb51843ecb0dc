package bench

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/admin"
	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/health"
	"github.com/switchboard-dev/switchboard/resilience"
	"github.com/switchboard-dev/switchboard/tracing"
	"github.com/switchboard-dev/switchboard/traffic"
	"github.com/switchboard-dev/switchboard/wire"
)

// obsPart is one piece of what app.Run installs, added to the endpoint with
// the default protections ("bare").
type obsPart struct {
	name string
	// sampler, when set, installs tracing with it (spans over the bus, as
	// app.Run without an OTLP endpoint).
	sampler sdktrace.Sampler
	// metrics installs Prometheus metrics and health checks, traffic the
	// traffic counters.
	metrics, traffic bool
	// traceparent sends a constant unsampled traceparent with every
	// request and installs nothing else: what the header costs on the wire.
	traceparent bool
}

// BenchmarkObservability splits what observability costs a call:
// sequential in-process calls to the same endpoint with the default
// protections, bare and with each part of what app.Run installs, and all of
// them together ("observed", as the observability table of `bench rpc`
// runs it). The variants take turns in chunks of obsChunk calls, so that
// the machine's drift between seconds falls on all of them alike. The
// garbage collector's work for one chunk's garbage falls partly in the
// next chunks, whichever variant's, so a variant that allocates more is
// charged a little less than its share (the observability table of `bench
// rpc`, with two sides, is the fuller figure). b.N is the number of calls per
// variant. For each it reports the time per call (NAME-ns/call), as a
// multiple of bare's (NAME-x-bare), the process's CPU time per call
// (NAME-cpu-ns/call) and heap allocations per call (NAME-allocs/call):
//
//	go test -run '^$' -bench Observability -benchtime 40000x ./bench/
func BenchmarkObservability(b *testing.B) {
	ctx, e := benchEnv(b)
	srv, cli := benchBus(b, ctx, e, "obs-server"), benchBus(b, ctx, e, "obs-caller")
	def := tracing.ParentBased(sdktrace.TraceIDRatioBased(tracing.DefaultRatio))
	// bare and observed are the two sides of the observability table,
	// made as `bench rpc` makes them; the others add one part to bare.
	parts := []obsPart{
		{name: "bare"},
		{name: "traceparent-only", traceparent: true},
		{name: "tracing-unsampled", sampler: tracing.ParentBased(sdktrace.NeverSample())},
		{name: "tracing-default", sampler: def},
		{name: "tracing-all-sampled", sampler: tracing.ParentBased(sdktrace.AlwaysSample())},
		{name: "metrics-health", metrics: true},
		{name: "traffic", traffic: true},
		{name: "observed"},
	}
	type variant struct {
		call            callFunc
		wall, cpu       time.Duration
		mallocs, called uint64
	}
	vs := make([]*variant, len(parts))
	for i, p := range parts {
		name := fmt.Sprintf("obs%d", i)
		var call callFunc
		switch p.name {
		case "bare", "observed":
			s := &sbRPC{protect: p.name == "bare"}
			if p.name == "observed" {
				var err error
				if s.obs, err = newObservability(ctx); err != nil {
					b.Fatal(err)
				}
			}
			if err := s.start(ctx, name, srv, cli); err != nil {
				b.Fatal(err)
			}
			b.Cleanup(s.stop)
			call = s.callSwitchboard
		default:
			call = startObsPart(b, ctx, name, p, srv, cli)
		}
		vs[i] = &variant{call: call}
		for n := range 200 { // warm up
			if err := call(ctx, n); err != nil {
				b.Fatal(err)
			}
		}
	}
	var ms runtime.MemStats
	mallocs := func() uint64 { runtime.ReadMemStats(&ms); return ms.Mallocs }
	b.ResetTimer()
	for done := 0; done < b.N; done += obsChunk {
		n := min(obsChunk, b.N-done)
		for r := range vs {
			v := vs[(r+done/obsChunk)%len(vs)] // each variant in every position in turn
			m0, c0, t0 := mallocs(), processCPU(), time.Now()
			for i := range n {
				if err := v.call(ctx, done+i); err != nil {
					b.Fatal(err)
				}
			}
			v.wall += time.Since(t0)
			v.cpu += processCPU() - c0
			v.mallocs += mallocs() - m0
			v.called += uint64(n)
		}
	}
	b.StopTimer()
	per := func(d time.Duration, v *variant) float64 { return float64(d.Nanoseconds()) / float64(max(v.called, 1)) }
	bare := per(vs[0].wall, vs[0])
	for i, v := range vs {
		name := parts[i].name
		b.ReportMetric(per(v.wall, v), name+"-ns/call")
		if v.cpu > 0 {
			b.ReportMetric(per(v.cpu, v), name+"-cpu-ns/call")
		}
		b.ReportMetric(float64(v.mallocs)/float64(max(v.called, 1)), name+"-allocs/call")
		if i > 0 && bare > 0 {
			b.ReportMetric(per(v.wall, v)/bare, name+"-x-bare")
		}
	}
}

// obsChunk is how many calls a variant of BenchmarkObservability makes in
// a turn: about 15 ms here, about as long as a garbage collection cycle of
// this benchmark.
const obsChunk = 500

func benchBus(b *testing.B, ctx context.Context, e *env, name string) *bus.Conn {
	b.Helper()
	nc, err := e.connect(InProcess, name)
	if err != nil {
		b.Fatal(err)
	}
	c, err := e.busConn(ctx, nc)
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// startObsPart serves the quote endpoint as service name on srv with the
// default protections and part p, and returns a call to it from a client
// on cli.
func startObsPart(b *testing.B, ctx context.Context, name string, p obsPart, srv, cli *bus.Conn) callFunc {
	b.Helper()
	ep := switchboard.Endpoint[*QuoteRequest, *QuoteReply](name, "quote")
	svc := switchboard.NewService(name, "1.0.0", switchboard.WithLogger(quiet))
	ep.Handle(svc, func(_ context.Context, req *QuoteRequest) (*QuoteReply, error) { return quote(req), nil })
	var opts []switchboard.ClientOption
	if p.sampler != nil {
		tr, err := tracing.New(ctx, tracing.Options{NoOTLP: true, Logger: quiet, Sampler: p.sampler})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { tr.Shutdown(context.Background()) })
		if err := tr.Instrument(svc); err != nil { // outermost, as app.Run does
			b.Fatal(err)
		}
		tr.AttachBus(srv)
		opts = append(opts, tr.ClientOptions("bench")...)
	}
	if err := svc.Apply(resilience.Defaults().ServiceOptions()...); err != nil {
		b.Fatal(err)
	}
	if p.traffic {
		if err := traffic.Install(svc); err != nil {
			b.Fatal(err)
		}
	}
	if p.traceparent {
		const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
		opts = append(opts, switchboard.WithClientMiddleware(func(next switchboard.Invoker) switchboard.Invoker {
			return func(ctx context.Context, call *switchboard.Call, reply any) error {
				call.Header[wire.HeaderTraceParent] = tp
				call.Envelope.TraceParent = tp
				return next(ctx, call, reply)
			}
		}))
	}
	var chk *health.Checker
	if p.metrics {
		adm := admin.New()
		chk = adm.Attach(svc).WithLogger(quiet)
		opts = append(opts, switchboard.WithClientMiddleware(adm.Metrics().ClientMiddleware()))
	}
	if err := svc.Start(ctx, srv); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { svc.Shutdown(context.Background()) })
	if chk != nil {
		if err := chk.Start(ctx); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { chk.Stop(context.Background()) })
	}
	cl := switchboard.NewClient(cli, append(opts, switchboard.WithCaller("bench"))...)
	b.Cleanup(func() { cl.Close() })
	return func(ctx context.Context, i int) error {
		_, err := ep.Call(ctx, cl, request(i))
		return err
	}
}
