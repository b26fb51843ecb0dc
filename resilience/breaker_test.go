package resilience_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/resilience"
)

// downstream is an Invoker standing for a target that is healthy or not.
type downstream struct {
	calls   atomic.Int64
	healthy atomic.Bool
	code    bus.Code      // returned when unhealthy (default Unavailable)
	gate    chan struct{} // if set, calls wait for it
}

func (d *downstream) invoke(ctx context.Context, _ *switchboard.Call, _ any) error {
	d.calls.Add(1)
	if d.gate != nil {
		<-d.gate
	}
	if d.healthy.Load() {
		return nil
	}
	code := d.code
	if code == bus.OK {
		code = bus.Unavailable
	}
	return bus.Errorf(code, "downstream is broken")
}

// transitions records a breaker's state changes.
type transitions struct {
	mu  sync.Mutex
	got []string
}

func (tr *transitions) add(t resilience.Transition) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.got = append(tr.got, fmt.Sprintf("%s→%s", t.From, t.To))
}

func (tr *transitions) list() []string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return slices.Clone(tr.got)
}

func TestBreakerOpensFailsFastProbesAndCloses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		var tr transitions
		var reasons []string
		var b *resilience.Breaker
		b = &resilience.Breaker{MinRequests: 10, FailureRatio: 0.5, Window: 10 * time.Second, OpenFor: 2 * time.Second, Probes: 2,
			Logger: quiet,
			OnStateChange: func(t resilience.Transition) {
				tr.add(t)
				reasons = append(reasons, t.Reason)
				_ = b.States() // allowed: called outside the breaker's locks
			}}
		d := &downstream{}
		d.healthy.Store(true)
		inv := b.Middleware()(d.invoke)
		c := call("pricing", "quote")

		for range 20 {
			if err := inv(ctx, c, nil); err != nil {
				t.Fatal(err)
			}
		}
		d.healthy.Store(false)
		var err error
		for err == nil || detail(err, "breaker") == "" {
			err = inv(ctx, c, nil)
		}
		// 20 successes, then failures until half of the calls failed.
		if got := d.calls.Load(); got != 40 {
			t.Fatalf("opened after %d calls, want 40 (20 failures of 40)", got)
		}
		if st := b.States(); len(st) != 1 || st[0].State != resilience.StateOpen || st[0].LastFailure == "" {
			t.Fatalf("states %+v", st)
		}

		{ // while open, calls fail fast and never reach the target
			sent := d.calls.Load()
			time.Sleep(500 * time.Millisecond)
			for range 100 {
				err := inv(ctx, c, nil)
				wantReason(t, err, bus.Unavailable, "20 of 40 calls failed", "breaker", "open", "retry_after", "1.5s")
			}
			if d.calls.Load() != sent {
				t.Fatalf("the target saw %d calls while the breaker was open", d.calls.Load()-sent)
			}
		}
		{ // after OpenFor, a limited number of probes go through
			time.Sleep(1501 * time.Millisecond) // open expires strictly after OpenFor
			d.gate = make(chan struct{})
			d.healthy.Store(true)
			var wg sync.WaitGroup
			for range 2 {
				wg.Go(func() {
					if err := inv(ctx, c, nil); err != nil {
						t.Error(err)
					}
				})
			}
			synctest.Wait()
			err := inv(ctx, c, nil)
			wantReason(t, err, bus.Unavailable, "half-open", "breaker", "half-open")
			close(d.gate)
			wg.Wait()
			d.gate = nil
			if st := b.States(); st[0].State != resilience.StateClosed {
				t.Fatalf("after two good probes the breaker is %s", st[0].State)
			}
		}
		{ // a failed probe opens it again
			d.healthy.Store(false)
			for detail(inv(ctx, c, nil), "breaker") == "" {
			}
			time.Sleep(2*time.Second + time.Millisecond)
			err := inv(ctx, c, nil) // the probe fails
			wantReason(t, err, bus.Unavailable, "downstream is broken")
			err = inv(ctx, c, nil)
			wantReason(t, err, bus.Unavailable, "a probe failed", "breaker", "open", "retry_after", "2s")
		}
		want := []string{"closed→open", "open→half-open", "half-open→closed", "closed→open", "open→half-open", "half-open→open"}
		if got := tr.list(); !slices.Equal(got, want) {
			t.Fatalf("transitions %v, want %v", got, want)
		}
		t.Logf("transition reasons: %q", reasons)
	})
}

