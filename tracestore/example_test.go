package tracestore_test

import (
	"fmt"

	"github.com/switchboard-dev/switchboard/tracestore"
	"github.com/switchboard-dev/switchboard/tracing"
)

// A Store keeps recent traces within its limits and finds them by id or by
// the endpoint they passed through. The traces collector (New) feeds one
// from the bus; here spans are added directly.
func ExampleStore() {
	s := tracestore.NewStore(tracestore.Limits{MaxTraces: 100, MaxSpansPerTrace: 50})
	const id = "4bf92f3577b34da6a3ce929d0e0e4736"
	s.Add(
		tracing.Span{TraceID: id, SpanID: "00f067aa0ba902b7", Name: "trips/request_trip", Kind: "server", Service: "trips",
			StartNS: 1_000, DurationNS: 900_000, Attrs: map[string]string{"rpc.service": "trips", "rpc.method": "request_trip"}},
		tracing.Span{TraceID: id, SpanID: "00f067aa0ba902b8", ParentID: "00f067aa0ba902b7", Name: "pricing/quote", Kind: "client", Service: "trips",
			StartNS: 2_000, DurationNS: 300_000, Code: "OK"},
	)
	for _, sum := range s.Recent("trips.request_trip", 10) {
		fmt.Println(sum.TraceID, sum.Root, sum.Spans, "spans", sum.Duration)
	}
	t, _ := s.Get(id)
	for _, sp := range t.Spans {
		fmt.Println(sp.Kind, sp.Name)
	}
	// Output:
	// 4bf92f3577b34da6a3ce929d0e0e4736 trips.request_trip 2 spans 900µs
	// server trips/request_trip
	// client pricing/quote
}
