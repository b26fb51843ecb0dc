package resilience_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/resilience"
)

// counting is a server Handler that counts the calls it serves.
type counting struct{ served atomic.Int64 }

func (c *counting) handle(ctx context.Context, call *switchboard.Call) (any, error) {
	c.served.Add(1)
	return "ok", nil
}

func from(caller string) *switchboard.Call {
	c := call("vendor", "quote")
	c.Envelope.Caller = caller
	return c
}

func TestRateLimitAdmitsAtMostTheLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := &counting{}
		serve := (&resilience.RateLimit{Limit: resilience.Limit{Rate: 100, Burst: 10}}).Server()(h.handle)
		var rejected atomic.Int64
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(time.Millisecond) {
					_, err := serve(context.Background(), from("web"))
					if err == nil {
						continue
					}
					rejected.Add(1)
					wantReason(t, err, bus.ResourceExhausted, "rate limit \"vendor.quote\" of 100/s burst 10 exceeded",
						"rate_limit", "vendor.quote", "limit", "100/s burst 10", "retry_after", "*")
					if d, _ := bus.RetryAfter(err); d <= 0 || d > 10*time.Millisecond {
						t.Errorf("retry_after %v: a token comes every 10ms", d)
					}
				}
			})
		}
		wg.Wait()
		if n := h.served.Load(); n > 210 || n < 200 {
			t.Fatalf("served %d calls in 2s at 100/s with a burst of 10, want 200..210", n)
		}
		t.Logf("served %d, rejected %d", h.served.Load(), rejected.Load())
	})
}

func TestRateLimitPerCallerWithOverrides(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		served := map[string]*atomic.Int64{"a": {}, "b": {}, "vip": {}}
		l := &resilience.RateLimit{Key: resilience.PerCaller, Limit: resilience.Limit{Rate: 10, Burst: 1},
			Overrides: map[string]resilience.Limit{"vip": {Rate: 100, Burst: 1}}}
		serve := l.Server()(func(ctx context.Context, c *switchboard.Call) (any, error) {
			served[c.Envelope.Caller].Add(1)
			return nil, nil
		})
		var wg sync.WaitGroup
		for caller := range served {
			wg.Go(func() {
				for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(time.Millisecond) {
					_, err := serve(context.Background(), from(caller))
					if err != nil && detail(err, "rate_limit") != caller {
						t.Errorf("%s rejected under key %q", caller, detail(err, "rate_limit"))
					}
				}
			})
		}
		wg.Wait()
		for caller, want := range map[string]int64{"a": 10, "b": 10, "vip": 100} {
			if n := served[caller].Load(); n < want || n > want+1 {
				t.Errorf("%s: served %d in 1s, want %d (+1 burst)", caller, n, want)
			}
		}
	})
}

func TestRateLimitClientWaitsUpToMaxWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		f := &failing{errs: []error{nil}}
		short := (&resilience.RateLimit{Limit: resilience.Limit{Rate: 10, Burst: 1}, MaxWait: 50 * time.Millisecond}).Client()(f.invoke)
		_ = short(ctx, call("vendor", "quote"), nil)
		err := short(ctx, call("vendor", "quote"), nil)
		wantReason(t, err, bus.ResourceExhausted, "this client's rate limit", "retry_after", "100ms", "rate_limit", "vendor.quote")

		long := (&resilience.RateLimit{Limit: resilience.Limit{Rate: 10, Burst: 1}, MaxWait: 150 * time.Millisecond}).Client()(f.invoke)
		t0 := time.Now()
		for range 2 {
			if err := long(ctx, call("vendor", "quote"), nil); err != nil {
				t.Fatal(err)
			}
		}
		if got := time.Since(t0); got != 100*time.Millisecond {
			t.Fatalf("the second call waited %v, want 100ms for its token", got)
		}
	})
}

