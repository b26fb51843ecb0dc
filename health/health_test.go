package health_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/bus/driver"
	_ "github.com/switchboard-dev/switchboard/bus/natsbus"
	"github.com/switchboard-dev/switchboard/health"
)

type req struct {
	Name string `json:"name"`
}
type rsp struct{}

var (
	work    = switchboard.Endpoint[*req, *rsp]("patient", "work")
	sleepy  = switchboard.Endpoint[*req, *rsp]("patient", "sleepy")
	failing = switchboard.Topic[*req]("patient.events")
)

func newBus(t *testing.T) *bus.Conn {
	t.Helper()
	conn, err := bus.Open(context.Background(), "embedded://"+t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// patient is a service with a gated endpoint (MaxInFlight 2), a slow one
// with a latency expectation, and a consumer that fails "bad" events.
type patient struct {
	svc     *switchboard.Service
	chk     *health.Checker
	entered chan struct{}
	release chan struct{}
	settled chan bus.Settled
}

func newPatient(t *testing.T, conn *bus.Conn) *patient {
	t.Helper()
	p := &patient{entered: make(chan struct{}, 8), release: make(chan struct{}), settled: make(chan bus.Settled, 8)}
	p.svc = switchboard.NewService("patient", "1.0.0")
	work.Handle(p.svc, func(ctx context.Context, r *req) (*rsp, error) {
		p.entered <- struct{}{}
		<-p.release
		return &rsp{}, nil
	}, switchboard.MaxInFlight(2))
	sleepy.Handle(p.svc, func(ctx context.Context, r *req) (*rsp, error) {
		time.Sleep(3 * time.Millisecond) // the latency under test, not a wait
		return &rsp{}, nil
	}, switchboard.ExpectLatency(time.Millisecond))
	failing.Subscribe(p.svc, "patients", func(ctx context.Context, ev *req) error {
		if ev.Name == "bad" {
			return errors.New("cannot digest this")
		}
		return nil
	}, switchboard.MaxAttempts(1))
	p.chk = health.For(p.svc).Every(time.Hour) // the test refreshes
	// After health's own observer, so a delivery is counted when we hear of it.
	p.svc.Observe(switchboard.Observer{Delivery: func(s bus.Settled) { p.settled <- s }})
	if health.For(p.svc) != p.chk {
		t.Fatal("For returned a second checker for the same service")
	}
	if err := p.svc.Start(ctxT(t), conn); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.svc.Shutdown(context.Background()) })
	if err := p.chk.Start(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.chk.Stop(context.Background()) })
	return p
}

