package resilience_test

import (
	"context"
	"errors"
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

// failing is an Invoker that counts its attempts and returns errs[i] on
// attempt i (the last one for later attempts; nil means success).
type failing struct {
	attempts atomic.Int64
	took     time.Duration // each attempt sleeps this long
	errs     []error
}

func (f *failing) invoke(ctx context.Context, _ *switchboard.Call, _ any) error {
	i := int(f.attempts.Add(1)) - 1
	if f.took > 0 {
		time.Sleep(f.took)
	}
	return f.errs[min(i, len(f.errs)-1)]
}

func TestRetryRetriesOnlyWhatIsSafe(t *testing.T) {
	idem := []string{"svc.idem", "other.*"}
	for _, tc := range []struct {
		name     string
		code     bus.Code
		endpoint string
		attempts int64
		why      string // the "retry" detail, "" for an untouched error
		// unprocessed: the server says no handler ran
		unprocessed bool
	}{
		{"Unavailable is retried until the attempts run out", bus.Unavailable, "svc.plain", 3, "attempts exhausted", false},
		{"InvalidArgument is never retried", bus.InvalidArgument, "svc.idem", 1, "", false},
		{"NotFound is never retried", bus.NotFound, "svc.idem", 1, "", false},
		{"Internal is never retried", bus.Internal, "svc.idem", 1, "", false},
		{"ResourceExhausted is not retried on an endpoint not declared idempotent", bus.ResourceExhausted, "svc.plain", 1, "not idempotent", false},
		{"DeadlineExceeded is not retried on an endpoint not declared idempotent", bus.DeadlineExceeded, "svc.plain", 1, "not idempotent", false},
		{"ResourceExhausted is retried on an idempotent endpoint", bus.ResourceExhausted, "svc.idem", 3, "attempts exhausted", false},
		{"DeadlineExceeded is retried on an idempotent endpoint", bus.DeadlineExceeded, "svc.idem", 3, "attempts exhausted", false},
		{"Aborted is retried on an endpoint idempotent by wildcard", bus.Aborted, "other.any", 3, "attempts exhausted", false},
		{"Aborted is retried on an endpoint the predicate calls idempotent", bus.Aborted, "svc.pred", 3, "attempts exhausted", false},
		{"ResourceExhausted the server refused unprocessed is retried on any endpoint", bus.ResourceExhausted, "svc.plain", 3, "attempts exhausted", true},
		{"an unprocessed mark relayed from another endpoint is not trusted", bus.ResourceExhausted, "svc.relay", 1, "not idempotent", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				cause := bus.Errorf(tc.code, "downstream says no")
				if tc.endpoint == "svc.relay" {
					cause = cause.WithDetail("unprocessed", "downstream.ep")
				}
				if tc.unprocessed {
					cause = cause.WithDetail("unprocessed", tc.endpoint)
				}
				f := &failing{errs: []error{cause}}
				inv := resilience.Retry{Idempotent: idem, IsIdempotent: func(c *switchboard.Call) bool { return c.Endpoint == "pred" }}.
					Middleware()(f.invoke)
				svc, ep, _ := cut(tc.endpoint)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				err := inv(ctx, call(svc, ep), nil)
				if got := f.attempts.Load(); got != tc.attempts {
					t.Fatalf("%d attempts, want %d", got, tc.attempts)
				}
				if !errors.Is(err, cause) {
					t.Fatalf("the last error is not wrapped: %v", err)
				}
				if tc.why == "" {
					if err != error(cause) {
						t.Fatalf("a code that is never retried came back changed: %v", err)
					}
					return
				}
				wantReason(t, err, tc.code, "downstream says no", "retry", tc.why, "attempts", fmt.Sprint(tc.attempts))
			})
		})
	}
}

