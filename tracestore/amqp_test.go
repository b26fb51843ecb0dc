package tracestore_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/bus"
	_ "github.com/switchboard-dev/switchboard/bus/amqpbus" // amqp://
	"github.com/switchboard-dev/switchboard/internal/amqptest"
	"github.com/switchboard-dev/switchboard/tracestore"
	"github.com/switchboard-dev/switchboard/tracing"
)

type (
	hop      struct{ N int }
	hopReply struct{ N int }
)

// TestTracesOnRabbitMQ: trace context crosses RabbitMQ in the AMQP headers
// table and spans reach the collector over the sb.msg exchange, as on NATS.
func TestTracesOnRabbitMQ(t *testing.T) {
	url := amqptest.URL(t)
	ctx := testContext(t)
	conn, err := bus.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	// The broker is shared with other tests: names of our own.
	suffix := fmt.Sprintf("%08x", rand.Uint32())
	front, back := "tfront"+suffix, "tback"+suffix
	frontEP := switchboard.Endpoint[*hop, *hopReply](front, "go")
	backEP := switchboard.Endpoint[*hop, *hopReply](back, "go")

	col := tracestore.New(tracestore.WithLogger(quiet()))
	if err := col.Start(ctx, conn); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { col.Shutdown(context.Background()) })
	p, err := tracing.New(ctx, tracing.Options{Bus: conn, Sampler: sdktrace.AlwaysSample(), BatchTimeout: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Shutdown(context.Background()) })
	fs := switchboard.NewService(front, "1.0.0", switchboard.WithLogger(quiet()))
	bs := switchboard.NewService(back, "1.0.0", switchboard.WithLogger(quiet()))
	frontEP.Handle(fs, func(ctx context.Context, h *hop) (*hopReply, error) { return backEP.Call(ctx, fs, h) })
	backEP.Handle(bs, func(ctx context.Context, h *hop) (*hopReply, error) { return &hopReply{N: h.N + 1}, nil })
	if err := p.Instrument(fs, bs); err != nil {
		t.Fatal(err)
	}
	startAll(t, conn, bs, fs)
	cl := switchboard.NewClient(conn, p.ClientOptions("tester")...)
	defer cl.Close()
	if _, err := frontEP.Call(ctx, cl, &hop{N: 1}); err != nil {
		t.Fatal(err)
	}
	if err := p.ForceFlush(ctx); err != nil {
		t.Fatal(err)
	}
	var sums []tracestore.Summary
	if !col.Store().Wait(ctx, func() bool {
		sums = col.Store().Recent(front+".go", 1)
		return len(sums) == 1 && sums[0].Spans == 4
	}) {
		t.Fatalf("no trace of %s.go with its four spans reached the collector: %+v", front, sums)
	}
	tr, _ := col.Store().Get(sums[0].TraceID)
	parent := map[string]string{}
	name := map[string]string{}
	for _, s := range tr.Spans {
		name[s.SpanID] = s.Name + "/" + s.Kind
		parent[s.Name+"/"+s.Kind] = s.ParentID
	}
	for child, want := range map[string]string{
		front + "/go/server": front + "/go/client",
		back + "/go/client":  front + "/go/server",
		back + "/go/server":  back + "/go/client",
	} {
		if got := name[parent[child]]; got != want {
			t.Errorf("parent of %s is %q, want %s", child, got, want)
		}
	}
}
