package tracing

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// spans records a few spans that exercise every field, and the limits.
func recordedSpans(t testing.TB) []sdktrace.ReadOnlySpan {
	mem := tracetest.NewInMemoryExporter()
	p, err := New(context.Background(), Options{Sampler: sdktrace.AlwaysSample(),
		SpanProcessors: []sdktrace.SpanProcessor{sdktrace.NewSimpleSpanProcessor(mem)}})
	if err != nil {
		t.Fatal(err)
	}
	tr := p.TracerProvider("svc \"quoted\"", "1.0.0", "inst").Tracer("t")
	ctx, root := tr.Start(context.Background(), "root/op", trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(keyRPCService.String("svc"), keyRPCMethod.String("op"), keyRPCStatus.String("NotFound")))
	_, child := tr.Start(ctx, strings.Repeat("é", 200)+"\n\x01\xff\u2028", trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithLinks(trace.Link{SpanContext: root.SpanContext()}))
	for i := range 40 {
		child.SetAttributes(attribute.Int(strings.Repeat("k", i+120), i), attribute.String("v", strings.Repeat("x", 600)))
	}
	child.SetAttributes(keyErrorType.String("Internal"))
	child.SetStatus(codes.Error, "it <broke> \"badly\"")
	child.End()
	root.End()
	return mem.GetSpans().Snapshots()
}

func TestTheFastEncoderWritesWhatFromOTelSays(t *testing.T) {
	for _, ro := range recordedSpans(t) {
		b := appendOTel(nil, ro)
		var got Span
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		want := FromOTel(ro)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("fast encoder:\n%+v\nFromOTel:\n%+v", got, want)
		}
	}
	bodies := encodeOTelBatches(asFinished(recordedSpans(t)), 1<<20)
	spans, dropped, err := DecodeBatch(bodies[0])
	if err != nil || dropped != 0 || len(spans) != 2 || len(bodies) != 1 {
		t.Fatalf("batch: %d bodies, %d spans, %d dropped, %v", len(bodies), len(spans), dropped, err)
	}
}

func asFinished(ro []sdktrace.ReadOnlySpan) []finished {
	out := make([]finished, len(ro))
	for i, s := range ro {
		out[i] = s
	}
	return out
}

func BenchmarkEncodeSpans(b *testing.B) {
	ro := asFinished(recordedSpans(b)[1:]) // the root span: like a server span
	for len(ro) < 100 {
		ro = append(ro, ro[0])
	}
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			encodeOTelBatches(ro, maxBatchMsgLen)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(ro)), "ns/span")
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			spans := make([]Span, len(ro))
			for i, s := range ro {
				spans[i] = FromOTel(s.(sdktrace.ReadOnlySpan))
			}
			EncodeBatches(spans, maxBatchMsgLen)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(ro)), "ns/span")
	})
}

// FuzzJSONString: the fast encoder's strings read back as encoding/json
// would write them.
func FuzzJSONString(f *testing.F) {
	for _, s := range []string{"", "plain", "\"quoted\\\"", "line\nbreak\r\t", "\x00\x1f\x7f", "é\xff\xfe", "\u2028\u2029", "<&>"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b := appendJSONString(nil, s)
		var got string
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("%q encoded as %s: %v", s, b, err)
		}
		want, _ := json.Marshal(s)
		var w string
		_ = json.Unmarshal(want, &w)
		if got != w {
			t.Fatalf("%q: read back %q, want %q", s, got, w)
		}
	})
}
