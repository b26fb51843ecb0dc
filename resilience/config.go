package resilience

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/switchboard-dev/switchboard"
)

// Config states the protections of services in a configuration file (JSON),
// so that operators change them without a build. Default applies to every
// service; Services["name"] refines it for one service, field by field.
// What neither sets keeps the value of Defaults().
//
//	{
//	  "default": {"retry": {"max_attempts": 2}},
//	  "services": {
//	    "checkout": {
//	      "retry":   {"idempotent": ["pricing.quote"], "budget_ratio": 0.2},
//	      "breaker": {"failure_ratio": 0.3, "open_for": "10s"},
//	      "rate_limits": [{"side": "server", "key": "caller", "rate": 200,
//	                       "overrides": {"billing": {"rate": 20}}}]
//	    },
//	    "reports": {"shed": {"off": true}}
//	  }
//	}
//
// Durations are strings such as "250ms" or "10s".
type Config struct {
	Default  *ServiceConfig            `json:"default,omitempty"`
	Services map[string]*ServiceConfig `json:"services,omitempty"`
}

// ServiceConfig is the protections of one service. A nil section keeps the
// default; a section with "off": true removes that protection.
type ServiceConfig struct {
	Retry   *RetryConfig   `json:"retry,omitempty"`
	Breaker *BreakerConfig `json:"breaker,omitempty"`
	Shed    *ShedConfig    `json:"shed,omitempty"`
	// RateLimits, if present, replace those of Default.
	RateLimits []RateLimitConfig `json:"rate_limits,omitempty"`
}

// RetryConfig configures Retry and its Budget; zero fields keep the default.
type RetryConfig struct {
	Off                bool     `json:"off,omitempty"`
	MaxAttempts        int      `json:"max_attempts,omitempty"`
	BaseDelay          Duration `json:"base_delay,omitempty"`
	MaxDelay           Duration `json:"max_delay,omitempty"`
	AttemptTimeout     Duration `json:"attempt_timeout,omitempty"`
	Idempotent         []string `json:"idempotent,omitempty"`
	BudgetRatio        float64  `json:"budget_ratio,omitempty"`
	BudgetMinPerSecond float64  `json:"budget_min_per_second,omitempty"`
	BudgetWindow       Duration `json:"budget_window,omitempty"`
}

// BreakerConfig configures Breaker; zero fields keep the default.
type BreakerConfig struct {
	Off          bool     `json:"off,omitempty"`
	FailureRatio float64  `json:"failure_ratio,omitempty"`
	MinRequests  int      `json:"min_requests,omitempty"`
	Window       Duration `json:"window,omitempty"`
	OpenFor      Duration `json:"open_for,omitempty"`
	Probes       int      `json:"probes,omitempty"`
}

// ShedConfig configures Shed; zero fields keep the default.
type ShedConfig struct {
	Off          bool    `json:"off,omitempty"`
	MinLimit     int     `json:"min_limit,omitempty"`
	MaxLimit     int     `json:"max_limit,omitempty"`
	InitialLimit int     `json:"initial_limit,omitempty"`
	Buffer       float64 `json:"buffer,omitempty"`
}

// RateLimitConfig configures one RateLimit.
type RateLimitConfig struct {
	// Side is "server" (calls the service admits) or "client" (calls it
	// sends).
	Side string `json:"side"`
	// Key picks the bucket: "endpoint" (default), "service", "caller" or
	// "caller_endpoint".
	Key       string           `json:"key,omitempty"`
	Rate      float64          `json:"rate"`
	Burst     int              `json:"burst,omitempty"`
	MaxWait   Duration         `json:"max_wait,omitempty"`
	Overrides map[string]Limit `json:"overrides,omitempty"`
}

// Duration is a time.Duration written as a string such as "250ms" in JSON.
type Duration time.Duration

