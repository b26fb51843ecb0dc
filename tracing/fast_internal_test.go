package tracing

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

func TestUnsampledParentReadsOnlyTheCanonicalUnsampledForm(t *testing.T) {
	const tid, sid = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	for _, tc := range []struct {
		tp, ts string
		ok     bool
	}{
		{"00-" + tid + "-" + sid + "-00", "", true},
		{"00-" + tid + "-" + sid + "-02", "", true}, // other flags kept, unsampled
		{"00-" + tid + "-" + sid + "-01", "", false},
		{"00-" + tid + "-" + sid + "-03", "", false},
		{"00-" + tid + "-" + sid + "-00", "k=v", false}, // trace state: the propagator parses it
		{"01-" + tid + "-" + sid + "-00", "", false},
		{"ff-" + tid + "-" + sid + "-00", "", false},
		{"00-4BF92F3577B34DA6A3CE929D0E0E4736-" + sid + "-00", "", false},
		{"00-00000000000000000000000000000000-" + sid + "-00", "", false},
		{"00-" + tid + "-0000000000000000-00", "", false},
		{"00-" + tid + "-" + sid + "-0g", "", false},
		{"00-" + tid + "-" + sid + "-00-", "", false},
		{"00-" + tid + "_" + sid + "-00", "", false},
		{"", "", false},
	} {
		sc, ok := unsampledParent(tc.tp, tc.ts)
		if ok != tc.ok {
			t.Errorf("unsampledParent(%q, %q) ok = %v, want %v", tc.tp, tc.ts, ok, tc.ok)
			continue
		}
		if ok && (sc.TraceID().String() != tid || sc.SpanID().String() != sid || sc.IsSampled() || !sc.IsRemote()) {
			t.Errorf("unsampledParent(%q) = %v, want trace %s span %s, remote, unsampled", tc.tp, sc, tid, sid)
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
	ctx, span := s.start(context.Background(), tr, tp, "a", trace.SpanKindClient, kindClient)
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
