package app

import (
	"errors"
	"fmt"
	"os"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/metrics"
	"github.com/switchboard-dev/switchboard/resilience"
	"github.com/switchboard-dev/switchboard/traffic"
)

// EnvResilience names the environment variable holding the path of a JSON
// resilience.Config that Prepare applies: per service retries, breakers,
// shedding and rate limits, changed without a build.
const EnvResilience = "SWITCHBOARD_RESILIENCE"

// Prepare installs the platform's defaults on services that are not started
// yet, so that a service author writes none of it: the protections of
// resilience.Defaults (retries within a budget and a circuit breaker per
// target on the calls a service makes, adaptive load shedding on its
// endpoints), each service with its own, as refined by the file that
// $SWITCHBOARD_RESILIENCE names, if any. A service that installed
// protections itself (anything reporting resilience.StatusName) keeps its
// own. It also installs package traffic (requests per caller and latency
// histograms in discovery, for the control plane). Run, RunContext and
// `switchboard dev` call it; a program that starts
// services itself calls it before Start. A configuration file that cannot
// be read or is invalid is an error naming the file and the field.
func Prepare(svcs ...*switchboard.Service) error { return PrepareWith(nil, svcs...) }

// PrepareWith is Prepare that also counts every decision of the protections
// it installs in m (switchboard_resilience_decisions_total), when m is not
// nil.
func PrepareWith(m *metrics.Metrics, svcs ...*switchboard.Service) error {
	var cfg *resilience.Config
	if path := os.Getenv(EnvResilience); path != "" {
		c, err := resilience.LoadConfig(path)
		if err != nil {
			return fmt.Errorf("$%s: %w", EnvResilience, err)
		}
		cfg = c
	}
	var errs []error
	for _, s := range svcs {
		if s.Reports(resilience.StatusName) {
			continue
		}
		p := cfg.Protections(s.Name())
		if m != nil {
			name := s.Name()
			p.ObserveDecisions(func(d resilience.Decision) {
				m.Decision(name, d.Protection, d.Action, d.Reason, d.Service, d.Endpoint)
			})
		}
		errs = append(errs, s.Apply(p.ServiceOptions()...))
	}
	if len(errs) == 0 {
		// Callers and latency histograms for the control plane's service
		// graph and percentiles; inside the protections, so it sees what
		// they admitted.
		errs = append(errs, traffic.Install(svcs...))
	}
	return errors.Join(errs...)
}
