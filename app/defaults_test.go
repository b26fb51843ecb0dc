package app_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/app"
	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/resilience"
)

type ping struct{}

var pingEP = switchboard.Endpoint[*ping, *ping]("pinger", "ping")

func statusOf(t *testing.T, svc *switchboard.Service) resilience.Status {
	t.Helper()
	raw, ok := svc.Info().Status[resilience.StatusName]
	if !ok {
		t.Fatalf("%s reports no %q status", svc.Name(), resilience.StatusName)
	}
	var st resilience.Status
	if err := json.Unmarshal(raw, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

func TestPrepareInstallsProtectionsUnlessTheServiceHasItsOwn(t *testing.T) {
	plain := switchboard.NewService("pinger", "1.0.0")
	pingEP.Handle(plain, func(ctx context.Context, p *ping) (*ping, error) { return p, nil })
	own := resilience.Defaults()
	own.ServerRateLimits = []*resilience.RateLimit{{Limit: resilience.Limit{Rate: 5}}}
	custom := switchboard.NewService("custom", "1.0.0", own.ServiceOptions()...)

	if err := app.Prepare(plain, custom); err != nil {
		t.Fatal(err)
	}
	if st := statusOf(t, plain); st.RetryBudget == nil || len(st.RateLimits) != 0 {
		t.Errorf("plain service after Prepare: %+v, want the defaults (a retry budget, no rate limits)", st)
	}
	if st := statusOf(t, custom); len(st.RateLimits) != 1 || st.RateLimits[0].Limit.Rate != 5 {
		t.Errorf("custom service after Prepare: %+v, want its own protections kept", st)
	}

	conn, err := bus.Open(context.Background(), "embedded://"+t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	late := switchboard.NewService("late", "1.0.0")
	if err := late.Start(context.Background(), conn); err != nil {
		t.Fatal(err)
	}
	defer late.Shutdown(context.Background())
	if err := app.Prepare(late); switchboard.ErrorCode(err) != switchboard.FailedPrecondition {
		t.Fatalf("Prepare after Start: got %v, want FailedPrecondition", err)
	}
}

func TestPrepareAppliesTheConfigurationFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "resilience.json")
	if err := os.WriteFile(path, []byte(`{"services": {"pinger": {"rate_limits": [{"side": "server", "rate": 7}]}}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv(app.EnvResilience, path)
	svc := switchboard.NewService("pinger", "1.0.0")
	other := switchboard.NewService("other", "1.0.0")
	if err := app.Prepare(svc, other); err != nil {
		t.Fatal(err)
	}
	if st := statusOf(t, svc); len(st.RateLimits) != 1 || st.RateLimits[0].Limit.Rate != 7 {
		t.Errorf("pinger after Prepare: %+v, want the file's rate limit of 7/s", st)
	}
	if st := statusOf(t, other); len(st.RateLimits) != 0 || st.RetryBudget == nil {
		t.Errorf("other after Prepare: %+v, want the defaults", st)
	}

	if err := os.WriteFile(path, []byte(`{"services": {"pinger": {"breaker": {"failure_ratio": 3}}}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	err := app.Prepare(switchboard.NewService("pinger", "1.0.0"))
	if err == nil || !strings.Contains(err.Error(), "$SWITCHBOARD_RESILIENCE") || !strings.Contains(err.Error(), path) ||
		!strings.Contains(err.Error(), "services.pinger.breaker.failure_ratio: 3 is not between 0 and 1") {
		t.Fatalf("a bad file: got %v", err)
	}
}
