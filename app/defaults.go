package app

import (
	"errors"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/resilience"
)

// Prepare installs the platform's defaults on services that are not started
// yet, so that a service author writes none of it: the protections of
// resilience.Defaults (retries within a budget and a circuit breaker per
// target on the calls a service makes, adaptive load shedding on its
// endpoints), each service with its own. A service that installed
// protections itself (anything reporting resilience.StatusName) keeps its
// own. Run, RunContext and `switchboard dev` call it; a program that starts
// services itself calls it before Start.
func Prepare(svcs ...*switchboard.Service) error {
	var errs []error
	for _, s := range svcs {
		if s.Reports(resilience.StatusName) {
			continue
		}
		errs = append(errs, s.Apply(resilience.Defaults().ServiceOptions()...))
	}
	return errors.Join(errs...)
}
