package tracing_test

import (
	"context"
	"fmt"
	"reflect"
	"sort"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/tracing"
)

var epE = switchboard.Endpoint[*req, *rep]("svce", "e")

// nop is a span processor that does nothing: with one among the Pipeline's
// processors, every span comes from the SDK.
type nop struct{}

func (nop) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (nop) OnEnd(sdktrace.ReadOnlySpan)                     {}
func (nop) Shutdown(context.Context) error                  { return nil }
func (nop) ForceFlush(context.Context) error                { return nil }

// When spans go only over the bus, the middleware records them without the
// SDK. What arrives on the bus must be what the SDK's spans would have
// sent: the same spans, names, kinds, services, parents, links, attributes,
// codes and errors, for calls, a failing call, a publish, a consume, and a
// handler that annotates its span and starts a child span of its own with
// the SDK.
func TestSpansOverTheBusAreTheSameWithoutTheSDK(t *testing.T) {
	light, lightSDK := busSpans(t, false)
	sdk, sdkSDK := busSpans(t, true)
	if lightSDK || !sdkSDK {
		t.Errorf("handler's span from the SDK: %v without processors of the caller's (want false), %v with (want true)", lightSDK, sdkSDK)
	}
	if len(light) == 0 || !reflect.DeepEqual(light, sdk) {
		t.Errorf("spans over the bus differ:\nwithout the SDK:\n%s\nwith the SDK:\n%s", dump(light), dump(sdk))
	}
}

// shape is a span as busSpans compares it: everything but its IDs and times.
type shape struct {
	Service, Instance, Kind, Error, Code string
	Parent                               string // key of the parent span, "" for a root
	Links                                []string
	Attrs                                map[string]string
}

func dump(m map[string]shape) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	s := ""
	for _, k := range keys {
		s += fmt.Sprintf("  %s: %+v\n", k, m[k])
	}
	return s
}

