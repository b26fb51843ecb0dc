package resilience_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/resilience"
)

func TestConfigRefinesTheDefaultsPerService(t *testing.T) {
	c, err := resilience.ParseConfig([]byte(`{
	  "default": {"retry": {"max_attempts": 2}, "breaker": {"open_for": "7s"}},
	  "services": {
	    "checkout": {
	      "retry": {"idempotent": ["pricing.quote"], "budget_ratio": 0.2, "base_delay": "20ms"},
	      "breaker": {"failure_ratio": 0.3},
	      "rate_limits": [
	        {"side": "server", "key": "caller", "rate": 200, "overrides": {"billing": {"rate": 20}}},
	        {"side": "client", "rate": 50, "max_wait": "100ms"}
	      ]
	    },
	    "reports": {"shed": {"off": true}, "retry": {"off": true}}
	  }
	}`))
	if err != nil {
		t.Fatal(err)
	}
	co := c.Protections("checkout")
	if co.Retry.MaxAttempts != 2 || co.Retry.BaseDelay != 20*time.Millisecond || co.Retry.Budget.Ratio != 0.2 ||
		len(co.Retry.Idempotent) != 1 || co.Retry.Idempotent[0] != "pricing.quote" {
		t.Errorf("checkout retry = %+v (budget %+v)", co.Retry, co.Retry.Budget)
	}
	if co.Breaker.OpenFor != 7*time.Second || co.Breaker.FailureRatio != 0.3 {
		t.Errorf("checkout breaker: open_for %v, failure_ratio %v", co.Breaker.OpenFor, co.Breaker.FailureRatio)
	}
	if co.Shed == nil {
		t.Error("checkout lost its default Shed")
	}
	if len(co.ServerRateLimits) != 1 || co.ServerRateLimits[0].Limit.Rate != 200 || co.ServerRateLimits[0].Overrides["billing"].Rate != 20 ||
		co.ServerRateLimits[0].Key == nil {
		t.Errorf("checkout server rate limits = %+v", co.ServerRateLimits)
	}
	if len(co.ClientRateLimits) != 1 || co.ClientRateLimits[0].Limit.Rate != 50 || co.ClientRateLimits[0].MaxWait != 100*time.Millisecond {
		t.Errorf("checkout client rate limits = %+v", co.ClientRateLimits)
	}

	rep := c.Protections("reports")
	if rep.Shed != nil || rep.Retry != nil || rep.Breaker == nil || rep.Breaker.OpenFor != 7*time.Second {
		t.Errorf("reports = retry %v, shed %v, breaker %+v; want no retry, no shed, the default section's breaker", rep.Retry, rep.Shed, rep.Breaker)
	}
	other := c.Protections("anyone")
	if other.Retry.MaxAttempts != 2 || other.Retry.Budget == nil || len(other.ServerRateLimits) != 0 {
		t.Errorf("a service the file does not name gets %+v", other.Retry)
	}
	var nilConfig *resilience.Config
	if p := nilConfig.Protections("x"); p.Retry == nil || p.Breaker == nil || p.Shed == nil {
		t.Errorf("no config: %+v, want Defaults()", p)
	}
}

func TestConfigRejectsBadInputNamingTheField(t *testing.T) {
	for _, tc := range []struct{ name, json, want string }{
		{"an unknown field", `{"services": {"a": {"retry": {"max_atempts": 2}}}}`, `unknown field "max_atempts"`},
		{"a ratio above one", `{"services": {"checkout": {"breaker": {"failure_ratio": 1.5}}}}`, "services.checkout.breaker.failure_ratio: 1.5 is not between 0 and 1"},
		{"a negative count", `{"default": {"shed": {"min_limit": -1}}}`, "default.shed.min_limit: -1 must not be negative"},
		{"min above max", `{"default": {"shed": {"min_limit": 50, "max_limit": 10}}}`, "default.shed: min_limit 50 is above max_limit 10"},
		{"a duration without a unit", `{"default": {"breaker": {"open_for": "10"}}}`, `want a duration such as "250ms", got "10"`},
		{"a duration as a number", `{"default": {"breaker": {"open_for": 10}}}`, `want a duration string`},
		{"a rate limit without a side", `{"default": {"rate_limits": [{"rate": 5}]}}`, `default.rate_limits[0].side: "" is not "server" or "client"`},
		{"a rate limit with an unknown key", `{"default": {"rate_limits": [{"side": "server", "key": "ip", "rate": 5}]}}`, `default.rate_limits[0].key: "ip" is not one of`},
		{"a rate limit without a rate", `{"default": {"rate_limits": [{"side": "server"}]}}`, "default.rate_limits[0].rate: 0 must be a positive number"},
		{"malformed JSON", `{"default": {`, "malformed JSON: it ends at byte offset 13"},
		{"a syntax error", `{"default": {]}`, "malformed JSON at byte offset 14"},
		{"two documents", `{} {}`, "more than one JSON value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := resilience.ParseConfig([]byte(tc.json))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
	t.Run("a file that does not exist", func(t *testing.T) {
		_, err := resilience.LoadConfig(filepath.Join(t.TempDir(), "nope.json"))
		if err == nil || !strings.Contains(err.Error(), "nope.json") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("a bad file is named in the error", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "resilience.json")
		if err := os.WriteFile(path, []byte(`{"default": {"retry": {"max_attempts": -2}}}`), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := resilience.LoadConfig(path)
		if err == nil || !strings.Contains(err.Error(), "default.retry.max_attempts: -2") || !strings.Contains(err.Error(), path) {
			t.Fatalf("got %v", err)
		}
	})
}
