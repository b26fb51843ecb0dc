package metrics_test

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/metrics"
)

// Instrument services before they start; serve the registry with promhttp
// (package admin does, on the admin port). app.Run does all of it.
func ExampleMetrics_Instrument() {
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg)
	if err != nil {
		panic(err)
	}
	svc := switchboard.NewService("pricing", "1.0.0")
	m.Instrument(svc)

	// A client that is not a service's own, e.g. a gateway's:
	_ = switchboard.WithClientMiddleware(m.ClientMiddleware())
}