func TestBreakerCountsOnlyFailuresThatMeanTheTargetIsUnhealthy(t *testing.T) {
	for _, tc := range []struct {
		code  bus.Code
		opens bool
	}{
		{bus.Unavailable, true}, {bus.DeadlineExceeded, true}, {bus.Internal, true}, {bus.ResourceExhausted, true},
		{bus.InvalidArgument, false}, {bus.NotFound, false}, {bus.PermissionDenied, false}, {bus.Canceled, false},
	} {
		t.Run(tc.code.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := &resilience.Breaker{Logger: quiet}
				d := &downstream{code: tc.code}
				inv := b.Middleware()(d.invoke)
				for range 100 {
					_ = inv(context.Background(), call("svc", "ep"), nil)
				}
				st := b.States()[0]
				if opens := st.State == resilience.StateOpen; opens != tc.opens {
					t.Fatalf("after 100 %v errors the breaker is %s", tc.code, st.State)
				}
				if tc.code == bus.Canceled && st.Successes+st.Failures != 0 {
					t.Fatalf("canceled calls were counted: %+v", st)
				}
			})
		})
	}
}

func TestBreakerIsPerEndpointAndPerInstance(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &resilience.Breaker{MinRequests: 5, Logger: quiet}
		bad, good := &downstream{}, &downstream{}
		good.healthy.Store(true)
		inv := b.Middleware()(func(ctx context.Context, c *switchboard.Call, r any) error {
			if c.Envelope.Instance == "bad" || c.Endpoint == "broken" {
				return bad.invoke(ctx, c, r)
			}
			return good.invoke(ctx, c, r)
		})
		on := func(ep, inst string) *switchboard.Call {
			c := call("svc", ep)
			c.Envelope.Instance = inst
			return c
		}
		for range 10 {
			_ = inv(context.Background(), on("ep", "bad"), nil)
			_ = inv(context.Background(), on("broken", ""), nil)
		}
		for _, c := range []*switchboard.Call{on("ep", "good"), on("ep", "")} {
			if err := inv(context.Background(), c, nil); err != nil {
				t.Fatalf("%s/%s: %v", c.Endpoint, c.Envelope.Instance, err)
			}
		}
		err := inv(context.Background(), on("ep", "bad"), nil)
		wantReason(t, err, bus.Unavailable, `svc.ep (instance bad) is open`, "breaker", "open")
		var got []string
		for _, s := range b.States() {
			got = append(got, fmt.Sprintf("%s.%s@%s=%s", s.Service, s.Endpoint, s.Instance, s.State))
		}
		want := []string{"svc.broken@=open", "svc.ep@=closed", "svc.ep@bad=open", "svc.ep@good=closed"}
		if !slices.Equal(got, want) {
			t.Fatalf("states %v, want %v", got, want)
		}
	})
}

var pricingQuote = switchboard.Endpoint[*req, *rsp]("pricing", "quote")

func TestBreakerOverTheBus(t *testing.T) {
	conn := newBus(t)
	var healthy atomic.Bool
	var served atomic.Int64
	svc := switchboard.NewService("pricing", "1.0.0", switchboard.WithLogger(quiet))
	pricingQuote.Handle(svc, func(ctx context.Context, r *req) (*rsp, error) {
		served.Add(1)
		if !healthy.Load() {
			return nil, switchboard.Errorf(switchboard.Internal, "pricing: database is down")
		}
		return &rsp{N: r.N}, nil
	})
	start(t, conn, svc)
	var tr transitions
	b := &resilience.Breaker{MinRequests: 5, OpenFor: 300 * time.Millisecond, Logger: quiet, OnStateChange: tr.add}
	cl := switchboard.NewClient(conn, switchboard.WithClientMiddleware(b.Middleware()))
	ctx := ctxT(t)

	var err error
	for detail(err, "breaker") == "" {
		_, err = pricingQuote.Call(ctx, cl, &req{})
	}
	opened := served.Load()
	wantReason(t, err, bus.Unavailable, "pricing: database is down", "breaker", "open", "retry_after", "*")
	wait, _ := bus.RetryAfter(err)

	var ledger ledger
	ledger.add("calls that opened it", opened)
	fast := 0
	for t0 := time.Now(); time.Since(t0) < wait/2; fast++ {
		_, err := pricingQuote.Call(ctx, cl, &req{})
		wantReason(t, err, bus.Unavailable, "is open", "breaker", "open")
	}
	ledger.add("failed fast while open", fast)
	ledger.add("seen by the target meanwhile", served.Load()-opened)
	if served.Load() != opened {
		t.Fatalf("the target saw %d calls while the breaker was open", served.Load()-opened)
	}

	healthy.Store(true)
	time.Sleep(wait) // the breaker's own timer: nothing to wait on instead
	if r, err := pricingQuote.Call(ctx, cl, &req{N: 5}); err != nil || r.N != 5 {
		t.Fatalf("probe: %v, %v", r, err)
	}
	ledger.add("probe calls", served.Load()-opened)
	ledger.add("state after the probe", b.States()[0].State)
	ledger.add("transitions", tr.list())
	ledger.print(t, "breaker over the bus")
	if st := b.States()[0]; st.State != resilience.StateClosed {
		t.Fatalf("after a good probe: %+v", st)
	}
	if want := []string{"closed→open", "open→half-open", "half-open→closed"}; !slices.Equal(tr.list(), want) {
		t.Fatalf("transitions %v, want %v", tr.list(), want)
	}
}