func cut(s string) (string, string, bool) {
	for i := range s {
		if s[i] == '.' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

func TestRetryBacksOffExponentiallyWithFullJitter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const base, maxDelay, attempts = 10 * time.Millisecond, 80 * time.Millisecond, 8
		var mu sync.Mutex
		waits := map[int][]time.Duration{} // by attempt number
		var n int
		r := resilience.Retry{MaxAttempts: attempts, BaseDelay: base, MaxDelay: maxDelay,
			Budget: &resilience.Budget{Ratio: 1000},
			Observe: func(d resilience.Decision) {
				if d.Action == "retry" {
					mu.Lock()
					n++
					waits[n] = append(waits[n], d.Wait)
					mu.Unlock()
				}
			}}
		f := &failing{errs: []error{bus.Errorf(bus.Unavailable, "down")}}
		inv := r.Middleware()(f.invoke)
		for range 200 {
			n = 0
			t0 := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			_ = inv(ctx, call("svc", "ep"), nil)
			cancel()
			var sum time.Duration
			for i := 1; i < attempts; i++ {
				sum += waits[i][len(waits[i])-1]
			}
			if got := time.Since(t0); got != sum {
				t.Fatalf("the call took %v, its backoffs add up to %v", got, sum)
			}
		}
		for i := 1; i < attempts; i++ {
			ceiling := min(maxDelay, base<<(i-1))
			hi := time.Duration(0)
			for _, w := range waits[i] {
				if w < 0 || w >= ceiling {
					t.Fatalf("wait before attempt %d is %v, want in [0, %v)", i+1, w, ceiling)
				}
				hi = max(hi, w)
			}
			// 200 uniform draws all below half the ceiling: p = 2⁻²⁰⁰.
			if hi < ceiling/2 {
				t.Fatalf("waits before attempt %d never reach half of %v (max %v): not full jitter", i+1, ceiling, hi)
			}
		}
	})
}

func TestRetryHonoursRetryAfterInsteadOfItsBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hint := bus.Errorf(bus.ResourceExhausted, "busy").WithDetail("retry_after", "300ms")
		f := &failing{errs: []error{hint, nil}}
		// The hint is longer than MaxDelay and is honoured all the same.
		inv := resilience.Retry{BaseDelay: time.Millisecond, MaxDelay: 2 * time.Millisecond, Idempotent: []string{"svc.ep"}}.
			Middleware()(f.invoke)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		t0 := time.Now()
		if err := inv(ctx, call("svc", "ep"), nil); err != nil {
			t.Fatal(err)
		}
		if got := time.Since(t0); got != 300*time.Millisecond || f.attempts.Load() != 2 {
			t.Fatalf("second attempt after %v (%d attempts), want after the hinted 300ms", got, f.attempts.Load())
		}
	})
}

