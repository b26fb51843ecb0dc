package tracing

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/resource"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// lightFor returns a recorder whose spans go to a batcher that keeps them.
func lightFor(t *testing.T) (*lightRecorder, *recorder, *batcher) {
	t.Helper()
	r := &recorder{}
	b := newBatcher(r, time.Hour, 512, 8192, quietLog())
	t.Cleanup(func() { b.Shutdown(context.Background()) })
	sinks := &atomic.Pointer[[]*batcher]{}
	sinks.Store(&[]*batcher{b})
	res := resource.NewSchemaless(keyServiceName.String("svc"), keyServiceInstance.String("i-1"))
	return &lightRecorder{tp: noop.NewTracerProvider(), res: res, sinks: sinks}, r, b
}

func TestLightSpanEndsOnceAndIgnoresWritesAfterwards(t *testing.T) {
	rec, r, b := lightFor(t)
	parent := trace.NewSpanContext(trace.SpanContextConfig{TraceID: newTraceID(), SpanID: newSpanID(),
		TraceFlags: trace.FlagsSampled | trace.FlagsRandom, Remote: true})
	ctx, s := rec.start(context.Background(), decision{light: rec, parent: parent, tid: parent.TraceID(),
		flags: parent.TraceFlags(), attrs: []attribute.KeyValue{attribute.String("from", "sampler")}}, "svc/op", trace.SpanKindServer)
	if trace.SpanFromContext(ctx) != trace.Span(s) {
		t.Fatal("the context does not hold the span")
	}
	sc := s.SpanContext()
	if sc.TraceID() != parent.TraceID() || sc.SpanID() == parent.SpanID() || !sc.IsSampled() ||
		sc.TraceFlags()&trace.FlagsRandom == 0 || sc.IsRemote() {
		t.Fatalf("span context %+v for parent %+v", sc, parent)
	}
	if !s.IsRecording() {
		t.Fatal("a started span is not recording")
	}
	s.SetAttributes(attribute.Int("n", 1), attribute.KeyValue{}) // the invalid one is dropped
	s.AddLink(trace.Link{})                                      // nothing to link to: dropped
	s.AddLink(trace.Link{SpanContext: parent})
	at := time.Now().Add(time.Second)
	s.End(trace.WithTimestamp(at))
	s.End()
	s.SetAttributes(attribute.Int("late", 1))
	s.SetName("renamed too late")
	s.AddLink(trace.Link{SpanContext: parent})
	if s.IsRecording() {
		t.Error("an ended span is recording")
	}
	if err := b.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if spans, _ := r.exported(); !reflect.DeepEqual(spans, []string{"svc/op"}) {
		t.Fatalf("exported %v, want the span once", spans)
	}
	got := fromFinished(s)
	want := Span{TraceID: parent.TraceID().String(), SpanID: sc.SpanID().String(), ParentID: parent.SpanID().String(),
		Name: "svc/op", Kind: "server", Service: "svc", Instance: "i-1", StartNS: s.start.UnixNano(),
		DurationNS: at.Sub(s.start).Nanoseconds(), Attrs: map[string]string{"from": "sampler", "n": "1"},
		Links: []Link{{TraceID: parent.TraceID().String(), SpanID: parent.SpanID().String()}}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("span\n%+v\nwant\n%+v", got, want)
	}
	var enc Span
	if err := json.Unmarshal(appendOTel(nil, s), &enc); err != nil || !reflect.DeepEqual(enc, want) {
		t.Fatalf("encoded %+v (%v), want %+v", enc, err, want)
	}
}

func TestLightSpanKeepsOneValuePerKeyAndBoundsItsAttributes(t *testing.T) {
	rec, _, _ := lightFor(t)
	_, s := rec.start(context.Background(), decision{light: rec, tid: newTraceID()}, "op", trace.SpanKindClient)
	s.SetAttributes(attribute.String("a", "1"), attribute.String("b", "1"), attribute.String("a", "2"))
	for i := range 2 * lightMaxAttrs {
		s.SetAttributes(attribute.Int(fmt.Sprintf("k%03d", i), i), attribute.String("b", "last"))
	}
	s.End()
	attrs := s.Attributes()
	if len(attrs) != lightMaxAttrs {
		t.Fatalf("%d attributes kept, want the limit %d", len(attrs), lightMaxAttrs)
	}
	if attrs[0] != attribute.String("a", "2") || attrs[1] != attribute.String("b", "last") {
		t.Errorf("first attributes %v %v: want a=2 then b=last, in the place each key first appeared", attrs[0], attrs[1])
	}
	seen := map[attribute.Key]bool{}
	for _, kv := range attrs {
		if seen[kv.Key] {
			t.Fatalf("key %s twice", kv.Key)
		}
		seen[kv.Key] = true
	}
	if !seen["k000"] || seen[attribute.Key(fmt.Sprintf("k%03d", 2*lightMaxAttrs-1))] {
		t.Error("the first attributes should be kept and the last ones dropped")
	}
}

func TestLightSpansAfterShutdownAreDropped(t *testing.T) {
	rec, r, b := lightFor(t)
	if err := b.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, s := rec.start(context.Background(), decision{light: rec, tid: newTraceID()}, "late", trace.SpanKindServer)
	s.End()
	if spans, _ := r.exported(); len(spans) != 0 {
		t.Fatalf("exported %v after shutdown", spans)
	}
}