// UnmarshalJSON reads "250ms", "10s", "1m30s".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want a duration string such as \"250ms\", got %s", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("want a duration such as \"250ms\", got %q", s)
	}
	if v < 0 {
		return fmt.Errorf("duration %q must not be negative", s)
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

var rateLimitKeys = map[string]func(*switchboard.Call) string{
	"": PerEndpoint, "endpoint": PerEndpoint, "service": PerService,
	"caller": PerCaller, "caller_endpoint": PerCallerEndpoint,
}

// ParseConfig reads a Config from JSON. Unknown fields and values out of
// range are errors that name the field, e.g.
// `services.checkout.breaker.failure_ratio: 1.5 is not between 0 and 1`.
func ParseConfig(data []byte) (*Config, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var c Config
	if err := dec.Decode(&c); err != nil {
		var syn *json.SyntaxError
		if errors.As(err, &syn) {
			return nil, fmt.Errorf("resilience: config: malformed JSON at byte offset %d: %w", syn.Offset, err)
		}
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("resilience: config: malformed JSON: it ends at byte offset %d before the document is complete", len(data))
		}
		return nil, fmt.Errorf("resilience: config: %w", err)
	}
	if dec.More() {
		return nil, errors.New("resilience: config: more than one JSON value")
	}
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("resilience: config: %w", err)
	}
	return &c, nil
}

// LoadConfig reads a Config from a JSON file.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("resilience: config: %w", err)
	}
	c, err := ParseConfig(b)
	if err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, path)
	}
	return c, nil
}

func (c *Config) validate() error {
	if err := c.Default.validate("default"); err != nil {
		return err
	}
	names := make([]string, 0, len(c.Services))
	for n := range c.Services {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := c.Services[n].validate("services." + n); err != nil {
			return err
		}
	}
	return nil
}

func (s *ServiceConfig) validate(at string) error {
	if s == nil {
		return nil
	}
	ratio := func(field string, v float64) error {
		if v < 0 || v > 1 || math.IsNaN(v) {
			return fmt.Errorf("%s.%s: %g is not between 0 and 1", at, field, v)
		}
		return nil
	}
	count := func(field string, v int) error {
		if v < 0 {
			return fmt.Errorf("%s.%s: %d must not be negative", at, field, v)
		}
		return nil
	}
	var errs []error
	if r := s.Retry; r != nil {
		errs = append(errs, count("retry.max_attempts", r.MaxAttempts), ratio("retry.budget_ratio", r.BudgetRatio))
		if r.BudgetMinPerSecond < 0 {
			errs = append(errs, fmt.Errorf("%s.retry.budget_min_per_second: %g must not be negative", at, r.BudgetMinPerSecond))
		}
	}
	if b := s.Breaker; b != nil {
		errs = append(errs, ratio("breaker.failure_ratio", b.FailureRatio), count("breaker.min_requests", b.MinRequests), count("breaker.probes", b.Probes))
	}
	if sh := s.Shed; sh != nil {
		errs = append(errs, count("shed.min_limit", sh.MinLimit), count("shed.max_limit", sh.MaxLimit), count("shed.initial_limit", sh.InitialLimit))
		if sh.MaxLimit > 0 && sh.MinLimit > sh.MaxLimit {
			errs = append(errs, fmt.Errorf("%s.shed: min_limit %d is above max_limit %d", at, sh.MinLimit, sh.MaxLimit))
		}
		if sh.Buffer < 0 {
			errs = append(errs, fmt.Errorf("%s.shed.buffer: %g must not be negative", at, sh.Buffer))
		}
	}
	for i, l := range s.RateLimits {
		where := fmt.Sprintf("%s.rate_limits[%d]", at, i)
		if l.Side != "server" && l.Side != "client" {
			errs = append(errs, fmt.Errorf("%s.side: %q is not \"server\" or \"client\"", where, l.Side))
		}
		if _, ok := rateLimitKeys[l.Key]; !ok {
			errs = append(errs, fmt.Errorf("%s.key: %q is not one of endpoint, service, caller, caller_endpoint", where, l.Key))
		}
		if l.Rate <= 0 {
			errs = append(errs, fmt.Errorf("%s.rate: %g must be a positive number of calls per second", where, l.Rate))
		}
		if l.Burst < 0 {
			errs = append(errs, fmt.Errorf("%s.burst: %d must not be negative", where, l.Burst))
		}
		for k, o := range l.Overrides {
			if o.Rate < 0 || o.Burst < 0 {
				errs = append(errs, fmt.Errorf("%s.overrides.%s: rate and burst must not be negative", where, k))
			}
		}
	}
	return errors.Join(errs...)
}