func TestRateLimitBoundsItsKeys(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := &resilience.RateLimit{Key: resilience.PerCaller, Limit: resilience.Limit{Rate: 1, Burst: 1}, MaxKeys: 2}
		serve := l.Server()((&counting{}).handle)
		ok := func(caller string) bool { _, err := serve(context.Background(), from(caller)); return err == nil }
		if !ok("a") || !ok("b") {
			t.Fatal("first calls rejected")
		}
		// Beyond MaxKeys, new callers share one overflow bucket.
		if !ok("c") || ok("d") {
			t.Fatal("the overflow bucket is not shared")
		}
		time.Sleep(2 * time.Second) // a and b's buckets are full again: dropped
		if !ok("e") || !ok("f") {
			t.Fatal("full buckets were not reclaimed")
		}
	})
}

var vendorQuote = switchboard.Endpoint[*req, *rsp]("vendor", "quote")

func TestRateLimitOverTheBus(t *testing.T) {
	conn := newBus(t)
	const rate, burst, window = 100, 5, 2 * time.Second
	limit := resilience.Limit{Rate: rate, Burst: burst}

	// hammer calls vendor.quote from 6 goroutines for the window and
	// returns calls made, rejections and one rejection.
	hammer := func(t *testing.T, cl *switchboard.Client) (made, rejected int64, sample error, took time.Duration) {
		var mu sync.Mutex
		var wg sync.WaitGroup
		t0 := time.Now()
		for range 6 {
			wg.Go(func() {
				// Paced so a local refusal does not spin: still 20× the limit.
				for ; time.Since(t0) < window; time.Sleep(3 * time.Millisecond) {
					_, err := vendorQuote.Call(ctxT(t), cl, &req{})
					mu.Lock()
					made++
					if err != nil {
						rejected++
						sample = err
						if bus.ErrorCode(err) != bus.ResourceExhausted || detail(err, "retry_after") == "" {
							t.Errorf("rejection without its reason: %v", err)
						}
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		return made, rejected, sample, time.Since(t0)
	}
	check := func(t *testing.T, title string, served int64, made, rejected int64, sample error, took time.Duration) {
		allowed := float64(burst) + rate*took.Seconds()
		var l ledger
		l.add("offered", made)
		l.add("received by the target", served)
		l.add("rejected", rejected)
		l.add("window", took.Round(time.Millisecond))
		l.add("limit × window + burst", fmt.Sprintf("%.0f", allowed))
		l.add("received / allowed", fmt.Sprintf("%.3f", float64(served)/allowed))
		l.add("a rejection", sample)
		l.print(t, title)
		if float64(served) > allowed*1.05 {
			t.Fatalf("the target received %d calls, more than %.0f + 5%%", served, allowed)
		}
		if rejected == 0 {
			t.Fatal("nothing was rejected: the limit was not reached")
		}
	}

	t.Run("a server limit per endpoint", func(t *testing.T) {
		h := &counting{}
		svc := switchboard.NewService("vendor", "1.0.0", switchboard.WithLogger(quiet),
			switchboard.WithMiddleware((&resilience.RateLimit{Limit: limit}).Server()))
		vendorQuote.Handle(svc, func(ctx context.Context, r *req) (*rsp, error) { h.served.Add(1); return &rsp{}, nil })
		start(t, conn, svc)
		made, rejected, sample, took := hammer(t, switchboard.NewClient(conn))
		check(t, "server rate limit 100/s burst 5", h.served.Load(), made, rejected, sample, took)
		_ = svc.Shutdown(context.Background())
	})
	t.Run("a client limit per target", func(t *testing.T) {
		h := &counting{}
		svc := switchboard.NewService("vendor", "1.0.0", switchboard.WithLogger(quiet))
		vendorQuote.Handle(svc, func(ctx context.Context, r *req) (*rsp, error) { h.served.Add(1); return &rsp{}, nil })
		start(t, conn, svc)
		cl := switchboard.NewClient(conn, switchboard.WithClientMiddleware((&resilience.RateLimit{Limit: limit}).Client()))
		made, rejected, sample, took := hammer(t, cl)
		check(t, "client rate limit 100/s burst 5", h.served.Load(), made, rejected, sample, took)
	})
}
