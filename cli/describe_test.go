package cli

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/resilience"
)

func TestDescribeShowsWhatProtectionsReport(t *testing.T) {
	st := resilience.Status{
		Breakers: []resilience.BreakerStatus{
			{Service: "accounts", Endpoint: "post", State: resilience.StateOpen, Since: time.Now().Add(-3 * time.Second),
				RetryIn: 57 * time.Second, LastFailure: "Unavailable: database unreachable"},
			{Service: "pricing", Endpoint: "quote", State: resilience.StateClosed, Since: time.Now(), LastFailure: "old news"},
		},
		Shed:        []resilience.ShedStatus{{Service: "frontend", Endpoint: "checkout", Limit: 20, InFlight: 2, Admitted: 10, Rejected: 1}},
		RetryBudget: &resilience.BudgetStats{Calls: 30, Retries: 3, Available: 2, Ratio: 0.1},
		RateLimits:  []resilience.RateLimitStatus{{Side: "server", Limit: resilience.Limit{Rate: 100}, Overrides: map[string]resilience.Limit{"billing": {Rate: 5}}}},
	}
	raw, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	writeProtections(&out, InstanceSummary{ID: "i1", Status: map[string]json.RawMessage{resilience.StatusName: raw}})
	for _, want := range []string{
		"Protections of i1:",
		"breaker accounts.post: open for 3s, probing in 57s (last failure: Unavailable: database unreachable)",
		"breaker pricing.quote: closed for 0s\n",
		"shedding checkout: limit 20, in flight 2, admitted 10, rejected 1",
		"retry budget: 3 retries for 30 calls (ratio 0.1, 2.0 available)",
		"rate limit (server): 100/s, billing 5/s",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("describe output lacks %q:\n%s", want, out.String())
		}
	}

	out.Reset()
	writeProtections(&out, InstanceSummary{ID: "i2"})
	if out.Len() != 0 {
		t.Errorf("an instance without protections printed %q", out.String())
	}
	writeProtections(&out, InstanceSummary{ID: "i3", Status: map[string]json.RawMessage{resilience.StatusName: json.RawMessage(`[1]`)}})
	if !strings.Contains(out.String(), "Protections of i3: unreadable") {
		t.Errorf("a malformed status printed %q", out.String())
	}
}
