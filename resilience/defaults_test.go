package resilience_test

import (
	"context"
	"errors"
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

var ledgerPost = switchboard.Endpoint[*req, *rsp]("accounts", "post")

func TestDefaultsDuringATotalOutageOfADownstream(t *testing.T) {
	conn := newBus(t)
	var up atomic.Bool
	var issued atomic.Int64
	down := resilience.Defaults()
	svc := switchboard.NewService("accounts", "1.0.0", append(down.ServiceOptions(), switchboard.WithLogger(quiet))...)
	ledgerPost.Handle(svc, func(ctx context.Context, r *req) (*rsp, error) {
		issued.Add(1)
		if !up.Load() {
			return nil, switchboard.Errorf(switchboard.Unavailable, "accounts: database unreachable")
		}
		return &rsp{N: r.N}, nil
	})
	start(t, conn, svc)

	p := resilience.Defaults()
	p.Breaker.OpenFor = 300 * time.Millisecond
	p.Breaker.Logger = quiet
	var tr transitions
	p.Breaker.OnStateChange = tr.add
	var gaveUp sync.Map
	p.Retry.Observe = func(d resilience.Decision) {
		if d.Action == "give_up" {
			n, _ := gaveUp.LoadOrStore(d.Reason, new(atomic.Int64))
			n.(*atomic.Int64).Add(1)
		}
	}
	cl := switchboard.NewClient(conn, p.ClientOptions()...)

	var made, ok, failed, fast atomic.Int64
	run := func(d time.Duration) {
		var wg sync.WaitGroup
		for range 6 {
			wg.Go(func() {
				for t0 := time.Now(); time.Since(t0) < d; time.Sleep(time.Millisecond) {
					made.Add(1)
					_, err := ledgerPost.Call(ctxT(t), cl, &req{N: 1}, switchboard.WithTimeout(200*time.Millisecond))
					switch {
					case err == nil:
						ok.Add(1)
					case detail(err, "breaker") != "":
						fast.Add(1)
					default:
						failed.Add(1)
					}
				}
			})
		}
		wg.Wait()
	}
	run(1500 * time.Millisecond) // the downstream is down
	outageMade, outageIssued := made.Load(), issued.Load()
	opened := slices.Contains(tr.list(), "closed→open")
	up.Store(true)
	// The breaker lets a probe through within OpenFor; calls succeed after.
	run(1000 * time.Millisecond)

	var l ledger
	l.add("outage: calls made", outageMade)
	l.add("outage: calls issued", outageIssued)
	l.add("outage: amplification", fmt.Sprintf("%.3f", float64(outageIssued)/float64(outageMade)))
	l.add("total: calls made", made.Load())
	l.add("total: calls issued", issued.Load())
	l.add("succeeded", ok.Load())
	l.add("failed fast by the breaker", fast.Load())
	l.add("failed after retries", failed.Load())
	gaveUp.Range(func(k, v any) bool { l.add("retry gave up: "+k.(string), v.(*atomic.Int64).Load()); return true })
	l.add("breaker transitions", tr.list())
	l.add("breaker now", p.Breaker.States()[0].State)
	l.print(t, "defaults (retry + budget + breaker), total outage then recovery, real bus")

	if bound := 1.1*float64(outageMade) + 10; float64(outageIssued) > bound {
		t.Errorf("during the outage %d calls issued for %d made, over (1 + 0.1) × made + 10", outageIssued, outageMade)
	}
	if !opened {
		t.Error("the breaker did not open during the outage")
	}
	if st := p.Breaker.States()[0].State; st != resilience.StateClosed {
		t.Errorf("the breaker is %s after the downstream came back", st)
	}
	if ok.Load() == 0 {
		t.Error("no call succeeded after the downstream came back")
	}
	// The server side of the defaults admitted everything: no overload here.
	if st := down.Shed.Stats(); len(st) != 1 || st[0].Rejected != 0 {
		t.Errorf("shedding without overload: %+v", st)
	}
}

func TestDefaultsAreWiredInOrder(t *testing.T) {
	p := resilience.Defaults()
	if n := len(p.Client()); n != 2 {
		t.Fatalf("%d client middlewares, want retry and breaker", n)
	}
	if n := len(p.Server()); n != 1 {
		t.Fatalf("%d server middlewares, want shed", n)
	}
	p.ClientRateLimits = []*resilience.RateLimit{{Limit: resilience.Limit{Rate: 1}}}
	p.ServerRateLimits = []*resilience.RateLimit{{Key: resilience.PerCaller, Limit: resilience.Limit{Rate: 1}}}
	if len(p.Client()) != 3 || len(p.Server()) != 2 {
		t.Fatal("rate limits not added")
	}
	// A client rate limit sits inside Retry and outside Breaker: its
	// refusals are retried after their hint and never count against the
	// target.
	conn := newBus(t)
	var served atomic.Int64
	svc := switchboard.NewService("accounts", "1.0.0", switchboard.WithLogger(quiet))
	ledgerPost.Handle(svc, func(ctx context.Context, r *req) (*rsp, error) { served.Add(1); return &rsp{}, nil })
	start(t, conn, svc)
	p.ClientRateLimits[0].Limit = resilience.Limit{Rate: 20, Burst: 1}
	p.Breaker.Logger = quiet
	cl := switchboard.NewClient(conn, p.ClientOptions()...)
	for range 5 {
		if _, err := ledgerPost.Call(ctxT(t), cl, &req{}); err != nil {
			t.Fatal(err)
		}
	}
	if st := p.Breaker.States(); served.Load() != 5 || st[0].Failures != 0 {
		t.Fatalf("served %d, breaker %+v", served.Load(), st)
	}
}

// BenchmarkDefaults measures what the default protections add to a call:
// alone around a no-op call, and over the bus against the same call
// without them, in the same run (compare the ns/op of the sub-benchmarks).
func BenchmarkDefaults(b *testing.B) {
	b.Run("client middleware around a no-op call", func(b *testing.B) {
		p := resilience.Defaults()
		inv := func(ctx context.Context, c *switchboard.Call, r any) error { return nil }
		for _, mw := range slices.Backward(p.Client()) {
			inv = mw(inv)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
		defer cancel()
		c := call("accounts", "post")
		b.ReportAllocs()
		for b.Loop() {
			_ = inv(ctx, c, nil)
		}
	})
	b.Run("server middleware around a no-op handler", func(b *testing.B) {
		p := resilience.Defaults()
		h := func(ctx context.Context, c *switchboard.Call) (any, error) { return nil, nil }
		for _, mw := range slices.Backward(p.Server()) {
			h = mw(h)
		}
		c := call("accounts", "post")
		b.ReportAllocs()
		for b.Loop() {
			_, _ = h(context.Background(), c)
		}
	})
	conn := newBus(b)
	for _, tc := range []struct {
		name string
		p    *resilience.Protections
	}{{"call over the bus without protections", &resilience.Protections{}}, {"call over the bus with Defaults", resilience.Defaults()}} {
		b.Run(tc.name, func(b *testing.B) {
			svc := switchboard.NewService("accounts", "1.0.0", append(tc.p.ServiceOptions(), switchboard.WithLogger(quiet))...)
			ledgerPost.Handle(svc, func(ctx context.Context, r *req) (*rsp, error) { return &rsp{N: r.N}, nil })
			start(b, conn, svc)
			cl := switchboard.NewClient(conn, tc.p.ClientOptions()...)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ledgerPost.Call(ctx, cl, &req{N: 1}); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			_ = svc.Shutdown(ctx)
		})
	}
}

func TestEveryRefusalSaysWhy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		down := func(ctx context.Context, c *switchboard.Call, r any) error {
			return bus.Errorf(bus.Unavailable, "accounts: database unreachable")
		}
		busy := func(ctx context.Context, c *switchboard.Call) (any, error) { time.Sleep(time.Second); return nil, nil }

		type refusal struct {
			name string
			err  error
			code bus.Code
			text string
			kv   []string
		}
		var got []refusal

		// Retry: budget exhausted (no reserve, so the first retry is refused).
		noBudget := resilience.Retry{Budget: &resilience.Budget{MinPerSecond: -1}}.Middleware()(down)
		got = append(got, refusal{"retry budget", noBudget(ctx, call("accounts", "post"), nil), bus.Unavailable,
			"not retried: retry budget exhausted", []string{"retry", "budget exhausted", "attempts", "1"}})
		// Retry: attempts exhausted.
		r := resilience.Retry{Budget: &resilience.Budget{Ratio: 1000}}.Middleware()(down)
		got = append(got, refusal{"retry attempts", r(ctx, call("accounts", "post"), nil), bus.Unavailable,
			"gave up after 3 attempts", []string{"retry", "attempts exhausted", "attempts", "3"}})
		// Breaker: open.
		b := &resilience.Breaker{MinRequests: 1, Logger: quiet}
		br := b.Middleware()(down)
		_ = br(ctx, call("accounts", "post"), nil)
		got = append(got, refusal{"breaker", br(ctx, call("accounts", "post"), nil), bus.Unavailable,
			"circuit breaker for accounts.post is open: 1 of 1 calls failed", []string{"breaker", "open", "retry_after", "5s"}})
		// Rate limit on the server.
		rl := (&resilience.RateLimit{Key: resilience.PerCaller, Limit: resilience.Limit{Rate: 2}}).Server()((&counting{}).handle)
		c := call("accounts", "post")
		c.Envelope.Caller = "web"
		_, _ = rl(ctx, c)
		_, err := rl(ctx, c)
		got = append(got, refusal{"rate limit", err, bus.ResourceExhausted,
			`rate limit "web" of 2/s exceeded; retry in 500ms`, []string{"rate_limit", "web", "limit", "2/s", "retry_after", "500ms", "unprocessed", "accounts.post"}})
		// Shed.
		sh := (&resilience.Shed{InitialLimit: 1, MinLimit: 1}).Middleware()(busy)
		var wg sync.WaitGroup
		defer wg.Wait()
		wg.Go(func() { _, _ = sh(ctx, call("accounts", "post")) })
		synctest.Wait()
		_, err = sh(ctx, call("accounts", "post"))
		got = append(got, refusal{"shed", err, bus.ResourceExhausted,
			"accounts.post is overloaded: 1 calls in flight, its adaptive concurrency limit is 1",
			[]string{"shed", "concurrency", "limit", "1", "in_flight", "1", "retry_after", "1ms", "unprocessed", "accounts.post"}})

		for _, g := range got {
			wantReason(t, g.err, g.code, g.text, g.kv...)
			t.Logf("%-12s %v %v", g.name, g.err, func() map[string]string {
				var e *bus.Error
				errors.As(g.err, &e)
				return e.Details
			}())
		}
	})
}
