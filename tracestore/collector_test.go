package tracestore_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/bus"
	_ "github.com/switchboard-dev/switchboard/bus/natsbus" // embedded://
	"github.com/switchboard-dev/switchboard/examples/ridehail"
	"github.com/switchboard-dev/switchboard/examples/ridehail/contract"
	"github.com/switchboard-dev/switchboard/examples/ridehail/geo"
	"github.com/switchboard-dev/switchboard/examples/ridehail/proto/ridehailpb"
	"github.com/switchboard-dev/switchboard/tracestore"
	"github.com/switchboard-dev/switchboard/tracing"
	"github.com/switchboard-dev/switchboard/wire"
)

const timeout = 20 * time.Second

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	return ctx
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// platform runs a collector and a tracing pipeline that sends every span
// over an embedded bus.
func platform(t *testing.T) (*bus.Conn, *tracing.Pipeline, *tracestore.Collector) {
	t.Helper()
	conn, err := bus.Open(testContext(t), "embedded://"+t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	col := tracestore.New(tracestore.WithLogger(quiet()))
	if err := col.Start(testContext(t), conn); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { col.Shutdown(context.Background()) })
	p, err := tracing.New(testContext(t), tracing.Options{Bus: conn, Sampler: sdktrace.AlwaysSample(), BatchTimeout: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Shutdown(context.Background()) })
	return conn, p, col
}

func startAll(t *testing.T, conn *bus.Conn, svcs ...*switchboard.Service) {
	t.Helper()
	for _, s := range svcs {
		if err := s.Start(testContext(t), conn); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Shutdown(context.Background()) })
	}
}

