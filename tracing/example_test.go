package tracing_test

import (
	"context"
	"fmt"
	"os"
	"sort"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/tracing"
)

// A Pipeline installed on a service and a client traces every call on
// both sides. Here the spans go to an in-memory exporter; app.Run sends
// them over the bus (and by OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set).
func ExamplePipeline() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	conn, err := bus.Open(ctx, "embedded://"+dir)
	if err != nil {
		panic(err)
	}
	defer conn.Close()

	mem := tracetest.NewInMemoryExporter()
	p, err := tracing.New(ctx, tracing.Options{Sampler: sdktrace.AlwaysSample(),
		SpanProcessors: []sdktrace.SpanProcessor{sdktrace.NewSimpleSpanProcessor(mem)}})
	if err != nil {
		panic(err)
	}
	defer p.Shutdown(ctx)

	hello := switchboard.Endpoint[*struct{ Name string }, *struct{ Greeting string }]("greeter", "hello")
	svc := switchboard.NewService("greeter", "1.0.0")
	hello.Handle(svc, func(ctx context.Context, req *struct{ Name string }) (*struct{ Greeting string }, error) {
		return &struct{ Greeting string }{"Hello, " + req.Name}, nil
	})
	if err := p.Instrument(svc); err != nil { // before Start
		panic(err)
	}
	if err := svc.Start(ctx, conn); err != nil {
		panic(err)
	}
	defer svc.Shutdown(ctx)

	client := switchboard.NewClient(conn, p.ClientOptions("example")...)
	defer client.Close()
	if _, err := hello.Call(ctx, client, &struct{ Name string }{"Ada"}); err != nil {
		panic(err)
	}

	var lines []string
	for _, s := range mem.GetSpans() {
		lines = append(lines, fmt.Sprintf("%s %s", s.SpanKind, s.Name))
	}
	sort.Strings(lines)
	for _, l := range lines {
		fmt.Println(l)
	}
	// Output:
	// client greeter/hello
	// server greeter/hello
}
