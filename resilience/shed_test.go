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

// station is a handler with a fixed capacity: C slots, each call holds one
// for its work, waiting calls queue for a slot (FIFO) until their deadline.
// Its capacity is C/work calls per second.
type station struct {
	slots  chan struct{}
	work   atomic.Int64 // time.Duration
	served atomic.Int64
}

func newStation(c int, work time.Duration) *station {
	s := &station{slots: make(chan struct{}, c)}
	s.work.Store(int64(work))
	return s
}

func (s *station) handle(ctx context.Context, _ *switchboard.Call) (any, error) {
	select {
	case s.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, bus.Errorf(bus.DeadlineExceeded, "station: no slot before the deadline")
	}
	defer func() { <-s.slots }()
	time.Sleep(time.Duration(s.work.Load()))
	s.served.Add(1)
	return &rsp{}, nil
}

// outcome is one call of an overload run.
type outcome struct {
	err      error
	latency  time.Duration
	critical bool
}

// runLoad sends calls open loop at rate per second for dur, every
// criticalEvery-th one critical (0 for none), and returns their outcomes
// once all have returned. do makes one call.
func runLoad(rate float64, dur time.Duration, criticalEvery int, do func(ctx context.Context, critical bool) error) []outcome {
	var mu sync.Mutex
	var out []outcome
	var wg sync.WaitGroup
	t0 := time.Now()
	for i := 0; ; i++ {
		at := t0.Add(time.Duration(float64(i) / rate * float64(time.Second)))
		if !at.Before(t0.Add(dur)) {
			break
		}
		time.Sleep(time.Until(at))
		critical := criticalEvery > 0 && i%criticalEvery == 0
		wg.Go(func() {
			s := time.Now()
			err := do(context.Background(), critical)
			o := outcome{err: err, latency: time.Since(s), critical: critical}
			mu.Lock()
			out = append(out, o)
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

// overload sums up a run.
type overload struct {
	offered, served, rejected, timedOut, other int
	criticalOffered, criticalRejected          int
	admitted, rejections                       []time.Duration
	sample                                     error
}

func tally(t *testing.T, out []outcome) overload {
	var o overload
	for _, r := range out {
		o.offered++
		if r.critical {
			o.criticalOffered++
		}
		switch code := bus.ErrorCode(r.err); {
		case code == bus.OK:
			o.served++
			o.admitted = append(o.admitted, r.latency)
		case code == bus.ResourceExhausted && detail(r.err, "shed") != "":
			o.rejected++
			o.rejections = append(o.rejections, r.latency)
			o.sample = r.err
			if r.critical {
				o.criticalRejected++
			}
			if detail(r.err, "limit") == "" || detail(r.err, "in_flight") == "" || detail(r.err, "retry_after") == "" {
				t.Errorf("a rejection without its reason: %v", r.err)
			}
		case code == bus.DeadlineExceeded:
			o.timedOut++
			o.admitted = append(o.admitted, r.latency)
		default:
			o.other++
			o.sample = r.err
		}
	}
	return o
}

func (o overload) print(t *testing.T, title string, dur time.Duration, capacity float64, shed *resilience.Shed) {
	t.Helper()
	var l ledger
	l.add("duration", dur)
	l.add("capacity (calls/s)", fmt.Sprintf("%.0f", capacity))
	l.add("offered (calls/s)", fmt.Sprintf("%.0f", float64(o.offered)/dur.Seconds()))
	l.add("offered", o.offered)
	l.add("admitted", o.served+o.timedOut)
	l.add("served", o.served)
	l.add("rejected at once", o.rejected)
	l.add("timed out", o.timedOut)
	l.add("other errors", o.other)
	l.add("goodput (calls/s)", fmt.Sprintf("%.0f (%.1f%% of capacity)", float64(o.served)/dur.Seconds(), 100*float64(o.served)/dur.Seconds()/capacity))
	l.add("admitted p50 / p99", fmt.Sprintf("%v / %v", percentile(o.admitted, 50).Round(10*time.Microsecond), percentile(o.admitted, 99).Round(10*time.Microsecond)))
	l.add("rejected p50 / p99", fmt.Sprintf("%v / %v", percentile(o.rejections, 50).Round(10*time.Microsecond), percentile(o.rejections, 99).Round(10*time.Microsecond)))
	if o.criticalOffered > 0 {
		l.add("critical offered / rejected", fmt.Sprintf("%d / %d", o.criticalOffered, o.criticalRejected))
	}
	if shed != nil {
		for _, s := range shed.Stats() {
			l.add("limit "+s.Service+"."+s.Endpoint, fmt.Sprintf("%d (minRTT %v, latency %v)", s.Limit, s.MinRTT.Round(10*time.Microsecond), s.Latency.Round(10*time.Microsecond)))
		}
	}
	if o.sample != nil {
		l.add("a rejection", o.sample)
	}
	l.print(t, title)
}

func TestShedKeepsGoodputAndLatencyUnderOverload(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const slots, work, dur = 4, 5 * time.Millisecond, 3 * time.Second
		capacity := float64(slots) / work.Seconds() // 800/s
		st := newStation(slots, work)
		shed := &resilience.Shed{}
		h := shed.Middleware()(st.handle)
		out := runLoad(2*capacity, dur, 20, func(ctx context.Context, critical bool) error {
			ctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			c := call("work", "job")
			c.Envelope.Deadline, _ = ctx.Deadline()
			if critical {
				c.Envelope.Priority = resilience.PriorityCritical
			}
			_, err := h(ctx, c)
			return err
		})
		o := tally(t, out)
		o.print(t, "adaptive shedding at 2× capacity (synctest, simulated time)", dur, capacity, shed)
		if goodput := float64(o.served) / dur.Seconds(); goodput < 0.9*capacity {
			t.Errorf("goodput %.0f/s, under 90%% of the capacity %.0f/s", goodput, capacity)
		}
		if p := percentile(o.rejections, 100); p != 0 {
			t.Errorf("a rejection took %v: rejections must be immediate", p)
		}
		if p := percentile(o.admitted, 99); p > 10*work {
			t.Errorf("admitted p99 %v: latency is not bounded near the work time %v", p, work)
		}
		if o.timedOut > 0 || o.other > 0 {
			t.Errorf("%d timed out, %d other errors", o.timedOut, o.other)
		}
		if o.criticalRejected*10 > o.criticalOffered {
			t.Errorf("%d of %d critical calls rejected", o.criticalRejected, o.criticalOffered)
		}
		if l := shed.Stats()[0].Limit; l < slots || l > 4*slots {
			t.Errorf("the limit settled at %d for a capacity of %d concurrent calls", l, slots)
		}
	})
}

func TestShedWithoutLoadLeavesTheLimitAlone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newStation(100, 5*time.Millisecond)
		shed := &resilience.Shed{}
		h := shed.Middleware()(st.handle)
		out := runLoad(200, 2*time.Second, 0, func(ctx context.Context, _ bool) error {
			_, err := h(ctx, call("work", "job"))
			return err
		})
		o := tally(t, out)
		if o.rejected > 0 || shed.Stats()[0].Limit != 20 {
			t.Fatalf("at a quarter of capacity: %d rejected, limit %d", o.rejected, shed.Stats()[0].Limit)
		}
	})
}

