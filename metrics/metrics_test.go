package metrics_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/bus/driver"
	_ "github.com/switchboard-dev/switchboard/bus/natsbus"
	"github.com/switchboard-dev/switchboard/metrics"
)

type req struct {
	Name string `json:"name"`
}
type rsp struct{}

var (
	echo   = switchboard.Endpoint[*req, *rsp]("shop", "echo")
	gated  = switchboard.Endpoint[*req, *rsp]("shop", "gated")
	orders = switchboard.Topic[*req]("shop.order")
)

func newBus(t testing.TB) *bus.Conn {
	t.Helper()
	conn, err := bus.Open(context.Background(), "embedded://"+t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// value returns the value of the counter or gauge name with exactly the
// labels want, or the sample count for a histogram; -1 if there is none.
func value(t *testing.T, g prometheus.Gatherer, name string, want map[string]string) float64 {
	t.Helper()
	fams, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			if len(m.GetLabel()) != len(want) {
				continue
			}
			for _, l := range m.GetLabel() {
				if want[l.GetName()] != l.GetValue() {
					continue next
				}
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				return m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				return m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return -1
}

func TestMetricsCountWhatHappened(t *testing.T) {
	conn := newBus(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := metrics.New(reg); err == nil {
		t.Error("registering the metrics twice succeeded")
	}

	svc := switchboard.NewService("shop", "1.0.0")
	entered, release := make(chan struct{}), make(chan struct{})
	echo.Handle(svc, func(ctx context.Context, r *req) (*rsp, error) {
		if r.Name == "" {
			return nil, switchboard.Errorf(switchboard.InvalidArgument, "name required")
		}
		return &rsp{}, nil
	})
	gated.Handle(svc, func(ctx context.Context, r *req) (*rsp, error) {
		entered <- struct{}{}
		<-release
		return &rsp{}, nil
	}, switchboard.MaxInFlight(1))
	orders.Declare(svc)
	orders.Subscribe(svc, "billing", func(ctx context.Context, ev *req) error {
		if ev.Name == "poison" {
			return errors.New("cannot bill")
		}
		return nil
	}, switchboard.MaxAttempts(2), switchboard.Backoff(func(int) time.Duration { return time.Millisecond }))
	m.Instrument(svc)
	m.Instrument(svc) // a second time does nothing
	settled := make(chan bus.Settled, 8)
	svc.Observe(switchboard.Observer{Delivery: func(s bus.Settled) { settled <- s }})
	if err := svc.Start(ctx, conn); err != nil {
		t.Fatal(err)
	}
	defer svc.Shutdown(context.Background())

	cl := switchboard.NewClient(conn, switchboard.WithCaller("web"), switchboard.WithClientMiddleware(m.ClientMiddleware()))
	defer cl.Close()
	for range 5 {
		if _, err := echo.Call(ctx, cl, &req{Name: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		if _, err := echo.Call(ctx, cl, &req{}); switchboard.ErrorCode(err) != switchboard.InvalidArgument {
			t.Fatal(err)
		}
	}
	done := make(chan error)
	go func() { _, err := gated.Call(ctx, cl, &req{}); done <- err }()
	<-entered
	if got := value(t, reg, "switchboard_rpc_server_in_flight", map[string]string{"service": "shop", "endpoint": "gated"}); got != 1 {
		t.Errorf("in flight on gated = %g, want 1", got)
	}
	if got := value(t, reg, "switchboard_rpc_server_max_in_flight", map[string]string{"service": "shop", "endpoint": "gated"}); got != 1 {
		t.Errorf("max in flight on gated = %g, want 1", got)
	}
	if _, err := gated.Call(ctx, cl, &req{}); switchboard.ErrorCode(err) != switchboard.ResourceExhausted {
		t.Fatalf("second gated call: %v", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := cl.CallJSON(ctx, "shop", "no_such_endpoint", nil); switchboard.ErrorCode(err) != switchboard.Unimplemented {
		t.Fatal(err)
	}

	for _, n := range []string{"a", "b", "poison"} {
		if err := orders.Publish(ctx, svc, &req{Name: n}); err != nil {
			t.Fatal(err)
		}
	}
	dead := false
	for !dead {
		select {
		case s := <-settled:
			dead = s.Outcome == bus.DeadLettered
		case <-ctx.Done():
			t.Fatal("the poison order was not dead-lettered")
		}
	}

	server := func(endpoint, caller, code string) map[string]string {
		return map[string]string{"service": "shop", "endpoint": endpoint, "caller": caller, "code": code}
	}
	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"switchboard_rpc_server_requests_total", server("echo", "web", "OK"), 5},
		{"switchboard_rpc_server_requests_total", server("echo", "web", "InvalidArgument"), 2},
		{"switchboard_rpc_server_requests_total", server("gated", "web", "OK"), 1},
		{"switchboard_rpc_server_requests_total", server("gated", "web", "ResourceExhausted"), 1},
		{"switchboard_rpc_server_requests_total", server("_unknown", "web", "Unimplemented"), 1},
		{"switchboard_rpc_server_duration_seconds", map[string]string{"service": "shop", "endpoint": "echo", "caller": "web"}, 7},
		{"switchboard_rpc_client_requests_total", map[string]string{"caller": "web", "service": "shop", "endpoint": "echo", "code": "OK"}, 5},
		{"switchboard_rpc_client_requests_total", map[string]string{"caller": "web", "service": "shop", "endpoint": "gated", "code": "ResourceExhausted"}, 1},
		{"switchboard_rpc_client_duration_seconds", map[string]string{"caller": "web", "service": "shop", "endpoint": "echo"}, 7},
		{"switchboard_events_published_total", map[string]string{"service": "shop", "topic": "shop.order", "code": "OK"}, 3},
		{"switchboard_events_consumed_total", map[string]string{"service": "shop", "topic": "shop.order", "group": "billing", "outcome": "acked"}, 2},
		{"switchboard_events_consumed_total", map[string]string{"service": "shop", "topic": "shop.order", "group": "billing", "outcome": "retried"}, 1},
		{"switchboard_events_consumed_total", map[string]string{"service": "shop", "topic": "shop.order", "group": "billing", "outcome": "dead_lettered"}, 1},
		{"switchboard_events_redelivered_total", map[string]string{"service": "shop", "topic": "shop.order", "group": "billing"}, 1},
		{"switchboard_events_dead_lettered_total", map[string]string{"service": "shop", "topic": "shop.order", "group": "billing"}, 1},
		{"switchboard_event_handler_duration_seconds", map[string]string{"service": "shop", "topic": "shop.order", "group": "billing"}, 4},
		{"switchboard_rpc_server_in_flight", map[string]string{"service": "shop", "endpoint": "gated"}, 0},
	} {
		if got := value(t, reg, tc.name, tc.labels); got != tc.want {
			t.Errorf("%s%v = %g, want %g", tc.name, tc.labels, got, tc.want)
		}
	}
}

// backlogDriver replaces the embedded NATS driver's backlog with fixed
// figures, so the gauges can be checked exactly.
type backlogDriver struct{ driver.Conn }

func (backlogDriver) Backlog(ctx context.Context, topic, group string) (driver.Backlog, error) {
	return driver.Backlog{Pending: 42, Unacked: 3}, nil
}

func TestConsumerLagWhereTheDriverCanTell(t *testing.T) {
	conn := bus.NewConn(backlogDriver{newBus(t).Driver()})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	svc := switchboard.NewService("shop", "1.0.0")
	orders.Subscribe(svc, "billing", func(ctx context.Context, ev *req) error { return nil })
	m.Instrument(svc)
	if err := svc.Start(ctx, conn); err != nil {
		t.Fatal(err)
	}
	defer svc.Shutdown(context.Background())
	l := map[string]string{"service": "shop", "topic": "shop.order", "group": "billing"}
	if got := value(t, reg, "switchboard_consumer_lag_messages", l); got != 42 {
		t.Errorf("lag %g, want 42", got)
	}
	if got := value(t, reg, "switchboard_consumer_unacked_messages", l); got != 3 {
		t.Errorf("unacked %g, want 3", got)
	}
}

func TestNoConsumerLagWhereTheDriverCannotTell(t *testing.T) {
	// Embedding only driver.Conn hides the NATS driver's Backlogs.
	conn := bus.NewConn(struct{ driver.Conn }{newBus(t).Driver()})
	if conn.CanReportBacklog() {
		t.Fatal("the wrapped driver still reports backlogs")
	}
	if _, err := conn.Backlog(context.Background(), "shop.order", "billing"); switchboard.ErrorCode(err) != switchboard.Unimplemented {
		t.Errorf("Backlog on a driver without it: %v, want Unimplemented", err)
	}
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	svc := switchboard.NewService("shop", "1.0.0")
	orders.Subscribe(svc, "billing", func(ctx context.Context, ev *req) error { return nil })
	m.Instrument(svc)
	if err := svc.Start(context.Background(), conn); err != nil {
		t.Fatal(err)
	}
	defer svc.Shutdown(context.Background())
	if got := value(t, reg, "switchboard_consumer_lag_messages", map[string]string{"service": "shop", "topic": "shop.order", "group": "billing"}); got != -1 {
		t.Errorf("lag reported as %g by a driver that cannot tell", got)
	}
}
