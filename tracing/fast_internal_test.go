package tracing

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/wire"
)

func TestReadParentReadsOnlyTheCanonicalForm(t *testing.T) {
	const tid, sid = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	for _, tc := range []struct {
		tp, ts string
		ok     bool
		flags  trace.TraceFlags
	}{
		{"00-" + tid + "-" + sid + "-00", "", true, 0},
		{"00-" + tid + "-" + sid + "-02", "", true, trace.FlagsRandom},
		{"00-" + tid + "-" + sid + "-01", "", true, trace.FlagsSampled},
		{"00-" + tid + "-" + sid + "-03", "", true, trace.FlagsSampled | trace.FlagsRandom},
		{"00-" + tid + "-" + sid + "-04", "", false, 0},    // reserved flags: the propagator refuses them
		{"00-" + tid + "-" + sid + "-00", "k=v", false, 0}, // trace state: the propagator parses it
		{"01-" + tid + "-" + sid + "-00", "", false, 0},
		{"ff-" + tid + "-" + sid + "-00", "", false, 0},
		{"00-4BF92F3577B34DA6A3CE929D0E0E4736-" + sid + "-00", "", false, 0},
		{"00-00000000000000000000000000000000-" + sid + "-00", "", false, 0},
		{"00-" + tid + "-0000000000000000-00", "", false, 0},
		{"00-" + tid + "-" + sid + "-0g", "", false, 0},
		{"00-" + tid + "-" + sid + "-00-", "", false, 0},
		{"00-" + tid + "_" + sid + "-00", "", false, 0},
		{"", "", false, 0},
	} {
		sc, ok := readParent(tc.tp, tc.ts)
		if ok != tc.ok {
			t.Errorf("readParent(%q, %q) ok = %v, want %v", tc.tp, tc.ts, ok, tc.ok)
			continue
		}
		if ok && (sc.TraceID().String() != tid || sc.SpanID().String() != sid || sc.TraceFlags() != tc.flags || !sc.IsRemote()) {
			t.Errorf("readParent(%q) = %v, want trace %s span %s flags %v, remote", tc.tp, sc, tid, sid, tc.flags)
		}
		if ok {
			want := propagation.TraceContext{}.Extract(context.Background(), propagation.MapCarrier{"traceparent": tc.tp})
			if w := trace.SpanContextFromContext(want); !w.Equal(sc) {
				t.Errorf("readParent(%q) = %v, the propagator reads %v", tc.tp, sc, w)
			}
		}
	}
}

// The trace ID start decides a recorded root on goes to the SDK through the
// context given to Start only: a new root made later under the returned
// context must not reuse it.
func TestPresetTraceIDDoesNotLeakIntoLaterRoots(t *testing.T) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(ParentBased(sdktrace.AlwaysSample())), sdktrace.WithIDGenerator(presetIDs{}))
	defer tp.Shutdown(context.Background())
	s := &sampling{root: sdktrace.AlwaysSample()}
	tr := tp.Tracer("t")
	ctx, span := s.start(context.Background(), tr, tp, spanName{&names{sep: "/"}, "a", "b"}, trace.SpanKindClient, kindClient)
	if !span.IsRecording() || !span.SpanContext().IsSampled() {
		t.Fatalf("root under AlwaysSample: recording %v, sampled %v", span.IsRecording(), span.SpanContext().IsSampled())
	}
	if got := trace.SpanContextFromContext(ctx); !got.Equal(span.SpanContext()) {
		t.Fatalf("context carries %v, want the started span %v", got, span.SpanContext())
	}
	if ctx.Value(presetTraceID{}) != nil {
		t.Error("the preset trace ID is still in the returned context")
	}
	_, other := tr.Start(ctx, "b", trace.WithNewRoot())
	if other.SpanContext().TraceID() == span.SpanContext().TraceID() {
		t.Error("a new root under the returned context reused the preset trace ID")
	}
}

func TestSpanNamesAreBuiltOnceAndBounded(t *testing.T) {
	n := &names{sep: "/"}
	if got := n.get("svc", "ep"); got != "svc/ep" {
		t.Fatalf("get = %q", got)
	}
	if a := testing.AllocsPerRun(100, func() { n.get("svc", "ep") }); a != 0 {
		t.Errorf("a known name costs %v allocations, want 0", a)
	}
	for i := range maxNames + 10 {
		n.get("svc", string(rune('a'+i%26))+string(rune('a'+i/26%26))+string(rune('a'+i/676)))
	}
	if l := len(*n.m.Load()); l > maxNames {
		t.Errorf("%d names kept, want at most %d", l, maxNames)
	}
	if got := n.get("other", "x"); got != "other/x" {
		t.Errorf("past the bound get = %q, want it built", got)
	}
}