func TestShedRelearnsWhenTheHandlerItselfSlowsDown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// Plenty of slots: latency never comes from queueing. When the work
		// gets 4× slower (a slower dependency, say), the limit first falls,
		// then the minRTT measurement shows nothing queues and it recovers.
		st := newStation(1000, 5*time.Millisecond)
		shed := &resilience.Shed{}
		h := shed.Middleware()(st.handle)
		do := func(ctx context.Context, _ bool) error {
			_, err := h(ctx, call("work", "job"))
			return err
		}
		_ = runLoad(1000, time.Second, 0, do)
		st.work.Store(int64(20 * time.Millisecond))
		first := tally(t, runLoad(1000, 3*time.Second, 0, do))
		later := tally(t, runLoad(1000, 2*time.Second, 0, do))
		t.Logf("after the slowdown: %d of %d rejected in the first 3s, %d of %d in the next 2s; %+v",
			first.rejected, first.offered, later.rejected, later.offered, shed.Stats()[0])
		if later.rejected*100 > later.offered {
			t.Fatalf("%d of %d calls still shed after the limit should have recovered", later.rejected, later.offered)
		}
	})
}

var (
	workJob = switchboard.Endpoint[*req, *rsp]("work", "job")
	rawJob  = switchboard.Endpoint[*req, *rsp]("raw", "job")
)