func TestRetryNeverGoesPastTheDeadline(t *testing.T) {
	t.Run("no attempt starts with less than MinAttemptTime left", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			const deadline, minTime = 200 * time.Millisecond, 30 * time.Millisecond
			ctx, cancel := context.WithTimeout(context.Background(), deadline)
			defer cancel()
			dl, _ := ctx.Deadline()
			var left []time.Duration
			inv := resilience.Retry{MaxAttempts: 1000, BaseDelay: 20 * time.Millisecond, MaxDelay: 40 * time.Millisecond,
				MinAttemptTime: minTime, Budget: &resilience.Budget{Ratio: 1000}}.
				Middleware()(func(ctx context.Context, c *switchboard.Call, r any) error {
				left = append(left, time.Until(dl))
				time.Sleep(10 * time.Millisecond)
				return bus.Errorf(bus.Unavailable, "down")
			})
			t0 := time.Now()
			err := inv(ctx, call("svc", "ep"), nil)
			wantReason(t, err, bus.Unavailable, "left before the deadline", "retry", "deadline")
			if len(left) < 3 {
				t.Fatalf("only %d attempts in %v", len(left), deadline)
			}
			for i, l := range left {
				if l < minTime {
					t.Fatalf("attempt %d started with %v left, under %v", i+1, l, minTime)
				}
			}
			if el := time.Since(t0); el >= deadline {
				t.Fatalf("gave up after %v, at or past the %v deadline", el, deadline)
			}
			t.Logf("%d attempts; gave up with %v left: %v", len(left), time.Until(dl), err)
		})
	})
	t.Run("a Retry-After hint beyond the deadline ends the call at once", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			f := &failing{errs: []error{bus.Errorf(bus.Unavailable, "down").WithDetail("retry_after", "1s")}}
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			defer cancel()
			t0 := time.Now()
			err := resilience.Retry{}.Middleware()(f.invoke)(ctx, call("svc", "ep"), nil)
			wantReason(t, err, bus.Unavailable, "retry-after hint is 1s", "retry", "deadline", "retry_after", "1s")
			if f.attempts.Load() != 1 || time.Since(t0) != 0 {
				t.Fatalf("%d attempts over %v", f.attempts.Load(), time.Since(t0))
			}
		})
	})
	t.Run("AttemptTimeout bounds each attempt and the deadline sent", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			outer, _ := ctx.Deadline()
			c := call("svc", "ep")
			c.Envelope.Deadline = outer
			var sent []time.Duration
			inv := resilience.Retry{MaxAttempts: 10, AttemptTimeout: 50 * time.Millisecond, BaseDelay: time.Millisecond,
				Idempotent: []string{"svc.ep"}}.Middleware()(func(ctx context.Context, c *switchboard.Call, _ any) error {
				sent = append(sent, time.Until(c.Envelope.Deadline))
				<-ctx.Done()
				return bus.Errorf(bus.DeadlineExceeded, "no reply before the deadline")
			})
			err := inv(ctx, c, nil)
			wantReason(t, err, bus.DeadlineExceeded, "no reply", "retry", "*")
			if len(sent) < 4 {
				t.Fatalf("%d attempts in 300ms of 50ms each", len(sent))
			}
			for _, s := range sent {
				if s > 50*time.Millisecond {
					t.Fatalf("an attempt was sent with %v to run, more than the attempt timeout", s)
				}
			}
			if !c.Envelope.Deadline.Equal(outer) {
				t.Fatal("the call's deadline was not restored")
			}
		})
	})
}

func TestRetryRetriesACallRefusedBeforeItWasSent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// A client rate limit inside Retry refuses the second call of a
		// burst; Retry waits its hint and gets through, though the endpoint
		// is not idempotent.
		lim := &resilience.RateLimit{Limit: resilience.Limit{Rate: 10, Burst: 1}}
		f := &failing{errs: []error{nil}}
		inv := resilience.Retry{}.Middleware()(lim.Client()(f.invoke))
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		t0 := time.Now()
		for range 2 {
			if err := inv(ctx, call("svc", "ep"), nil); err != nil {
				t.Fatal(err)
			}
		}
		if got := time.Since(t0); got < 100*time.Millisecond || got > 110*time.Millisecond || f.attempts.Load() != 2 {
			t.Fatalf("took %v with %d calls sent, want 100ms (one token at 10/s)", got, f.attempts.Load())
		}
	})
}

func TestRetryBudgetBoundsLoadDuringAnOutage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		budget := &resilience.Budget{Ratio: 0.1, MinPerSecond: 1, Window: 10 * time.Second}
		f := &failing{took: 2 * time.Millisecond, errs: []error{bus.Errorf(bus.Unavailable, "down")}}
		var gaveUp sync.Map
		inv := resilience.Retry{BaseDelay: time.Millisecond, Budget: budget}.Middleware()(f.invoke)
		var calls atomic.Int64
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for end := time.Now().Add(5 * time.Second); time.Now().Before(end); {
					calls.Add(1)
					ctx, cancel := context.WithTimeout(context.Background(), time.Second)
					err := inv(ctx, call("svc", "ep"), nil)
					cancel()
					why := detail(err, "retry")
					n, _ := gaveUp.LoadOrStore(why, new(atomic.Int64))
					n.(*atomic.Int64).Add(1)
				}
			})
		}
		wg.Wait()
		issued, made := f.attempts.Load(), calls.Load()
		bound := float64(made)*1.1 + 1*10
		var l ledger
		l.add("calls made by callers", made)
		l.add("calls issued downstream", issued)
		l.add("retries", issued-made)
		l.add("bound (1.1 × made + 10)", fmt.Sprintf("%.0f", bound))
		l.add("amplification", fmt.Sprintf("%.3f", float64(issued)/float64(made)))
		gaveUp.Range(func(k, v any) bool { l.add("gave up: "+k.(string), v.(*atomic.Int64).Load()); return true })
		l.print(t, "retry budget, total outage, 5s simulated")
		if float64(issued) > bound {
			t.Fatalf("%d calls issued for %d made: over the budget's bound %.0f", issued, made, bound)
		}
		if n, ok := gaveUp.Load("budget exhausted"); !ok || n.(*atomic.Int64).Load() == 0 {
			t.Fatal("no call was refused a retry by the budget: the budget never acted")
		}
	})
}

