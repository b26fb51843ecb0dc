package metrics_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/metrics"
	"github.com/switchboard-dev/switchboard/resilience"
	"github.com/switchboard-dev/switchboard/wire"
)

// TestDecisionsAndFaultsAreMetrics checks that what the protections decide
// and the faults injected into an instance show on /metrics: a rate limit's
// rejections by reason and target, and a fault in force with how often it
// fired (gone once cleared).
func TestDecisionsAndFaultsAreMetrics(t *testing.T) {
	conn := newBus(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	p := &resilience.Protections{ServerRateLimits: []*resilience.RateLimit{{Limit: resilience.Limit{Rate: 0.001, Burst: 1}}}}
	p.ObserveDecisions(func(d resilience.Decision) {
		m.Decision("shop", d.Protection, d.Action, d.Reason, d.Service, d.Endpoint)
	})
	svc := switchboard.NewService("shop", "1.0.0", p.ServiceOptions()...)
	echo.Handle(svc, func(ctx context.Context, r *req) (*rsp, error) { return &rsp{}, nil })
	m.Instrument(svc)
	if err := svc.Start(ctx, conn); err != nil {
		t.Fatal(err)
	}
	defer svc.Shutdown(context.Background())
	cl := switchboard.NewClient(conn)
	for range 3 { // one token: the first passes, two are refused
		_, _ = echo.Call(ctx, cl, &req{Name: "a"})
	}
	rejected := map[string]string{"service": "shop", "protection": "ratelimit", "action": "reject", "reason": "rate",
		"target_service": "shop", "target_endpoint": "echo"}
	if got := value(t, reg, "switchboard_resilience_decisions_total", rejected); got != 2 {
		t.Errorf("rate-limit rejections counted %g, want 2", got)
	}

	st, err := switchboard.InjectFaults(ctx, cl, svc.ID(), wire.FaultCommand{Op: wire.FaultSet,
		Faults: []wire.Fault{{Endpoint: "echo", ErrorRate: 1, ErrorCode: "Internal"}}})
	if err != nil {
		t.Fatal(err)
	}
	target := map[string]string{"service": "shop", "instance": svc.ID(), "target": "endpoint echo"}
	active := map[string]string{"service": "shop", "instance": svc.ID(), "target": "endpoint echo", "fault": st.Faults[0].Fault.String()}
	if got := value(t, reg, "switchboard_fault_injected", active); got != 1 {
		t.Errorf("switchboard_fault_injected = %g, want 1", got)
	}
	if got := value(t, reg, "switchboard_fault_fired", target); got != 0 {
		t.Errorf("switchboard_fault_fired before any call = %g, want 0", got)
	}
	if _, err := echo.Call(ctx, cl, &req{Name: "b"}); switchboard.ErrorCode(err) != switchboard.Internal {
		t.Fatalf("call with the fault on: %v, want the injected Internal", err)
	}
	if got := value(t, reg, "switchboard_fault_fired", target); got != 1 {
		t.Errorf("switchboard_fault_fired after one call = %g, want 1", got)
	}
	if _, err := switchboard.InjectFaults(ctx, cl, svc.ID(), wire.FaultCommand{Op: wire.FaultClear}); err != nil {
		t.Fatal(err)
	}
	if got := value(t, reg, "switchboard_fault_injected", active); got != -1 {
		t.Errorf("switchboard_fault_injected after clear = %g, want no series", got)
	}
}