func refresh(t *testing.T, c *health.Checker) health.Report {
	t.Helper()
	r, err := c.Refresh(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func wantCheck(t *testing.T, r health.Report, name string, st health.Status, msg string) {
	t.Helper()
	c, ok := r.Check(name)
	if !ok {
		t.Fatalf("report has no %q check: %+v", name, r.Checks)
	}
	if c.Status != st || !strings.Contains(c.Message, msg) {
		t.Errorf("check %s = %s %q, want %s containing %q", name, c.Status, c.Message, st, msg)
	}
	if c.Since.IsZero() || c.Checked.IsZero() {
		t.Errorf("check %s: since %v, checked %v: want both set", name, c.Since, c.Checked)
	}
}

func TestBuiltinChecksOfAHealthyService(t *testing.T) {
	conn := newBus(t)
	p := newPatient(t, conn)
	r := refresh(t, p.chk)
	if r.Status != health.Healthy || r.Service != "patient" || r.Instance != p.svc.ID() || r.Version != "1.0.0" {
		t.Errorf("report %+v: want patient %s 1.0.0 healthy", r, p.svc.ID())
	}
	wantCheck(t, r, "bus", health.Healthy, "connected to")
	wantCheck(t, r, "capacity", health.Healthy, "2 endpoints")
	wantCheck(t, r, "latency", health.Healthy, "too few to judge")
	wantCheck(t, r, "events", health.Healthy, "1 consumers, no failures")
}

func TestCapacityDegradesNearTheBulkheadAndOnRefusals(t *testing.T) {
	conn := newBus(t)
	p := newPatient(t, conn)
	ctx := ctxT(t)
	done := make(chan error, 3)
	for range 2 {
		go func() { _, err := work.Call(ctx, p.svc, &req{}); done <- err }()
		<-p.entered
	}
	if _, err := work.Call(ctx, p.svc, &req{}); switchboard.ErrorCode(err) != switchboard.ResourceExhausted {
		t.Fatalf("third call: %v, want ResourceExhausted", err)
	}
	r := refresh(t, p.chk)
	wantCheck(t, r, "capacity", health.Degraded, "work 2/2 in flight")
	wantCheck(t, r, "capacity", health.Degraded, "work refused 1 calls as ResourceExhausted (full at MaxInFlight 2, or shedding load)")
	if r.Status != health.Degraded {
		t.Errorf("overall %s, want degraded", r.Status)
	}
	close(p.release)
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

func TestLatencyDegradesWhenP99ExceedsTheExpectation(t *testing.T) {
	conn := newBus(t)
	p := newPatient(t, conn)
	ctx := ctxT(t)
	for range health.MinLatencySamples {
		if _, err := sleepy.Call(ctx, p.svc, &req{}); err != nil {
			t.Fatal(err)
		}
	}
	r := refresh(t, p.chk)
	wantCheck(t, r, "latency", health.Degraded, "sleepy p99")
	wantCheck(t, r, "latency", health.Degraded, "> expected 1ms (20 calls)")
}

func TestEventsDegradeWhenDeadLettered(t *testing.T) {
	conn := newBus(t)
	p := newPatient(t, conn)
	ctx := ctxT(t)
	if err := failing.Publish(ctx, p.svc, &req{Name: "bad"}); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-p.settled:
		if s.Outcome != bus.DeadLettered {
			t.Fatalf("settled %+v, want dead_lettered", s)
		}
	case <-ctx.Done():
		t.Fatal("the bad event was not settled")
	}
	wantCheck(t, refresh(t, p.chk), "events", health.Degraded, "patient.events (group patients): 1 dead-lettered")
}

func TestCustomCheckFlipsTheReport(t *testing.T) {
	conn := newBus(t)
	p := newPatient(t, conn)
	var broken atomic.Bool
	p.chk.Add("disk", func(ctx context.Context) health.Result {
		if broken.Load() {
			return health.Unhealthyf("disk full")
		}
		return health.OK("plenty of space")
	})
	r := refresh(t, p.chk)
	wantCheck(t, r, "disk", health.Healthy, "plenty")
	since := r.Checks[len(r.Checks)-1].Since
	changed := p.chk.Changed()
	broken.Store(true)
	r = refresh(t, p.chk)
	wantCheck(t, r, "disk", health.Unhealthy, "disk full")
	if r.Status != health.Unhealthy {
		t.Errorf("overall %s, want unhealthy", r.Status)
	}
	select {
	case <-changed:
	default:
		t.Error("Changed did not fire when the status changed")
	}
	if c, _ := r.Check("disk"); !c.Since.After(since) {
		t.Errorf("since %v did not move past %v", c.Since, since)
	}
	again := refresh(t, p.chk)
	if a, _ := again.Check("disk"); !a.Since.Equal(mustCheck(t, r, "disk").Since) {
		t.Error("since moved although the status stayed the same")
	}
}

func mustCheck(t *testing.T, r health.Report, name string) health.CheckState {
	c, ok := r.Check(name)
	if !ok {
		t.Fatalf("no check %q", name)
	}
	return c
}

func TestChecksThatPanicOrHangAreUnhealthy(t *testing.T) {
	conn := newBus(t)
	p := newPatient(t, conn)
	p.chk.Add("panics", func(ctx context.Context) health.Result { panic("oops") })
	p.chk.Add("hangs", func(ctx context.Context) health.Result { <-ctx.Done(); return health.OK("late") }, 10*time.Millisecond)
	p.chk.Add("errs", health.ErrorCheck(func(ctx context.Context) error { return errors.New("no route to host") }))
	r := refresh(t, p.chk)
	wantCheck(t, r, "panics", health.Unhealthy, "check panicked: oops")
	wantCheck(t, r, "hangs", health.Unhealthy, "no result within 10ms")
	wantCheck(t, r, "errs", health.Unhealthy, "no route to host")
}

func TestReportsArriveOnTheBusAndAnswerRequests(t *testing.T) {
	conn := newBus(t)
	p := newPatient(t, conn)
	ctx := ctxT(t)
	got := make(chan health.Report, 4)
	sub, err := conn.Listen(ctx, health.ReportPrefix+">", func(m *bus.Message) {
		var r health.Report
		if err := json.Unmarshal(m.Body, &r); err != nil {
			t.Errorf("report %s: %v", m.Subject, err)
			return
		}
		if m.Subject != health.ReportSubject("patient", p.svc.ID()) {
			t.Errorf("report on %s, want %s", m.Subject, health.ReportSubject("patient", p.svc.ID()))
		}
		got <- r
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Stop(ctx)
	refresh(t, p.chk)
	select {
	case r := <-got:
		if r.Instance != p.svc.ID() || len(r.Checks) != 4 || r.IntervalMS != time.Hour.Milliseconds() {
			t.Errorf("published report %+v", r)
		}
	case <-ctx.Done():
		t.Fatal("no report published")
	}

	rep, err := conn.Request(ctx, &bus.Message{Subject: health.CheckSubject(p.svc.ID()), Header: bus.Header{health.HeaderRefresh: "1"}})
	if err != nil {
		t.Fatal(err)
	}
	var r health.Report
	if err := json.Unmarshal(rep.Body, &r); err != nil || r.Service != "patient" || r.Status != health.Healthy {
		t.Errorf("check reply %s: %v", rep.Body, err)
	}
}

func TestStopReportsShuttingDown(t *testing.T) {
	conn := newBus(t)
	p := newPatient(t, conn)
	if err := p.chk.Stop(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	r := p.chk.Report()
	wantCheck(t, r, "lifecycle", health.Unhealthy, "shutting down")
	if _, err := p.chk.Refresh(ctxT(t)); !errors.Is(err, health.ErrNotStarted) {
		t.Errorf("Refresh after Stop: %v, want ErrNotStarted", err)
	}
	if err := p.chk.Start(ctxT(t)); err == nil {
		t.Error("Start after Stop succeeded")
	}
}

func TestBusCheckFailsWhenTheConnectionIsClosed(t *testing.T) {
	conn := newBus(t)
	p := newPatient(t, conn)
	_ = p.svc.Shutdown(ctxT(t))
	if err := conn.Close(); err != nil {
		t.Fatal(err)
	}
	wantCheck(t, refresh(t, p.chk), "bus", health.Unhealthy, "no round trip")
}

func TestStatusText(t *testing.T) {
	for _, st := range []health.Status{health.Healthy, health.Degraded, health.Unhealthy} {
		b, err := st.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		var back health.Status
		if err := back.UnmarshalText(b); err != nil || back != st {
			t.Errorf("%s round-tripped to %s (%v)", st, back, err)
		}
	}
	var s health.Status
	if err := s.UnmarshalText([]byte("fine")); err == nil || !strings.Contains(err.Error(), "want healthy, degraded or unhealthy") {
		t.Errorf("unknown status: %v", err)
	}
	if _, err := health.Status(7).MarshalText(); err == nil {
		t.Error("invalid status marshaled")
	}
}

func tempDir() string {
	d, err := os.MkdirTemp("", "health-example")
	if err != nil {
		panic(err)
	}
	return d
}

// backlogDriver replaces the embedded NATS driver's backlog with fixed
// figures, so the check's threshold can be tested exactly.
type backlogDriver struct {
	driver.Conn
	pending int64
}

func (d backlogDriver) Backlog(ctx context.Context, topic, group string) (driver.Backlog, error) {
	return driver.Backlog{Pending: d.pending, Unacked: 1}, nil
}

func TestCapacityReportsTheBacklogWhereTheDriverCanTell(t *testing.T) {
	plain := newBus(t)
	p := newPatient(t, bus.NewConn(backlogDriver{Conn: plain.Driver(), pending: health.BacklogLimit + 1}))
	wantCheck(t, refresh(t, p.chk), "capacity", health.Degraded, "patient.events (group patients): 10001 pending, 1 unacked")

	// The NATS driver tells for real: an idle group has nothing pending.
	if !plain.CanReportBacklog() {
		t.Fatal("the NATS driver does not report backlogs")
	}
	real := newPatient(t, plain)
	wantCheck(t, refresh(t, real.chk), "capacity", health.Healthy, "patient.events (group patients): 0 pending, 0 unacked")
}

func TestDiscoveryCarriesAHealthSummary(t *testing.T) {
	conn := newBus(t)
	p := newPatient(t, conn)
	p.chk.Add("disk", func(ctx context.Context) health.Result { return health.Degradedf("disk 91%% full") })
	refresh(t, p.chk)
	raw, ok := p.svc.Info().Status[health.StatusName]
	if !ok {
		t.Fatalf("no %q part in the announcement: %v", health.StatusName, p.svc.Info().Status)
	}
	var s health.Summary
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatal(err)
	}
	if s.Status != health.Degraded || !s.Running || s.Checks != 5 || len(s.Failing) != 1 || s.Failing[0].Message != "disk 91% full" {
		t.Errorf("summary %+v: want degraded, running, 5 checks, only disk failing", s)
	}
}

func TestForAfterStartDoesWithoutObserving(t *testing.T) {
	conn := newBus(t)
	svc := switchboard.NewService("late", "1.0.0")
	if err := svc.Start(ctxT(t), conn); err != nil {
		t.Fatal(err)
	}
	defer svc.Shutdown(context.Background())
	chk := health.For(svc)
	if err := chk.Start(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	defer chk.Stop(context.Background())
	r := refresh(t, chk)
	wantCheck(t, r, "latency", health.Healthy, "not tracked: health was attached after the service started")
	wantCheck(t, r, "bus", health.Healthy, "connected to")
}

func TestChecksLearnEndpointsRegisteredAfterFor(t *testing.T) {
	conn := newBus(t)
	ctx := ctxT(t)
	svc := switchboard.NewService("patient", "1.0.0")
	chk := health.For(svc).Every(time.Hour) // first, as a custom check's one line would be
	sleepy.Handle(svc, func(ctx context.Context, r *req) (*rsp, error) {
		time.Sleep(3 * time.Millisecond) // the latency under test, not a wait
		return &rsp{}, nil
	}, switchboard.ExpectLatency(time.Millisecond))
	if err := svc.Start(ctx, conn); err != nil {
		t.Fatal(err)
	}
	defer svc.Shutdown(context.Background())
	if err := chk.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer chk.Stop(context.Background())
	for range health.MinLatencySamples {
		if _, err := sleepy.Call(ctx, svc, &req{}); err != nil {
			t.Fatal(err)
		}
	}
	wantCheck(t, refresh(t, chk), "latency", health.Degraded, "sleepy p99")
}