// Protections returns the protections the configuration gives service:
// Defaults(), then the Default section, then the service's own section.
func (c *Config) Protections(service string) *Protections {
	p := Defaults()
	if c == nil {
		return p
	}
	c.Default.apply(p)
	c.Services[service].apply(p)
	return p
}

func (s *ServiceConfig) apply(p *Protections) {
	if s == nil {
		return
	}
	if r := s.Retry; r != nil {
		if r.Off {
			p.Retry = nil
		} else {
			if p.Retry == nil {
				p.Retry = &Retry{Budget: &Budget{}}
			}
			setInt(&p.Retry.MaxAttempts, r.MaxAttempts)
			setDur(&p.Retry.BaseDelay, r.BaseDelay)
			setDur(&p.Retry.MaxDelay, r.MaxDelay)
			setDur(&p.Retry.AttemptTimeout, r.AttemptTimeout)
			if len(r.Idempotent) > 0 {
				p.Retry.Idempotent = append([]string(nil), r.Idempotent...)
			}
			if p.Retry.Budget == nil {
				p.Retry.Budget = &Budget{}
			}
			setFloat(&p.Retry.Budget.Ratio, r.BudgetRatio)
			setFloat(&p.Retry.Budget.MinPerSecond, r.BudgetMinPerSecond)
			setDur(&p.Retry.Budget.Window, r.BudgetWindow)
		}
	}
	if b := s.Breaker; b != nil {
		if b.Off {
			p.Breaker = nil
		} else {
			if p.Breaker == nil {
				p.Breaker = &Breaker{}
			}
			setFloat(&p.Breaker.FailureRatio, b.FailureRatio)
			setInt(&p.Breaker.MinRequests, b.MinRequests)
			setDur(&p.Breaker.Window, b.Window)
			setDur(&p.Breaker.OpenFor, b.OpenFor)
			setInt(&p.Breaker.Probes, b.Probes)
		}
	}
	if sh := s.Shed; sh != nil {
		if sh.Off {
			p.Shed = nil
		} else {
			if p.Shed == nil {
				p.Shed = &Shed{}
			}
			setInt(&p.Shed.MinLimit, sh.MinLimit)
			setInt(&p.Shed.MaxLimit, sh.MaxLimit)
			setInt(&p.Shed.InitialLimit, sh.InitialLimit)
			setFloat(&p.Shed.Buffer, sh.Buffer)
		}
	}
	if s.RateLimits != nil {
		p.ServerRateLimits, p.ClientRateLimits = nil, nil
		for _, l := range s.RateLimits {
			rl := &RateLimit{Limit: Limit{Rate: l.Rate, Burst: l.Burst}, Key: rateLimitKeys[l.Key], MaxWait: time.Duration(l.MaxWait)}
			if len(l.Overrides) > 0 {
				rl.Overrides = make(map[string]Limit, len(l.Overrides))
				for k, v := range l.Overrides {
					rl.Overrides[k] = v
				}
			}
			if strings.EqualFold(l.Side, "client") {
				p.ClientRateLimits = append(p.ClientRateLimits, rl)
			} else {
				p.ServerRateLimits = append(p.ServerRateLimits, rl)
			}
		}
	}
}

func setInt(dst *int, v int) {
	if v != 0 {
		*dst = v
	}
}

func setFloat(dst *float64, v float64) {
	if v != 0 {
		*dst = v
	}
}

func setDur(dst *time.Duration, v Duration) {
	if v != 0 {
		*dst = time.Duration(v)
	}
}