// busSpans runs the chain, a failing call and svce.e with every trace
// sampled and spans sent over the bus (with a processor of the caller's too
// when withProcessor), and returns the spans received, by service, name,
// kind and code; sdkSpan says whether svce.e's handler ran in an SDK span.
func busSpans(t *testing.T, withProcessor bool) (spans map[string]shape, sdkSpan bool) {
	conn := embeddedBus(t)
	ctx := testContext(t)
	var (
		mu  sync.Mutex
		got []tracing.Span
	)
	sub, err := conn.Listen(ctx, tracing.Subject, func(m *bus.Message) {
		ss, _, err := tracing.DecodeBatch(m.Body)
		if err != nil {
			t.Errorf("batch: %v", err)
		}
		mu.Lock()
		got = append(got, ss...)
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Stop(context.Background())
	o := tracing.Options{Bus: conn, Sampler: tracing.ParentBased(sdktrace.AlwaysSample()), BatchTimeout: time.Hour}
	if withProcessor {
		o.SpanProcessors = []sdktrace.SpanProcessor{nop{}}
	}
	p, err := tracing.New(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Shutdown(context.Background()) })
	chain(t, conn, p)
	e := switchboard.NewService("svce", "1.0.0", switchboard.WithLogger(quiet()))
	epE.Handle(e, func(ctx context.Context, r *req) (*rep, error) {
		span := trace.SpanFromContext(ctx)
		_, sdkSpan = span.(sdktrace.ReadWriteSpan)
		span.SetAttributes(attribute.Int("order.lines", 3), attribute.String("order.id", "first"))
		span.SetAttributes(attribute.String("order.id", "o-42")) // the last value wins
		span.SetName("svce/e renamed")
		_, inner := span.TracerProvider().Tracer("app").Start(ctx, "load order", trace.WithSpanKind(trace.SpanKindInternal))
		inner.SetStatus(codes.Error, "cache miss")
		inner.End()
		span.SetStatus(codes.Error, "this description is kept")
		span.SetStatus(codes.Ok, "")
		span.SetStatus(codes.Error, "too late: Ok is final")
		return &rep{N: r.N}, nil
	})
	start(t, conn, p, e)

	cl := switchboard.NewClient(conn, append(p.ClientOptions("tester"), switchboard.WithCaller("tester"))...)
	defer cl.Close()
	if _, err := epA.Call(ctx, cl, &req{N: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := epC.Call(ctx, cl, &req{N: -1}); switchboard.ErrorCode(err) != switchboard.NotFound {
		t.Fatalf("svcc.c(-1): %v, want NotFound", err)
	}
	if _, err := epE.Call(ctx, cl, &req{N: 5}); err != nil {
		t.Fatal(err)
	}
	// a → b → c (client and server each), publish and consume, the failing
	// call (two), svce.e (two) and its inner span.
	const want = 6 + 2 + 2 + 2 + 1
	deadline := time.Now().Add(timeout)
	for {
		if err := p.ForceFlush(ctx); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n >= want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d spans arrived over the bus, want %d", n, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != want {
		t.Fatalf("%d spans arrived over the bus, want %d", len(got), want)
	}
	key := map[string]string{}
	for _, s := range got {
		key[s.SpanID] = s.Service + " " + s.Name + " " + s.Kind + " " + s.Code
	}
	spans = map[string]shape{}
	for _, s := range got {
		sh := shape{Service: s.Service, Instance: s.Instance, Kind: s.Kind, Error: s.Error, Code: s.Code,
			Parent: key[s.ParentID], Attrs: s.Attrs}
		if s.ParentID != "" && sh.Parent == "" {
			t.Errorf("span %s: its parent %s did not arrive", key[s.SpanID], s.ParentID)
		}
		// Instance and message IDs differ between runs.
		if s.Instance != "" {
			sh.Instance = "set"
		}
		if _, ok := s.Attrs["messaging.message.id"]; ok {
			s.Attrs["messaging.message.id"] = "set"
		}
		for _, l := range s.Links {
			sh.Links = append(sh.Links, key[l.SpanID])
		}
		if s.DurationNS <= 0 || s.StartNS <= 0 {
			t.Errorf("span %s: start %d, duration %d", key[s.SpanID], s.StartNS, s.DurationNS)
		}
		if _, dup := spans[key[s.SpanID]]; dup {
			t.Fatalf("two spans are %s", key[s.SpanID])
		}
		spans[key[s.SpanID]] = sh
	}
	return spans, sdkSpan
}

// app.Run installs tracing before it connects and attaches the bus later:
// spans recorded without the SDK must go to a bus attached after the
// services were instrumented, and those recorded before any bus was
// attached go nowhere, without harm to the calls.
func TestSpansGoToABusAttachedAfterInstrument(t *testing.T) {
	conn := embeddedBus(t)
	ctx := testContext(t)
	got := make(chan tracing.Span, 16)
	sub, err := conn.Listen(ctx, tracing.Subject, func(m *bus.Message) {
		ss, _, err := tracing.DecodeBatch(m.Body)
		if err != nil {
			t.Errorf("batch: %v", err)
		}
		for _, s := range ss {
			got <- s
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Stop(context.Background())
	p, err := tracing.New(ctx, tracing.Options{Sampler: tracing.ParentBased(sdktrace.AlwaysSample()), BatchTimeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Shutdown(context.Background()) })
	svc := switchboard.NewService("svcc", "1.0.0", switchboard.WithLogger(quiet()))
	epC.Handle(svc, func(ctx context.Context, r *req) (*rep, error) { return &rep{N: r.N}, nil })
	start(t, conn, p, svc)
	cl := switchboard.NewClient(conn, p.ClientOptions("tester")...)
	defer cl.Close()
	if _, err := epC.Call(ctx, cl, &req{N: 1}); err != nil {
		t.Fatalf("a call before any bus is attached: %v", err)
	}
	p.AttachBus(conn)
	if _, err := epC.Call(ctx, cl, &req{N: 2}); err != nil {
		t.Fatal(err)
	}
	if err := p.ForceFlush(ctx); err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	var trace string
	for range 2 {
		select {
		case s := <-got:
			kinds[s.Kind]++
			if trace != "" && s.TraceID != trace {
				t.Errorf("the two spans are in traces %s and %s", trace, s.TraceID)
			}
			trace = s.TraceID
		case <-time.After(timeout):
			t.Fatalf("spans that arrived: %v; want the client and server spans of the second call", kinds)
		}
	}
	if kinds["client"] != 1 || kinds["server"] != 1 {
		t.Errorf("spans by kind %v, want one client and one server span", kinds)
	}
	if err := p.ForceFlush(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-got:
		t.Errorf("a span of the call made before the bus was attached arrived: %+v", s)
	case <-time.After(100 * time.Millisecond):
	}
}
