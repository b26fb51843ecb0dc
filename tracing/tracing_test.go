package tracing_test

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/bus"
	_ "github.com/switchboard-dev/switchboard/bus/natsbus" // embedded://
	"github.com/switchboard-dev/switchboard/tracing"
	"github.com/switchboard-dev/switchboard/wire"
)

// timeout is the generous bound on anything a test waits for.
const timeout = 20 * time.Second

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	return ctx
}

func embeddedBus(t testing.TB) *bus.Conn {
	t.Helper()
	conn, err := bus.Open(testContext(t), "embedded://"+t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// ended is a span processor that signals when a span with a given name
// ended, so tests wait for spans without sleeping.
type ended struct {
	mu    sync.Mutex
	waits map[string]chan struct{}
}

func newEnded() *ended { return &ended{waits: map[string]chan struct{}{}} }

func (e *ended) ch(name string) chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	c, ok := e.waits[name]
	if !ok {
		c = make(chan struct{})
		e.waits[name] = c
	}
	return c
}

func (e *ended) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (e *ended) OnEnd(s sdktrace.ReadOnlySpan) {
	c := e.ch(s.Name())
	select {
	case <-c:
	default:
		close(c)
	}
}
func (e *ended) Shutdown(context.Context) error   { return nil }
func (e *ended) ForceFlush(context.Context) error { return nil }

func (e *ended) wait(t *testing.T, name string) {
	t.Helper()
	select {
	case <-e.ch(name):
	case <-time.After(timeout):
		t.Fatalf("span %q did not end within %s", name, timeout)
	}
}

type (
	req   struct{ N int }
	rep   struct{ N int }
	event struct{ N int }
)

var (
	epA  = switchboard.Endpoint[*req, *rep]("svca", "a")
	epB  = switchboard.Endpoint[*req, *rep]("svcb", "b")
	epC  = switchboard.Endpoint[*req, *rep]("svcc", "c")
	done = switchboard.Topic[*event]("chain.done")
)

func start(t *testing.T, conn *bus.Conn, p *tracing.Pipeline, svcs ...*switchboard.Service) {
	t.Helper()
	if err := p.Instrument(svcs...); err != nil {
		t.Fatal(err)
	}
	for _, s := range svcs {
		if err := s.Start(testContext(t), conn); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Shutdown(context.Background()) })
	}
}

// chain runs svca.a → svcb.b → svcc.c, where svcb.b also publishes
// chain.done, which svcd consumes. C fails with NotFound when asked to.
func chain(t *testing.T, conn *bus.Conn, p *tracing.Pipeline) {
	a := switchboard.NewService("svca", "1.0.0", switchboard.WithLogger(quiet()))
	b := switchboard.NewService("svcb", "1.0.0", switchboard.WithLogger(quiet()))
	c := switchboard.NewService("svcc", "1.0.0", switchboard.WithLogger(quiet()))
	d := switchboard.NewService("svcd", "1.0.0", switchboard.WithLogger(quiet()))
	epA.Handle(a, func(ctx context.Context, r *req) (*rep, error) { return epB.Call(ctx, a, r) })
	epB.Handle(b, func(ctx context.Context, r *req) (*rep, error) {
		out, err := epC.Call(ctx, b, r)
		if err != nil {
			return nil, err
		}
		return out, done.Publish(ctx, b, &event{N: r.N})
	})
	epC.Handle(c, func(ctx context.Context, r *req) (*rep, error) {
		if r.N < 0 {
			return nil, switchboard.Errorf(switchboard.NotFound, "no %d", r.N)
		}
		return &rep{N: r.N + 1}, nil
	})
	done.Subscribe(d, "svcd", func(ctx context.Context, ev *event) error { return nil })
	start(t, conn, p, d, c, b, a)
}

// Run with the SDK's sampler, and with the parent-based one the Pipeline
// knows (whose new traces it starts with a trace ID decided beforehand).
func TestChainAndEventShareOneTraceWithParentsAndLinks(t *testing.T) {
	t.Run("sdk-sampler", func(t *testing.T) { testChain(t, sdktrace.AlwaysSample()) })
	t.Run("pipeline-sampler", func(t *testing.T) { testChain(t, tracing.ParentBased(sdktrace.AlwaysSample())) })
}