// flaky is a service whose endpoints fail on purpose.
type flaky struct {
	calls   sync.Map // endpoint → *atomic.Int64
	mu      sync.Mutex
	arrived []time.Time // arrivals at "hinted"
}

func (f *flaky) count(ep string) int64 {
	n, _ := f.calls.LoadOrStore(ep, new(atomic.Int64))
	return n.(*atomic.Int64).Load()
}

func (f *flaky) hit(ep string) int64 {
	n, _ := f.calls.LoadOrStore(ep, new(atomic.Int64))
	return n.(*atomic.Int64).Add(1)
}

var (
	flakyThird  = switchboard.Endpoint[*req, *rsp]("flaky", "third")  // succeeds every third call
	flakyBad    = switchboard.Endpoint[*req, *rsp]("flaky", "bad")    // InvalidArgument
	flakyDown   = switchboard.Endpoint[*req, *rsp]("flaky", "down")   // Unavailable
	flakyHinted = switchboard.Endpoint[*req, *rsp]("flaky", "hinted") // Unavailable with a hint, then OK
)

func startFlaky(t *testing.T, conn *bus.Conn) *flaky {
	f := &flaky{}
	svc := switchboard.NewService("flaky", "1.0.0", switchboard.WithLogger(quiet))
	flakyThird.Handle(svc, func(ctx context.Context, r *req) (*rsp, error) {
		if f.hit("third")%3 != 0 {
			return nil, switchboard.Errorf(switchboard.Unavailable, "flaky: not this time")
		}
		return &rsp{N: r.N}, nil
	})
	flakyBad.Handle(svc, func(ctx context.Context, r *req) (*rsp, error) {
		f.hit("bad")
		return nil, switchboard.Errorf(switchboard.InvalidArgument, "flaky: n must be even")
	})
	flakyDown.Handle(svc, func(ctx context.Context, r *req) (*rsp, error) {
		f.hit("down")
		return nil, switchboard.Errorf(switchboard.Unavailable, "flaky: down for maintenance")
	})
	flakyHinted.Handle(svc, func(ctx context.Context, r *req) (*rsp, error) {
		f.mu.Lock()
		f.arrived = append(f.arrived, time.Now())
		f.mu.Unlock()
		if f.hit("hinted") == 1 {
			return nil, switchboard.Errorf(switchboard.Unavailable, "flaky: come back later").WithDetail("retry_after", "150ms")
		}
		return &rsp{N: r.N}, nil
	})
	start(t, conn, svc)
	return f
}

