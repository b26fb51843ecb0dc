// Package ridehail is Switchboard's example domain: a small ride-hailing
// platform of six services that `switchboard dev` runs, and that the
// benchmarks and simulations drive with package workload.
//
//	customers  rider profiles                          JSON
//	drivers    driver positions and availability       JSON
//	pricing    upfront fares with surge                JSON
//	dispatch   matches trips with the nearest driver   protobuf
//	trips      request, complete and look up trips     protobuf
//	payments   charges fares on trip.completed         JSON, consumes protobuf events
//
// A trip request fans out from trips to customers, pricing and dispatch in
// parallel; completing a trip publishes trip.completed, which payments
// consumes. The contracts that clients and services share are in package
// contract (and the generated protobuf types in package ridehailpb).
//
// Run them all on one bus connection:
//
//	for _, svc := range ridehail.Services(logger) {
//		if err := svc.Start(ctx, conn); err != nil { ... }
//	}
//
// or, as a program, app.Run(ridehail.Services(nil)...).
package ridehail

import (
	"log/slog"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/examples/ridehail/customers"
	"github.com/switchboard-dev/switchboard/examples/ridehail/dispatch"
	"github.com/switchboard-dev/switchboard/examples/ridehail/drivers"
	"github.com/switchboard-dev/switchboard/examples/ridehail/payments"
	"github.com/switchboard-dev/switchboard/examples/ridehail/pricing"
	"github.com/switchboard-dev/switchboard/examples/ridehail/trips"
)

// Services returns a new instance of every service of the domain, not yet
// started, in an order that serves callees before their callers (start
// them in this order and shut them down in reverse). A nil logger means
// slog.Default(); opts, such as switchboard.WithMiddleware for metrics and
// tracing, are given to every service.
func Services(logger *slog.Logger, opts ...switchboard.ServiceOption) []*switchboard.Service {
	return []*switchboard.Service{
		customers.New(logger, opts...),
		drivers.New(logger, opts...),
		pricing.New(logger, opts...),
		dispatch.New(logger, opts...),
		trips.New(logger, opts...),
		payments.New(logger, opts...),
	}
}