func testChain(t *testing.T, sampler sdktrace.Sampler) {
	conn := embeddedBus(t)
	mem := tracetest.NewInMemoryExporter()
	sig := newEnded()
	p, err := tracing.New(testContext(t), tracing.Options{Sampler: sampler,
		SpanProcessors: []sdktrace.SpanProcessor{sdktrace.NewSimpleSpanProcessor(mem), sig}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Shutdown(context.Background()) })
	chain(t, conn, p)

	cl := switchboard.NewClient(conn, append(p.ClientOptions("tester"), switchboard.WithCaller("tester"))...)
	defer cl.Close()
	if _, err := epA.Call(testContext(t), cl, &req{N: 1}); err != nil {
		t.Fatal(err)
	}
	sig.wait(t, "process chain.done")

	spans := map[string]tracetest.SpanStub{}
	var ids []trace.TraceID
	for _, s := range mem.GetSpans() {
		key := s.Name + "/" + s.SpanKind.String()
		spans[key] = s
		ids = append(ids, s.SpanContext.TraceID())
	}
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("spans in more than one trace: %v", ids)
		}
	}
	parentOf := func(child, parent string) {
		t.Helper()
		c, ok1 := spans[child]
		p, ok2 := spans[parent]
		if !ok1 || !ok2 {
			t.Fatalf("missing span %q or %q; have %v", child, parent, keys(spans))
		}
		if c.Parent.SpanID() != p.SpanContext.SpanID() {
			t.Errorf("parent of %s is %s, want %s (%s)", child, c.Parent.SpanID(), p.SpanContext.SpanID(), parent)
		}
	}
	parentOf("svca/a/server", "svca/a/client")
	parentOf("svcb/b/client", "svca/a/server")
	parentOf("svcb/b/server", "svcb/b/client")
	parentOf("svcc/c/client", "svcb/b/server")
	parentOf("svcc/c/server", "svcc/c/client")
	parentOf("send chain.done/producer", "svcb/b/server")
	parentOf("process chain.done/consumer", "send chain.done/producer")
	if spans["svca/a/client"].Parent.IsValid() {
		t.Errorf("the first client span has a parent: %v", spans["svca/a/client"].Parent)
	}
	cons := spans["process chain.done/consumer"]
	if len(cons.Links) != 1 || cons.Links[0].SpanContext.SpanID() != spans["send chain.done/producer"].SpanContext.SpanID() {
		t.Errorf("consumer links = %v, want one link to the producer span", cons.Links)
	}

	srv := attrs(spans["svcc/c/server"])
	for k, want := range map[string]string{"rpc.system": "switchboard", "rpc.service": "svcc", "rpc.method": "c",
		"rpc.response.status_code": "OK", "switchboard.caller": "svcb"} {
		if srv[k] != want {
			t.Errorf("server span attribute %s = %q, want %q", k, srv[k], want)
		}
	}
	if v, _ := spans["svcc/c/server"].Resource.Set().Value("service.name"); v.AsString() != "svcc" {
		t.Errorf("service.name = %q, want svcc", v.AsString())
	}
	ca := attrs(cons)
	for k, want := range map[string]string{"messaging.system": "switchboard", "messaging.destination.name": "chain.done",
		"messaging.operation.type": "process", "messaging.consumer.group.name": "svcd"} {
		if ca[k] != want {
			t.Errorf("consumer span attribute %s = %q, want %q", k, ca[k], want)
		}
	}
	if ca["messaging.message.id"] == "" || ca["messaging.message.id"] != attrs(spans["send chain.done/producer"])["messaging.message.id"] {
		t.Errorf("message ids differ between producer and consumer: %v", ca)
	}
}

func TestErrorsAreRecordedWithTheirCode(t *testing.T) {
	conn := embeddedBus(t)
	mem := tracetest.NewInMemoryExporter()
	p, err := tracing.New(testContext(t), tracing.Options{Sampler: sdktrace.AlwaysSample(),
		SpanProcessors: []sdktrace.SpanProcessor{sdktrace.NewSimpleSpanProcessor(mem)}})
	if err != nil {
		t.Fatal(err)
	}
	chain(t, conn, p)
	cl := switchboard.NewClient(conn, p.ClientOptions("tester")...)
	defer cl.Close()
	if _, err := epA.Call(testContext(t), cl, &req{N: -1}); switchboard.ErrorCode(err) != switchboard.NotFound {
		t.Fatalf("err = %v, want NotFound", err)
	}
	// Every span of the call has ended once the outermost client span has:
	// the simple processor exports synchronously.
	for _, s := range mem.GetSpans() {
		a := attrs(s)
		if a["rpc.method"] == "" {
			continue
		}
		if a["rpc.response.status_code"] != "NotFound" || a["error.type"] != "NotFound" {
			t.Errorf("%s %s: status code %q, error.type %q; want NotFound", s.Name, s.SpanKind, a["rpc.response.status_code"], a["error.type"])
		}
		// NotFound is the caller's problem: an error on the client side,
		// not a failure of the server.
		if wantErr := s.SpanKind == trace.SpanKindClient; (s.Status.Code.String() == "Error") != wantErr {
			t.Errorf("%s %s: status %v", s.Name, s.SpanKind, s.Status)
		}
	}
}