func TestRetryOverTheBus(t *testing.T) {
	conn := newBus(t)
	f := startFlaky(t, conn)
	cl := switchboard.NewClient(conn, switchboard.WithClientMiddleware(
		resilience.Retry{MaxAttempts: 5, BaseDelay: 5 * time.Millisecond, MaxDelay: 50 * time.Millisecond,
			Budget: &resilience.Budget{Ratio: 1, MinPerSecond: 100}}.Middleware()))

	t.Run("Unavailable is retried and the call succeeds", func(t *testing.T) {
		r, err := flakyThird.Call(ctxT(t), cl, &req{N: 7})
		if err != nil || r.N != 7 {
			t.Fatalf("got %v, %v", r, err)
		}
		if n := f.count("third"); n != 3 {
			t.Fatalf("the endpoint saw %d calls, want 3", n)
		}
	})
	t.Run("InvalidArgument is never retried", func(t *testing.T) {
		_, err := flakyBad.Call(ctxT(t), cl, &req{N: 1})
		wantReason(t, err, bus.InvalidArgument, "n must be even")
		if n := f.count("bad"); n != 1 || detail(err, "retry") != "" {
			t.Fatalf("the endpoint saw %d calls, error %v", n, err)
		}
	})
	t.Run("retries stop at the caller's deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(ctxT(t), 300*time.Millisecond)
		defer cancel()
		cl := switchboard.NewClient(conn, switchboard.WithClientMiddleware(
			resilience.Retry{MaxAttempts: 1000, BaseDelay: 20 * time.Millisecond, MaxDelay: 40 * time.Millisecond,
				Budget: &resilience.Budget{Ratio: 1, MinPerSecond: 1000}}.Middleware()))
		t0 := time.Now()
		_, err := flakyDown.Call(ctx, cl, &req{})
		el := time.Since(t0)
		wantReason(t, err, bus.Unavailable, "down for maintenance", "retry", "deadline")
		if n := f.count("down"); n < 3 {
			t.Fatalf("only %d attempts in 300ms", n)
		}
		if el > 300*time.Millisecond+100*time.Millisecond {
			t.Fatalf("returned after %v, well past the 300ms deadline", el)
		}
		t.Logf("%d attempts in %v: %v", f.count("down"), el.Round(time.Millisecond), err)
	})
	t.Run("a Retry-After hint is waited instead of the backoff", func(t *testing.T) {
		r, err := flakyHinted.Call(ctxT(t), cl, &req{N: 3})
		if err != nil || r.N != 3 {
			t.Fatalf("got %v, %v", r, err)
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		if len(f.arrived) != 2 {
			t.Fatalf("%d attempts", len(f.arrived))
		}
		if gap := f.arrived[1].Sub(f.arrived[0]); gap < 150*time.Millisecond {
			t.Fatalf("the retry came %v after the first attempt, before the hinted 150ms", gap)
		}
	})
}

func TestRetryBudgetUnderATotalOutageOverTheBus(t *testing.T) {
	conn := newBus(t)
	f := startFlaky(t, conn)
	budget := &resilience.Budget{Ratio: 0.1, MinPerSecond: 1, Window: 10 * time.Second}
	var refused atomic.Int64
	cl := switchboard.NewClient(conn, switchboard.WithClientMiddleware(resilience.Retry{BaseDelay: time.Millisecond, Budget: budget,
		Observe: func(d resilience.Decision) {
			if d.Reason == "budget_exhausted" {
				refused.Add(1)
			}
		}}.Middleware()))
	var made atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for end := time.Now().Add(1500 * time.Millisecond); time.Now().Before(end); {
				made.Add(1)
				_, err := flakyDown.Call(ctxT(t), cl, &req{})
				if bus.ErrorCode(err) != bus.Unavailable {
					t.Errorf("got %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	issued := f.count("down")
	bound := float64(made.Load())*1.1 + 10
	var l ledger
	l.add("calls made by callers", made.Load())
	l.add("calls issued (server saw)", issued)
	l.add("retries", issued-made.Load())
	l.add("refused by the budget", refused.Load())
	l.add("bound (1.1 × made + 10)", fmt.Sprintf("%.0f", bound))
	l.add("amplification", fmt.Sprintf("%.3f", float64(issued)/float64(made.Load())))
	l.print(t, "retry budget, total outage of a downstream, real bus")
	if float64(issued) > bound {
		t.Fatalf("%d calls issued for %d made: over the bound %.0f", issued, made.Load(), bound)
	}
	if refused.Load() == 0 {
		t.Fatal("the budget never refused a retry")
	}
}
