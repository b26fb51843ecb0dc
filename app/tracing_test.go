package app_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/admin"
	"github.com/switchboard-dev/switchboard/app"
	"github.com/switchboard-dev/switchboard/tracestore"
)

var tracedEP = switchboard.Endpoint[*ping, *ping]("traced", "ping")

// TestRunTracesEveryServiceWithoutCode runs a service the way a program
// does: with OTEL_TRACES_SAMPLER=always_on its calls are traced on both
// sides and the spans reach a collector over the bus, with no tracing code
// in the service.
func TestRunTracesEveryServiceWithoutCode(t *testing.T) {
	t.Setenv("OTEL_TRACES_SAMPLER", "always_on")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	svc := switchboard.NewService("traced", "1.0.0")
	tracedEP.Handle(svc, func(ctx context.Context, p *ping) (*ping, error) { return p, nil })
	runCtx, stop := context.WithCancel(ctx)
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- app.RunOptions(runCtx, app.Options{BusURL: "embedded://" + t.TempDir(),
			Ready: func(*admin.Server) { close(ready) }}, svc)
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("RunOptions returned early: %v", err)
	}
	col := tracestore.New()
	if err := col.Start(ctx, svc.Conn()); err != nil {
		t.Fatal(err)
	}

	if _, err := tracedEP.Call(ctx, svc, &ping{}); err != nil {
		t.Fatal(err)
	}
	var got []tracestore.Summary
	if !col.Store().Wait(ctx, func() bool {
		got = col.Store().Recent("traced.ping", 1)
		return len(got) == 1 && got[0].Spans == 2
	}) {
		t.Fatalf("no trace of traced.ping with a client and a server span reached the collector: %+v", got)
	}
	if err := col.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestRunRefusesAMalformedSampler(t *testing.T) {
	t.Setenv("OTEL_TRACES_SAMPLER", "sometimes")
	svc := switchboard.NewService("traced", "1.0.0")
	err := app.RunOptions(context.Background(), app.Options{BusURL: "embedded://" + t.TempDir()}, svc)
	if switchboard.ErrorCode(err) != switchboard.InvalidArgument || !strings.Contains(err.Error(), "OTEL_TRACES_SAMPLER") {
		t.Fatalf("err = %v, want InvalidArgument naming OTEL_TRACES_SAMPLER", err)
	}
}