func TestTraceContextIsInTheEnvelopeAndTheHeaders(t *testing.T) {
	conn := embeddedBus(t)
	p, err := tracing.New(testContext(t), tracing.Options{Sampler: sdktrace.NeverSample()})
	if err != nil {
		t.Fatal(err)
	}
	svc := switchboard.NewService("svcc", "1.0.0", switchboard.WithLogger(quiet()))
	got := make(chan *switchboard.Call, 1)
	epC.Handle(svc, func(ctx context.Context, r *req) (*rep, error) {
		call, _ := switchboard.CallFrom(ctx)
		got <- call
		return &rep{}, nil
	})
	start(t, conn, p, svc)
	cl := switchboard.NewClient(conn, p.ClientOptions("tester")...)
	defer cl.Close()
	if _, err := epC.Call(testContext(t), cl, &req{}); err != nil {
		t.Fatal(err)
	}
	call := <-got
	tp := call.Header[wire.HeaderTraceParent]
	if len(tp) != 55 || tp != call.Envelope.TraceParent {
		t.Errorf("traceparent header %q, envelope %q: want the same W3C value", tp, call.Envelope.TraceParent)
	}
	// Unsampled traces still propagate, flagged as such, so that every
	// service makes the same decision.
	if tp[53:] != "00" {
		t.Errorf("traceparent %q: want the unsampled flag", tp)
	}
}

func TestSamplerFromEnv(t *testing.T) {
	for _, tc := range []struct {
		name, sampler, arg, want string
		bad                      bool
	}{
		{name: "unset gives the default", want: "AlwaysOffSampler"},
		{name: "always_on", sampler: "always_on", want: "AlwaysOnSampler"},
		{name: "parent-based ratio", sampler: "parentbased_traceidratio", arg: "0.25", want: "ParentBased{root:TraceIDRatioBased{0.25}"},
		{name: "a ratio without argument is 1", sampler: "traceidratio", want: "TraceIDRatioBased{1}"},
		{name: "a ratio above 1 is refused", sampler: "traceidratio", arg: "2", bad: true},
		{name: "a ratio that is not a number is refused", sampler: "traceidratio", arg: "half", bad: true},
		{name: "an unknown sampler is refused", sampler: "jaeger_remote", bad: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("OTEL_TRACES_SAMPLER", tc.sampler)
			t.Setenv("OTEL_TRACES_SAMPLER_ARG", tc.arg)
			s, err := tracing.SamplerFromEnv(sdktrace.NeverSample())
			if tc.bad {
				if switchboard.ErrorCode(err) != switchboard.InvalidArgument {
					t.Fatalf("err = %v, want InvalidArgument", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := s.Description(); len(d) < len(tc.want) || d[:len(tc.want)] != tc.want {
				t.Errorf("sampler %q, want %q", d, tc.want)
			}
		})
	}
}

func TestDisabledInstallsNothing(t *testing.T) {
	t.Setenv("OTEL_SDK_DISABLED", "true")
	p, err := tracing.New(testContext(t), tracing.Options{})
	if err != nil || p.Enabled() || p.ClientOptions("x") != nil {
		t.Fatalf("New = %v, %v; want a disabled pipeline", p, err)
	}
}

func attrs(s tracetest.SpanStub) map[string]string {
	m := map[string]string{}
	for _, kv := range s.Attributes {
		m[string(kv.Key)] = kv.Value.Emit()
	}
	return m
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestShutdownStopsTheExportersGoroutines(t *testing.T) {
	conn := embeddedBus(t)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	p, err := tracing.New(testContext(t), tracing.Options{Bus: conn, Sampler: sdktrace.AlwaysSample()})
	if err != nil {
		t.Fatal(err)
	}
	p.AttachBus(conn) // a second destination, attached later
	svc := switchboard.NewService("svcc", "1.0.0", switchboard.WithLogger(quiet()))
	if err := p.Instrument(svc); err != nil {
		t.Fatal(err)
	}
	if err := p.Shutdown(testContext(t)); err != nil {
		t.Fatal(err)
	}
	if err := p.Shutdown(testContext(t)); err != nil {
		t.Fatalf("a second Shutdown: %v", err)
	}
}

func TestLogHandlerAddsTheTraceOfTheHandler(t *testing.T) {
	conn := embeddedBus(t)
	p, err := tracing.New(testContext(t), tracing.Options{Sampler: sdktrace.AlwaysSample()})
	if err != nil {
		t.Fatal(err)
	}
	var buf strings.Builder
	var mu sync.Mutex
	log := slog.New(tracing.LogHandler(slog.NewTextHandler(&lockedWriter{w: &buf, mu: &mu}, nil))).With("component", "test")
	svc := switchboard.NewService("svcc", "1.0.0", switchboard.WithLogger(quiet()))
	ids := make(chan string, 1)
	epC.Handle(svc, func(ctx context.Context, r *req) (*rep, error) {
		log.InfoContext(ctx, "handling")
		ids <- trace.SpanContextFromContext(ctx).TraceID().String()
		return &rep{}, nil
	})
	start(t, conn, p, svc)
	cl := switchboard.NewClient(conn, p.ClientOptions("tester")...)
	defer cl.Close()
	if _, err := epC.Call(testContext(t), cl, &req{}); err != nil {
		t.Fatal(err)
	}
	id := <-ids
	log.Info("outside")
	mu.Lock()
	defer mu.Unlock()
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "trace_id="+id) || !strings.Contains(lines[0], "component=test") || strings.Contains(lines[1], "trace_id") {
		t.Errorf("log lines:\n%s\nwant the first with trace_id=%s, the second without", buf.String(), id)
	}
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}
