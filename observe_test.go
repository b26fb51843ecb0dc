package switchboard_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/bus"
)

// recorder is an Observer that keeps what it was told.
type recorder struct {
	mu         sync.Mutex
	requests   []switchboard.RequestResult
	calls      []switchboard.CallResult
	deliveries []bus.Settled
	publishes  []switchboard.PublishResult
	settled    chan bus.Settled
}

func newRecorder() *recorder { return &recorder{settled: make(chan bus.Settled, 16)} }

func (r *recorder) observer() switchboard.Observer {
	return switchboard.Observer{
		Request: func(x switchboard.RequestResult) { r.mu.Lock(); r.requests = append(r.requests, x); r.mu.Unlock() },
		Call:    func(x switchboard.CallResult) { r.mu.Lock(); r.calls = append(r.calls, x); r.mu.Unlock() },
		Delivery: func(x bus.Settled) {
			r.mu.Lock()
			r.deliveries = append(r.deliveries, x)
			r.mu.Unlock()
			r.settled <- x
		},
		Publish: func(x switchboard.PublishResult) { r.mu.Lock(); r.publishes = append(r.publishes, x); r.mu.Unlock() },
	}
}

func (r *recorder) codes(endpoint string) map[switchboard.Code]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := map[switchboard.Code]int{}
	for _, x := range r.requests {
		if x.Endpoint == endpoint {
			m[x.Code]++
		}
	}
	return m
}

var observedTopic = switchboard.Topic[*greetReq]("observe.test")

func TestObserverSeesEveryRequestIncludingRefusedOnes(t *testing.T) {
	conn := newBus(t)
	ctx := ctxT(t)
	rec := newRecorder()
	g := newGate()
	greeter(t, conn, "1.0.0", g, switchboard.WithObserver(rec.observer()))
	cl := switchboard.NewClient(conn, switchboard.WithCaller("tester"))
	defer cl.Close()

	if _, err := hello.Call(ctx, cl, &greetReq{Name: "Ada"}); err != nil {
		t.Fatal(err)
	}
	if _, err := hello.Call(ctx, cl, &greetReq{}); switchboard.ErrorCode(err) != switchboard.InvalidArgument {
		t.Fatalf("empty name: %v", err)
	}
	// The bulkhead refuses before any middleware runs; the observer still
	// sees it.
	done := make(chan error, 1)
	go func() { _, err := slow.Call(ctx, cl, &greetReq{Name: "first"}); done <- err }()
	<-g.entered
	if _, err := slow.Call(ctx, cl, &greetReq{Name: "second"}); switchboard.ErrorCode(err) != switchboard.ResourceExhausted {
		t.Fatalf("second slow call: %v, want ResourceExhausted", err)
	}
	close(g.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := cl.CallJSON(ctx, "greeter", "nope", nil); switchboard.ErrorCode(err) != switchboard.Unimplemented {
		t.Fatalf("unknown endpoint: %v", err)
	}

	if got := rec.codes("hello"); got[switchboard.OK] != 1 || got[switchboard.InvalidArgument] != 1 {
		t.Errorf("hello: %v, want one OK and one InvalidArgument", got)
	}
	if got := rec.codes("slow"); got[switchboard.OK] != 1 || got[switchboard.ResourceExhausted] != 1 {
		t.Errorf("slow: %v, want one OK and one ResourceExhausted", got)
	}
	if got := rec.codes(switchboard.UnknownEndpoint); got[switchboard.Unimplemented] != 1 {
		t.Errorf("unknown endpoint: %v, want one Unimplemented under %q", got, switchboard.UnknownEndpoint)
	}
	rec.mu.Lock()
	for _, r := range rec.requests {
		if r.Caller != "tester" || r.Duration <= 0 {
			t.Errorf("request %+v: want caller tester and a duration", r)
		}
	}
	rec.mu.Unlock()
}

func TestObserverSeesCallsPublishesAndDeliveries(t *testing.T) {
	conn := newBus(t)
	ctx := ctxT(t)
	greeter(t, conn, "1.0.0", nil)
	rec := newRecorder()
	svc := switchboard.NewService("observer", "1.0.0")
	svc.Observe(rec.observer())
	observedTopic.Subscribe(svc, "obs", func(ctx context.Context, ev *greetReq) error {
		if ev.Name == "bad" {
			return errors.New("bad event")
		}
		return nil
	}, switchboard.MaxAttempts(2), switchboard.Backoff(func(int) time.Duration { return time.Millisecond }))
	if err := svc.Start(ctx, conn); err != nil {
		t.Fatal(err)
	}
	defer svc.Shutdown(context.Background())
	func() {
		defer func() {
			if recover() == nil {
				t.Error("Observe after Start did not panic")
			}
		}()
		svc.Observe(switchboard.Observer{})
	}()

	if _, err := hello.Call(ctx, svc, &greetReq{Name: "Ada"}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"good", "bad"} {
		if err := observedTopic.Publish(ctx, svc, &greetReq{Name: n}); err != nil {
			t.Fatal(err)
		}
	}
	outcomes := map[bus.Outcome]int{}
	for len(outcomes) < 3 {
		select {
		case s := <-rec.settled:
			outcomes[s.Outcome]++
			if s.Outcome == bus.DeadLettered && (s.Attempt != 2 || s.Err == nil) {
				t.Errorf("dead-lettered %+v: want attempt 2 with the error", s)
			}
		case <-ctx.Done():
			t.Fatalf("deliveries settled: %v; want acked, retried and dead_lettered", outcomes)
		}
	}
	if outcomes[bus.Acked] != 1 || outcomes[bus.Retried] != 1 || outcomes[bus.DeadLettered] != 1 {
		t.Errorf("outcomes %v, want one each of acked, retried, dead_lettered", outcomes)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.calls) != 1 || rec.calls[0].Caller != "observer" || rec.calls[0].Service != "greeter" || rec.calls[0].Code != switchboard.OK {
		t.Errorf("calls %+v, want one OK call from observer to greeter", rec.calls)
	}
	if len(rec.publishes) != 2 || rec.publishes[0].Topic != "observe.test" || rec.publishes[0].Code != switchboard.OK {
		t.Errorf("publishes %+v, want two OK publishes to observe.test", rec.publishes)
	}
}

func TestLoadReportsInFlightAndExpectations(t *testing.T) {
	conn := newBus(t)
	ctx := ctxT(t)
	svc := switchboard.NewService("loaded", "1.0.0")
	entered, release := make(chan struct{}), make(chan struct{})
	ep := switchboard.Endpoint[*greetReq, *greetRsp]("loaded", "work")
	ep.Handle(svc, func(ctx context.Context, req *greetReq) (*greetRsp, error) {
		entered <- struct{}{}
		<-release
		return &greetRsp{}, nil
	}, switchboard.MaxInFlight(4), switchboard.ExpectLatency(50*time.Millisecond))
	if err := svc.Start(ctx, conn); err != nil {
		t.Fatal(err)
	}
	defer svc.Shutdown(context.Background())
	done := make(chan error)
	go func() { _, err := ep.Call(ctx, svc, &greetReq{}); done <- err }()
	<-entered
	want := []switchboard.EndpointLoad{{Endpoint: "work", InFlight: 1, MaxInFlight: 4, ExpectP99: 50 * time.Millisecond}}
	if got := svc.Load(); len(got) != 1 || got[0] != want[0] {
		t.Errorf("Load() = %+v, want %+v", got, want)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
