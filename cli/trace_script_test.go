package cli_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/tracestore"
	"github.com/switchboard-dev/switchboard/tracing"
)

// knownTrace is the id of the trace startTraced records before the scripts
// run (trace.txtar reads it): tfront.serial, called by "setup".
const knownTrace = "5b8efff798038103d269b633813fc60c"

type (
	workRequest struct {
		MS   int  `json:"ms"`
		Fail bool `json:"fail"`
	}
	workReply struct {
		Done int `json:"done"`
	}
)

var (
	frontParallel = switchboard.Endpoint[*workRequest, *workReply]("tfront", "parallel")
	frontSerial   = switchboard.Endpoint[*workRequest, *workReply]("tfront", "serial")
	frontBroken   = switchboard.Endpoint[*workRequest, *workReply]("tfront", "broken")
	backWork      = switchboard.Endpoint[*workRequest, *workReply]("tback", "work")
)

// startTraced runs, for trace*.txtar, a traces collector and two traced
// services: tfront calls tback.work three times in parallel (parallel), one
// after another (serial), or once with a failure (broken). Every trace is
// recorded and sent over the bus at once.
func startTraced(t *testing.T, conn *bus.Conn) {
	t.Helper()
	ctx := context.Background()
	quiet := slog.New(slog.DiscardHandler)
	col := tracestore.New(tracestore.WithLogger(quiet))
	if err := col.Start(ctx, conn); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { col.Shutdown(context.Background()) })
	p, err := tracing.New(ctx, tracing.Options{Bus: conn, Sampler: sdktrace.AlwaysSample(), BatchTimeout: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Shutdown(context.Background()) })

	back := switchboard.NewService("tback", "1.0.0", switchboard.WithLogger(quiet))
	backWork.Handle(back, func(ctx context.Context, r *workRequest) (*workReply, error) {
		if r.Fail {
			return nil, switchboard.Errorf(switchboard.NotFound, "no work here")
		}
		// Stands for work that takes a while, so that the timeline shows it.
		select {
		case <-time.After(time.Duration(r.MS) * time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return &workReply{Done: 1}, nil
	})
	front := switchboard.NewService("tfront", "1.0.0", switchboard.WithLogger(quiet))
	frontParallel.Handle(front, func(ctx context.Context, r *workRequest) (*workReply, error) {
		var wg sync.WaitGroup
		errs := make([]error, 3)
		for i := range 3 {
			wg.Go(func() { _, errs[i] = backWork.Call(ctx, front, &workRequest{MS: 20}) })
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				return nil, err
			}
		}
		return &workReply{Done: 3}, nil
	})
	frontSerial.Handle(front, func(ctx context.Context, r *workRequest) (*workReply, error) {
		for range 3 {
			if _, err := backWork.Call(ctx, front, &workRequest{MS: 20}); err != nil {
				return nil, err
			}
		}
		return &workReply{Done: 3}, nil
	})
	frontBroken.Handle(front, func(ctx context.Context, r *workRequest) (*workReply, error) {
		return backWork.Call(ctx, front, &workRequest{Fail: true})
	})
	if err := p.Instrument(back, front); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*switchboard.Service{back, front} {
		if err := s.Start(ctx, conn); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Shutdown(context.Background()) })
	}

	// The known trace: a serial call whose trace id the scripts know.
	id, _ := trace.TraceIDFromHex(knownTrace)
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	sctx := trace.ContextWithRemoteSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: id, SpanID: sid, TraceFlags: trace.FlagsSampled, Remote: true}))
	cl := switchboard.NewClient(conn, append(p.ClientOptions("setup"), switchboard.WithCaller("setup"))...)
	defer cl.Close()
	wctx, cancel := context.WithTimeout(sctx, 20*time.Second)
	defer cancel()
	if _, err := frontSerial.Call(wctx, cl, &workRequest{}); err != nil {
		t.Fatal(err)
	}
	if err := p.ForceFlush(wctx); err != nil {
		t.Fatal(err)
	}
	// tfront's server span, three calls and three server spans of tback,
	// and the client span of setup.
	if !col.Store().Wait(wctx, func() bool { tr, ok := col.Store().Get(knownTrace); return ok && len(tr.Spans) == 8 }) {
		t.Fatal("the known trace did not reach the collector")
	}
}