// waitTrace waits until the collector holds the trace with at least n
// spans, and returns it as get_trace answers over the bus.
func waitTrace(t *testing.T, p *tracing.Pipeline, col *tracestore.Collector, c switchboard.Caller, id string, n int) *tracestore.Trace {
	t.Helper()
	if err := p.ForceFlush(testContext(t)); err != nil {
		t.Fatal(err)
	}
	if !col.Store().Wait(testContext(t), func() bool { tr, ok := col.Store().Get(id); return ok && len(tr.Spans) >= n }) {
		tr, _ := col.Store().Get(id)
		t.Fatalf("trace %s did not reach %d spans within %s: %+v", id, n, timeout, tr)
	}
	tr, err := tracestore.GetTrace.Call(testContext(t), c, &tracestore.GetTraceRequest{TraceID: id})
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func TestRequestTripFanOutShowsParallelChildrenInTheStoredTrace(t *testing.T) {
	conn, p, col := platform(t)
	svcs := ridehail.Services(quiet())
	if err := p.Instrument(svcs...); err != nil {
		t.Fatal(err)
	}
	startAll(t, conn, svcs...)
	cl := switchboard.NewClient(conn, p.ClientOptions("tester")...)
	defer cl.Close()
	dam := geo.Point{Lat: 52.3731, Lng: 4.8926}
	if _, err := contract.ReportPosition.Call(testContext(t), cl, &contract.ReportPositionRequest{DriverID: "d1", Position: geo.Offset(dam, 0.1, 0.1)}); err != nil {
		t.Fatal(err)
	}
	// Pricing answers 100ms late, so the other two calls of the fan-out
	// certainly start while it is in flight.
	var pricing *switchboard.Service
	for _, s := range svcs {
		if s.Name() == contract.PricingService {
			pricing = s
		}
	}
	if _, err := switchboard.InjectFaults(testContext(t), cl, pricing.ID(), wire.FaultCommand{Op: "set",
		Faults: []wire.Fault{{Endpoint: "quote", LatencyMS: 100}}}); err != nil {
		t.Fatal(err)
	}

	var traceID string
	ctx := testContext(t)
	if _, err := contract.RequestTrip.Call(ctx, cl, &ridehailpb.RequestTripRequest{CustomerId: "ada",
		Pickup: contract.LatLng(dam), Dropoff: contract.LatLng(geo.Offset(dam, -3, 0))}); err != nil {
		t.Fatal(err)
	}
	recent := col.Store().Recent("trips.request_trip", 1)
	if len(recent) == 0 {
		// The server span may still be on its way.
		_ = p.ForceFlush(ctx)
		col.Store().Wait(ctx, func() bool { recent = col.Store().Recent("trips.request_trip", 1); return len(recent) > 0 })
	}
	if len(recent) == 0 {
		t.Fatal("no trace through trips.request_trip")
	}
	traceID = recent[0].TraceID
	// tester → trips, trips → customers, pricing, dispatch (each a client
	// and a server span), dispatch → drivers, two publishes.
	tr := waitTrace(t, p, col, cl, traceID, 10)

	byName := map[string][]tracing.Span{}
	services := map[string]bool{}
	for _, s := range tr.Spans {
		byName[s.Name+"/"+s.Kind] = append(byName[s.Name+"/"+s.Kind], s)
		services[s.Service] = true
	}
	var lines []string
	for _, s := range tr.Spans {
		lines = append(lines, s.Service+" "+s.Kind+" "+s.Name+" +"+time.Duration(s.StartNS-tr.Spans[0].StartNS).String()+" "+time.Duration(s.DurationNS).String())
	}
	t.Logf("trace %s:\n%s", traceID, strings.Join(lines, "\n"))
	if len(services) < 4 {
		t.Errorf("spans from %d services, want tester, trips, customers, pricing, dispatch…", len(services))
	}
	server := one(t, byName, "trips/request_trip/server")
	children := []tracing.Span{
		one(t, byName, "customers/get_customer/client"),
		one(t, byName, "pricing/quote/client"),
		one(t, byName, "dispatch/match/client"),
	}
	quote := children[1]
	for _, c := range children {
		if c.ParentID != server.SpanID || c.Service != "trips" {
			t.Errorf("%s: parent %s in %s, want the trips server span %s", c.Name, c.ParentID, c.Service, server.SpanID)
		}
		if c.StartNS > quote.StartNS+quote.DurationNS {
			t.Errorf("%s started after pricing/quote ended: the fan-out is not parallel", c.Name)
		}
	}
	for _, name := range []string{"customers/get_customer/server", "pricing/quote/server", "dispatch/match/server"} {
		s := one(t, byName, name)
		if s.Service == "trips" {
			t.Errorf("%s is attributed to trips", name)
		}
	}
}

func one(t *testing.T, m map[string][]tracing.Span, key string) tracing.Span {
	t.Helper()
	if len(m[key]) != 1 {
		t.Fatalf("%d spans %s, want 1", len(m[key]), key)
	}
	return m[key][0]
}

func TestGetTraceRejectsMalformedAndUnknownIDs(t *testing.T) {
	conn, _, _ := platform(t)
	cl := switchboard.NewClient(conn)
	defer cl.Close()
	for _, tc := range []struct {
		id   string
		code switchboard.Code
	}{
		{"nothex", switchboard.InvalidArgument},
		{"4BF92F3577B34DA6A3CE929D0E0E4736", switchboard.InvalidArgument},
		{"00000000000000000000000000000000", switchboard.InvalidArgument},
		{"4bf92f3577b34da6a3ce929d0e0e4736", switchboard.NotFound},
	} {
		_, err := tracestore.GetTrace.Call(testContext(t), cl, &tracestore.GetTraceRequest{TraceID: tc.id, WaitMS: 10})
		if switchboard.ErrorCode(err) != tc.code {
			t.Errorf("get_trace(%q) = %v, want %v", tc.id, err, tc.code)
		}
	}
	if _, err := tracestore.GetRecent.Call(testContext(t), cl, &tracestore.RecentRequest{Limit: 5000}); switchboard.ErrorCode(err) != switchboard.InvalidArgument {
		t.Errorf("recent with limit 5000 = %v, want InvalidArgument", err)
	}
}

func TestMalformedBatchesFromTheBusAreIgnored(t *testing.T) {
	conn, _, col := platform(t)
	ctx := testContext(t)
	good := `{"spans":[{"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7","name":"x","kind":"server","service":"s","start_ns":1,"duration_ns":2}]}`
	for _, body := range []string{"{", `{"spans":[{"trace_id":"zz"}]}`, good} {
		if err := conn.Send(ctx, &bus.Message{Subject: tracing.Subject, Body: []byte(body)}); err != nil {
			t.Fatal(err)
		}
	}
	// Messages on one subject from one connection arrive in order: once
	// the good one is in, the bad ones were seen and ignored.
	if !col.Store().Wait(ctx, func() bool { _, ok := col.Store().Get("4bf92f3577b34da6a3ce929d0e0e4736"); return ok }) {
		t.Fatal("the good batch never arrived")
	}
	if st := col.Store().Stats(); st.Traces != 1 || st.Spans != 1 {
		t.Errorf("stats = %+v, want just the good span", st)
	}
}