func TestShedOverloadOverTheBus(t *testing.T) {
	conn := newBus(t)
	const slots, work = 4, 5 * time.Millisecond
	serve := func(name string, st *station, opts ...switchboard.ServiceOption) {
		svc := switchboard.NewService(name, "1.0.0", append(opts, switchboard.WithLogger(quiet))...)
		switchboard.Endpoint[*req, *rsp](name, "job").Handle(svc, func(ctx context.Context, r *req) (*rsp, error) {
			c, _ := switchboard.CallFrom(ctx)
			v, err := st.handle(ctx, c)
			rp, _ := v.(*rsp)
			return rp, err
		})
		start(t, conn, svc)
	}
	raw, shedded := newStation(slots, work), newStation(slots, work)
	shed := &resilience.Shed{}
	serve("raw", raw)
	serve("work", shedded, switchboard.WithMiddleware(shed.Middleware()))
	cl := switchboard.NewClient(conn)

	// Capacity, measured now on this machine: enough closed-loop callers
	// to keep every slot busy, no shedding.
	var wg sync.WaitGroup
	t0 := time.Now()
	for range 3 * slots {
		wg.Go(func() {
			for time.Since(t0) < time.Second {
				if _, err := rawJob.Call(ctxT(t), cl, &req{}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	capacity := float64(raw.served.Load()) / time.Since(t0).Seconds()

	const dur = 2 * time.Second
	out := runLoad(2*capacity, dur, 20, func(ctx context.Context, critical bool) error {
		opts := []switchboard.CallOption{switchboard.WithTimeout(time.Second)}
		if critical {
			opts = append(opts, switchboard.WithPriority(resilience.PriorityCritical))
		}
		_, err := workJob.Call(ctx, cl, &req{}, opts...)
		return err
	})
	o := tally(t, out)
	o.print(t, "adaptive shedding at 2× measured capacity, real bus", dur, capacity, shed)
	if goodput := float64(o.served) / dur.Seconds(); goodput < 0.9*capacity {
		t.Errorf("goodput %.0f/s, under 90%% of the capacity %.0f/s measured just before", goodput, capacity)
	}
	if o.rejected == 0 {
		t.Error("nothing was shed at twice the capacity")
	}
	// Generous bounds against hangs: a rejection is one round trip, an
	// admitted call a few work times.
	if p := percentile(o.rejections, 50); p > work {
		t.Errorf("rejections take %v (p50), not less than one work time %v", p, work)
	}
	if p := percentile(o.admitted, 99); p > 500*time.Millisecond {
		t.Errorf("admitted p99 %v", p)
	}
	if o.other > 0 {
		t.Errorf("%d calls failed otherwise, e.g. %v", o.other, o.sample)
	}

	// For contrast, the same overload without shedding: calls queue for a
	// slot until their deadline. Printed, not asserted.
	out = runLoad(2*capacity, time.Second, 0, func(ctx context.Context, _ bool) error {
		_, err := rawJob.Call(ctx, cl, &req{}, switchboard.WithTimeout(500*time.Millisecond))
		return err
	})
	tally(t, out).print(t, "the same overload without shedding (for contrast), real bus", time.Second, capacity, nil)
}
