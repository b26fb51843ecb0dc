package resilience_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/resilience"
)

var checkout = switchboard.Endpoint[*req, *rsp]("frontend", "checkout")

// TestStatusShowsInDiscovery checks that a service's protections report
// their state through discovery, where `switchboard describe` reads it: an
// open breaker towards a failing downstream, the endpoint's shedding limit
// and the retry budget.
func TestStatusShowsInDiscovery(t *testing.T) {
	conn := newBus(t)
	ctx := ctxT(t)
	down := switchboard.NewService("accounts", "1.0.0", switchboard.WithLogger(quiet))
	ledgerPost.Handle(down, func(ctx context.Context, r *req) (*rsp, error) {
		return nil, switchboard.Errorf(switchboard.Unavailable, "accounts: database unreachable")
	})
	start(t, conn, down)

	p := resilience.Defaults()
	p.Breaker.OpenFor = time.Minute
	p.Breaker.Logger = quiet
	p.ServerRateLimits = []*resilience.RateLimit{{Limit: resilience.Limit{Rate: 1000}}}
	front := switchboard.NewService("frontend", "1.0.0", append(p.ServiceOptions(),
		switchboard.WithLogger(quiet), switchboard.WithHeartbeat(50*time.Millisecond))...)
	checkout.Handle(front, func(ctx context.Context, r *req) (*rsp, error) {
		return ledgerPost.Call(ctx, front, r)
	})
	start(t, conn, front)

	cl := switchboard.NewClient(conn)
	disc := switchboard.NewDiscovery(conn)
	defer disc.Close()
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, _ = checkout.Call(ctx, cl, &req{N: 1}, switchboard.WithTimeout(2*time.Second))
		insts, err := disc.Lookup(ctx, "frontend") // kept fresh by heartbeats
		if err != nil {
			t.Fatal(err)
		}
		var st resilience.Status
		if len(insts) == 1 {
			raw, ok := insts[0].Status[resilience.StatusName]
			if !ok {
				t.Fatalf("frontend announces no %q status: %+v", resilience.StatusName, insts[0].Status)
			}
			if err := json.Unmarshal(raw, &st); err != nil {
				t.Fatalf("status %s: %v", raw, err)
			}
		}
		if len(st.Breakers) > 0 && st.Breakers[0].State == resilience.StateOpen {
			b := st.Breakers[0]
			if b.Service != "accounts" || b.Endpoint != "post" || b.LastFailure == "" {
				t.Errorf("open breaker reported as %+v", b)
			}
			if len(st.Shed) != 1 || st.Shed[0].Endpoint != "checkout" || st.Shed[0].Admitted == 0 || st.Shed[0].Limit == 0 {
				t.Errorf("shed status %+v", st.Shed)
			}
			if st.RetryBudget == nil || st.RetryBudget.Calls == 0 || st.RetryBudget.Ratio == 0 {
				t.Errorf("retry budget %+v", st.RetryBudget)
			}
			if len(st.RateLimits) != 1 || st.RateLimits[0].Side != "server" || st.RateLimits[0].Limit.Rate != 1000 {
				t.Errorf("rate limits %+v", st.RateLimits)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("discovery never showed the breaker towards accounts open; last status: %+v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
