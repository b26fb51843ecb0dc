package tracing_test

import (
	"reflect"
	"testing"

	"github.com/switchboard-dev/switchboard/tracing"
)

// FuzzDecodeBatch feeds the collector's decoder what could arrive on
// sb.trace.spans: it must never panic, what it keeps must be within the
// limits, and what it keeps must survive encoding and decoding again.
//
//	go test -fuzz FuzzDecodeBatch ./tracing
func FuzzDecodeBatch(f *testing.F) {
	f.Add([]byte(`{"spans":[{"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7","parent_id":"00f067aa0ba902b8","name":"trips/request_trip","kind":"server","service":"trips","start_ns":1,"duration_ns":2,"code":"OK","attrs":{"rpc.method":"request_trip"},"links":[{"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b9"}]}]}`))
	f.Add([]byte(`{"spans":[{"trace_id":"4BF92F3577B34DA6A3CE929D0E0E4736","span_id":"00f067aa0ba902b7"}]}`))
	f.Add([]byte(`{"spans":[{"trace_id":"00000000000000000000000000000000","span_id":"0000000000000000"}]}`))
	f.Add([]byte(`{"spans":null}`))
	f.Add([]byte(`{"spans":[{"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7","duration_ns":-5,"name":"\u00e9\u00e9"}]}`))
	f.Add([]byte(`[`))
	f.Fuzz(func(t *testing.T, b []byte) {
		spans, _, err := tracing.DecodeBatch(b)
		if err != nil {
			return
		}
		for _, s := range spans {
			if !tracing.ValidTraceID(s.TraceID) || len(s.Name) > tracing.MaxNameLen || len(s.Attrs) > tracing.MaxAttrs ||
				len(s.Links) > tracing.MaxLinks || len(s.Error) > tracing.MaxErrorLen || s.DurationNS < 0 {
				t.Fatalf("decoded span beyond the limits: %+v", s)
			}
			for k, v := range s.Attrs {
				if len(k) > tracing.MaxAttrKeyLen || len(v) > tracing.MaxAttrValLen {
					t.Fatalf("attribute beyond the limits: %q=%q", k, v)
				}
			}
		}
		if len(spans) == 0 {
			return
		}
		bodies, err := tracing.EncodeBatches(spans, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		var again []tracing.Span
		for _, body := range bodies {
			got, dropped, err := tracing.DecodeBatch(body)
			if err != nil || dropped != 0 {
				t.Fatalf("re-decoding: %v, %d dropped", err, dropped)
			}
			again = append(again, got...)
		}
		if !reflect.DeepEqual(normalize(spans), normalize(again)) {
			t.Fatalf("round trip changed the spans:\n%+v\n%+v", spans, again)
		}
	})
}

func normalize(spans []tracing.Span) []tracing.Span {
	out := make([]tracing.Span, len(spans))
	for i, s := range spans {
		if len(s.Attrs) == 0 {
			s.Attrs = nil
		}
		out[i] = s
	}
	return out
}

func TestEncodeBatchesSplitsAtTheSizeLimit(t *testing.T) {
	spans := make([]tracing.Span, 100)
	for i := range spans {
		spans[i] = tracing.Span{TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", SpanID: "00f067aa0ba902b7", Name: "x"}
	}
	bodies, err := tracing.EncodeBatches(spans, 1000)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, b := range bodies {
		if len(b) > 1000 {
			t.Errorf("a batch of %d bytes, over the limit of 1000", len(b))
		}
		got, _, err := tracing.DecodeBatch(b)
		if err != nil {
			t.Fatal(err)
		}
		n += len(got)
	}
	if n != 100 || len(bodies) < 2 {
		t.Errorf("%d spans in %d batches, want 100 in several", n, len(bodies))
	}
}
