package layers

import (
	"strings"
	"testing"
)

// TestOnlyTheCrossCuttingLayerImportsOpenTelemetry keeps OpenTelemetry out
// of the portable layers and the SDK: tracing plugs in through the SDK's
// middleware hooks.
func TestOnlyTheCrossCuttingLayerImportsOpenTelemetry(t *testing.T) {
	for _, p := range listDeps(t, mod+"/bus", mod+"/bus/driver", mod+"/wire", mod, mod+"/resilience") {
		for _, d := range p.Deps {
			if strings.HasPrefix(d, "go.opentelemetry.io/") {
				t.Errorf("%s depends on %s: only the cross-cutting layer (package tracing) may use OpenTelemetry", p.ImportPath, d)
			}
		}
	}
}

// TestTracingPackagesImportOnlyLayersBelow: tracing is cross-cutting (on
// the SDK), tracestore a platform service (on tracing); neither reaches up
// into the runners, the CLI or the examples, and both stay broker-neutral.
func TestTracingPackagesImportOnlyLayersBelow(t *testing.T) {
	above := map[string][]string{
		mod + "/tracing":    {mod + "/tracestore", mod + "/app", mod + "/cli", mod + "/examples/", mod + "/controlplane"},
		mod + "/tracestore": {mod + "/app", mod + "/cli", mod + "/examples/"},
	}
	brokers := []string{"github.com/nats-io/", "github.com/rabbitmq/", mod + "/bus/natsbus", mod + "/bus/amqpbus"}
	for _, p := range listDeps(t, mod+"/tracing", mod+"/tracestore") {
		for _, d := range p.Deps {
			for _, bad := range above[p.ImportPath] {
				if d == bad || strings.HasPrefix(d, bad) && strings.HasSuffix(bad, "/") {
					t.Errorf("%s depends on %s, a layer above it", p.ImportPath, d)
				}
			}
			for _, b := range brokers {
				if strings.HasPrefix(d, b) {
					t.Errorf("%s depends on broker client %s: it must work on any bus", p.ImportPath, d)
				}
			}
		}
	}
}
