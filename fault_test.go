package switchboard_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/wire"
)

func inject(t *testing.T, ctx context.Context, cl *switchboard.Client, id string, cmd wire.FaultCommand) *wire.FaultState {
	t.Helper()
	st, err := switchboard.InjectFaults(ctx, cl, id, cmd)
	if err != nil {
		t.Fatalf("InjectFaults(%+v): %v", cmd, err)
	}
	return st
}

func firedOn(st *wire.FaultState, target string) int64 {
	for _, f := range st.Faults {
		if f.Target() == target {
			return f.Fired
		}
	}
	return -1
}

func TestFaultInjectionOnEndpoints(t *testing.T) {
	conn := newBus(t)
	svc := greeter(t, conn, "1.0.0", nil)
	cl := switchboard.NewClient(conn)
	ctx := ctxT(t)
	call := func(timeout time.Duration) error {
		_, err := hello.Call(ctx, cl, &greetReq{Name: "Ada"}, switchboard.WithTimeout(timeout))
		return err
	}

	t.Run("an error rate of 1 fails every call with the chosen code and the handler does not run", func(t *testing.T) {
		inject(t, ctx, cl, svc.ID(), wire.FaultCommand{Op: wire.FaultSet, Faults: []wire.Fault{{Endpoint: "hello", ErrorRate: 1, ErrorCode: "Internal"}}})
		for range 5 {
			err := call(5 * time.Second)
			if switchboard.ErrorCode(err) != switchboard.Internal || !strings.Contains(err.Error(), "injected fault") {
				t.Fatalf("got %v, want an injected Internal error", err)
			}
			var be *bus.Error
			if !errors.As(err, &be) || be.Details[switchboard.DetailFault] != "injected" {
				t.Fatalf("error %v does not say the fault was injected: %+v", err, be)
			}
		}
		st := inject(t, ctx, cl, svc.ID(), wire.FaultCommand{Op: wire.FaultGet})
		if got := firedOn(st, "endpoint hello"); got != 5 {
			t.Fatalf("fault fired %d times, want 5", got)
		}
	})

	t.Run("clearing the fault restores service at once", func(t *testing.T) {
		st := inject(t, ctx, cl, svc.ID(), wire.FaultCommand{Op: wire.FaultClear})
		if len(st.Faults) != 0 {
			t.Fatalf("faults after clear: %+v", st.Faults)
		}
		if err := call(5 * time.Second); err != nil {
			t.Fatalf("call after clear: %v", err)
		}
	})

	t.Run("an error rate of one half fails some calls and not others", func(t *testing.T) {
		inject(t, ctx, cl, svc.ID(), wire.FaultCommand{Op: wire.FaultSet, Faults: []wire.Fault{{Endpoint: "*", ErrorRate: 0.5}}})
		defer inject(t, ctx, cl, svc.ID(), wire.FaultCommand{Op: wire.FaultClear})
		failed := 0
		const n = 200
		for range n {
			if err := call(5 * time.Second); err != nil {
				if switchboard.ErrorCode(err) != switchboard.Unavailable {
					t.Fatalf("got %v, want the default code Unavailable", err)
				}
				failed++
			}
		}
		// Binomial(200, 0.5): outside 50..150 has a probability below 1e-12.
		if failed < 50 || failed > 150 {
			t.Fatalf("%d of %d calls failed with error_rate 0.5", failed, n)
		}
		st := inject(t, ctx, cl, svc.ID(), wire.FaultCommand{Op: wire.FaultGet})
		if got := firedOn(st, "endpoint *"); got != int64(failed) {
			t.Fatalf("fault fired %d times, %d calls failed", got, failed)
		}
	})

	t.Run("a dropped reply leaves the caller waiting for its deadline while the handler ran", func(t *testing.T) {
		inject(t, ctx, cl, svc.ID(), wire.FaultCommand{Op: wire.FaultSet, Faults: []wire.Fault{{Endpoint: "hello", DropRate: 1}}})
		defer inject(t, ctx, cl, svc.ID(), wire.FaultCommand{Op: wire.FaultClear})
		before := svc.Info().Stats["hello"].Requests
		if err := call(300 * time.Millisecond); switchboard.ErrorCode(err) != switchboard.DeadlineExceeded {
			t.Fatalf("got %v, want DeadlineExceeded", err)
		}
		if after := svc.Info().Stats["hello"].Requests; after != before+1 {
			t.Fatalf("requests went from %d to %d: the handler should have run once", before, after)
		}
	})

	t.Run("added latency delays the call and is cut short by the caller's deadline", func(t *testing.T) {
		inject(t, ctx, cl, svc.ID(), wire.FaultCommand{Op: wire.FaultSet, Faults: []wire.Fault{{Endpoint: "hello", LatencyMS: 200}}})
		start := time.Now()
		if err := call(5 * time.Second); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d < 200*time.Millisecond {
			t.Fatalf("call took %v with 200ms of injected latency", d)
		}
		inject(t, ctx, cl, svc.ID(), wire.FaultCommand{Op: wire.FaultSet, Faults: []wire.Fault{{Endpoint: "hello", LatencyMS: 60_000}}})
		defer inject(t, ctx, cl, svc.ID(), wire.FaultCommand{Op: wire.FaultClear})
		if err := call(200 * time.Millisecond); switchboard.ErrorCode(err) != switchboard.DeadlineExceeded {
			t.Fatalf("got %v, want DeadlineExceeded", err)
		}
	})

	t.Run("faults show in discovery while set, and expire by themselves when set for a while", func(t *testing.T) {
		st := inject(t, ctx, cl, svc.ID(), wire.FaultCommand{Op: wire.FaultSet, ForMS: 300, Faults: []wire.Fault{{Endpoint: "hello", ErrorRate: 1}}})
		if len(st.Faults) != 1 || st.Faults[0].Until.IsZero() {
			t.Fatalf("state after set: %+v", st)
		}
		if f := svc.Info().Faults; len(f) != 1 || f[0].Endpoint != "hello" {
			t.Fatalf("Info().Faults = %+v", f)
		}
		deadline := time.Now().Add(10 * time.Second)
		for len(svc.Info().Faults) > 0 {
			if time.Now().After(deadline) {
				t.Fatal("the fault set for 300ms did not expire within 10s")
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err := call(5 * time.Second); err != nil {
			t.Fatalf("call after expiry: %v", err)
		}
	})
}

func TestFaultCommandsWithBadInput(t *testing.T) {
	conn := newBus(t)
	svc := greeter(t, conn, "1.0.0", nil)
	cl := switchboard.NewClient(conn)
	ctx := ctxT(t)
	for _, tc := range []struct {
		name string
		cmd  wire.FaultCommand
		code switchboard.Code
		msg  string
	}{
		{"an unknown endpoint is NotFound listing the endpoints", wire.FaultCommand{Op: wire.FaultSet, Faults: []wire.Fault{{Endpoint: "nope", ErrorRate: 1}}},
			switchboard.NotFound, `no endpoint "nope"; its endpoints are: boom, hello, slow, upper`},
		{"an unknown topic is NotFound", wire.FaultCommand{Op: wire.FaultSet, Faults: []wire.Fault{{Topic: "nope", Pause: true}}},
			switchboard.NotFound, `consumes no topic "nope"`},
		{"a rate above 1 is InvalidArgument", wire.FaultCommand{Op: wire.FaultSet, Faults: []wire.Fault{{Endpoint: "hello", ErrorRate: 1.5}}},
			switchboard.InvalidArgument, "error_rate 1.5 must be between 0 and 1"},
		{"an unknown code is InvalidArgument", wire.FaultCommand{Op: wire.FaultSet, Faults: []wire.Fault{{Endpoint: "hello", ErrorRate: 1, ErrorCode: "Oops"}}},
			switchboard.InvalidArgument, `unknown error code "Oops"`},
		{"a fault that does nothing is InvalidArgument", wire.FaultCommand{Op: wire.FaultSet, Faults: []wire.Fault{{Endpoint: "hello"}}},
			switchboard.InvalidArgument, "it does nothing"},
		{"pausing an endpoint is InvalidArgument", wire.FaultCommand{Op: wire.FaultSet, Faults: []wire.Fault{{Endpoint: "hello", Pause: true}}},
			switchboard.InvalidArgument, "pause applies to topics only"},
		{"an unknown op is InvalidArgument", wire.FaultCommand{Op: "explode"},
			switchboard.InvalidArgument, `unknown op "explode"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := switchboard.InjectFaults(ctx, cl, svc.ID(), tc.cmd)
			if switchboard.ErrorCode(err) != tc.code || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got %v, want %v containing %q", err, tc.code, tc.msg)
			}
		})
	}
	t.Run("a malformed command is InvalidArgument and changes nothing", func(t *testing.T) {
		rep, err := conn.Request(ctx, &bus.Message{Subject: wire.FaultSubject(svc.ID()), Body: []byte(`{"op": "set", "faults": [`)})
		if err != nil {
			t.Fatal(err)
		}
		if err := wire.DecodeError(rep.Header); switchboard.ErrorCode(err) != switchboard.InvalidArgument {
			t.Fatalf("got %v, want InvalidArgument", err)
		}
		if f := svc.Info().Faults; len(f) != 0 {
			t.Fatalf("faults after a malformed command: %+v", f)
		}
	})
	t.Run("an instance that is not running is Unavailable at once", func(t *testing.T) {
		_, err := switchboard.InjectFaults(ctx, cl, "nosuchinstance", wire.FaultCommand{Op: wire.FaultGet})
		if switchboard.ErrorCode(err) != switchboard.Unavailable || !strings.Contains(err.Error(), `"nosuchinstance" is not running`) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("a service started WithoutFaultInjection takes no commands", func(t *testing.T) {
		other := switchboard.NewService("sealed", "1.0.0", switchboard.WithoutFaultInjection())
		hello2 := switchboard.Endpoint[*greetReq, *greetRsp]("sealed", "hello")
		hello2.Handle(other, func(ctx context.Context, req *greetReq) (*greetRsp, error) { return &greetRsp{}, nil })
		if err := other.Start(ctx, conn); err != nil {
			t.Fatal(err)
		}
		defer other.Shutdown(context.Background())
		_, err := switchboard.InjectFaults(ctx, cl, other.ID(), wire.FaultCommand{Op: wire.FaultGet})
		if switchboard.ErrorCode(err) != switchboard.Unavailable {
			t.Fatalf("got %v, want Unavailable", err)
		}
	})
}

func TestFaultInjectionPausesAConsumer(t *testing.T) {
	conn := newBus(t)
	ctx := ctxT(t)
	topic := switchboard.Topic[*orderPlaced]("orders.paused." + strings.ReplaceAll(t.Name(), "/", "_"))
	var consumed atomic.Int64
	all := make(chan struct{})
	const n = 10
	svc := switchboard.NewService("shipping", "1.0.0")
	topic.Subscribe(svc, "shipping", func(ctx context.Context, ev *orderPlaced) error {
		if consumed.Add(1) == n {
			close(all)
		}
		return nil
	}, switchboard.Concurrency(2))
	if err := svc.Start(ctx, conn); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Shutdown(context.Background()) })
	cl := switchboard.NewClient(conn)

	inject(t, ctx, cl, svc.ID(), wire.FaultCommand{Op: wire.FaultSet, Faults: []wire.Fault{{Topic: topic.Name(), Pause: true}}})
	for i := range n {
		if err := topic.Publish(ctx, cl, &orderPlaced{N: i}); err != nil {
			t.Fatal(err)
		}
	}
	// The fault fires when a delivery reaches the paused handler.
	deadline := time.Now().Add(10 * time.Second)
	for firedOn(inject(t, ctx, cl, svc.ID(), wire.FaultCommand{Op: wire.FaultGet}), "topic "+topic.Name()) < 1 {
		if time.Now().After(deadline) {
			t.Fatal("no delivery reached the paused consumer within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if c := consumed.Load(); c != 0 {
		t.Fatalf("%d events consumed while paused", c)
	}
	inject(t, ctx, cl, svc.ID(), wire.FaultCommand{Op: wire.FaultClear, Faults: []wire.Fault{{Topic: topic.Name()}}})
	select {
	case <-all:
	case <-time.After(15 * time.Second):
		t.Fatalf("only %d of %d events consumed within 15s of resuming", consumed.Load(), n)
	}
}