// The context dropped makes holds its span for package trace, in one
// allocation, and everything else as its parent: values, cancellation,
// and contexts made from it, which may hold spans of their own.
func TestDroppedContextHoldsItsSpanAndItsParents(t *testing.T) {
	if spanKey == nil {
		t.Fatal("spanKey was not learnt: dropped spans cost two allocations (has package trace changed how it keeps spans?)")
	}
	type key struct{}
	parent, cancel := context.WithCancel(context.WithValue(context.Background(), key{}, "v"))
	ts, err := trace.ParseTraceState("k=v")
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider()
	defer tp.Shutdown(context.Background())
	ctx, span := dropped(parent, tp, trace.TraceID{9}, trace.FlagsSampled|0x02, ts)
	sc := span.SpanContext()
	if sc.TraceID() != (trace.TraceID{9}) || sc.IsSampled() || sc.TraceFlags() != 0x02 || sc.TraceState().String() != "k=v" || !sc.SpanID().IsValid() {
		t.Fatalf("span context %v: want trace 9, unsampled, the other flags and the trace state kept, a span ID", sc)
	}
	if trace.SpanFromContext(ctx) != span || !trace.SpanContextFromContext(ctx).Equal(sc) {
		t.Fatal("the context does not hold the span")
	}
	if ctx.Value(key{}) != "v" {
		t.Error("the parent's value is lost")
	}
	child, childCancel := context.WithCancel(context.WithValue(ctx, key{}, "w"))
	defer childCancel()
	if trace.SpanFromContext(child) != span || child.Value(key{}) != "w" {
		t.Error("a context made from it does not see its span, or its own value")
	}
	_, inner := tp.Tracer("t").Start(child, "inner")
	if inner.SpanContext().TraceID() != sc.TraceID() || inner.SpanContext().IsSampled() {
		t.Errorf("a span started under it: %v, want one in trace 9, unsampled", inner.SpanContext())
	}
	if shadow := trace.ContextWithSpan(ctx, inner); !trace.SpanContextFromContext(shadow).Equal(inner.SpanContext()) {
		t.Error("a span put in a context made from it does not shadow its own")
	}
	cancel()
	select {
	case <-child.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("canceling the parent did not reach a context made from it")
	}
	if n := testing.AllocsPerRun(100, func() { dropped(parent, tp, trace.TraceID{9}, 0, trace.TraceState{}) }); n != 1 {
		t.Errorf("dropped makes %v allocations, want 1", n)
	}
}

// What the fast path writes for an unsampled call is what the W3C
// propagator writes for the same span context.
func TestInjectWritesWhatThePropagatorWrites(t *testing.T) {
	ts, err := trace.ParseTraceState("a=1,b=2")
	if err != nil {
		t.Fatal(err)
	}
	s := &sampling{root: sdktrace.NeverSample(), w3c: true}
	for _, state := range []trace.TraceState{{}, ts} {
		d := decision{drop: true, tid: trace.TraceID{0xab, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 0xff}, flags: 0x02, ts: state}
		got := bus.Header{wire.HeaderTraceParent: "stale", wire.HeaderTraceState: "stale=1"}
		if !s.inject(d, got) {
			t.Fatal("inject refused a dropped decision")
		}
		sid, err := trace.SpanIDFromHex(got[wire.HeaderTraceParent][36:52])
		if err != nil {
			t.Fatalf("traceparent %q: %v", got[wire.HeaderTraceParent], err)
		}
		want := bus.Header{}
		ctx := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
			TraceID: d.tid, SpanID: sid, TraceFlags: d.flags, TraceState: state}))
		propagation.TraceContext{}.Inject(ctx, HeaderCarrier(want))
		if len(got) != len(want) || got[wire.HeaderTraceParent] != want[wire.HeaderTraceParent] || got[wire.HeaderTraceState] != want[wire.HeaderTraceState] {
			t.Errorf("inject wrote %v, the propagator %v", got, want)
		}
	}
	if (&sampling{root: sdktrace.NeverSample()}).inject(decision{drop: true, tid: trace.TraceID{1}}, bus.Header{}) {
		t.Error("inject wrote for a propagator other than W3C's")
	}
	if s.inject(decision{fresh: true, tid: trace.TraceID{1}}, bus.Header{}) {
		t.Error("inject wrote for a recorded span")
	}
}
