package tracing_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"sync"
	"testing"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/tracing"
)

// TestOTLPExportWhenTheEndpointIsSet: with OTEL_EXPORTER_OTLP_ENDPOINT set,
// spans go to that OTLP/HTTP endpoint as well. No OpenTelemetry collector
// can be run here, so an HTTP server decodes what a collector would
// receive.
func TestOTLPExportWhenTheEndpointIsSet(t *testing.T) {
	var (
		mu       sync.Mutex
		names    []string
		services []string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var req collectortrace.ExportTraceServiceRequest
		if r.URL.Path != "/v1/traces" || proto.Unmarshal(body, &req) != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		for _, rs := range req.GetResourceSpans() {
			for _, kv := range rs.GetResource().GetAttributes() {
				if kv.GetKey() == "service.name" {
					services = append(services, kv.GetValue().GetStringValue())
				}
			}
			for _, ss := range rs.GetScopeSpans() {
				for _, s := range ss.GetSpans() {
					names = append(names, s.GetKind().String()+" "+s.GetName())
				}
			}
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
		b, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
		w.Write(b)
	}))
	defer srv.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", srv.URL)
	t.Setenv("OTEL_TRACES_SAMPLER", "always_on")

	conn := embeddedBus(t)
	p, err := tracing.New(testContext(t), tracing.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if d := p.Describe(); d != "OTEL_TRACES_SAMPLER=always_on → OTLP/HTTP" {
		t.Errorf("Describe() = %q", d)
	}
	svc := switchboard.NewService("svcc", "1.0.0", switchboard.WithLogger(quiet()))
	epC.Handle(svc, func(ctx context.Context, r *req) (*rep, error) { return &rep{}, nil })
	start(t, conn, p, svc)
	cl := switchboard.NewClient(conn, p.ClientOptions("tester")...)
	defer cl.Close()
	if _, err := epC.Call(testContext(t), cl, &req{}); err != nil {
		t.Fatal(err)
	}
	if err := p.Shutdown(testContext(t)); err != nil { // flushes
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	sort.Strings(names)
	sort.Strings(services)
	if len(names) != 2 || names[0] != "SPAN_KIND_CLIENT svcc/c" || names[1] != "SPAN_KIND_SERVER svcc/c" {
		t.Errorf("the collector got spans %v, want the client and server span of svcc/c", names)
	}
	if len(services) != 2 || services[0] != "svcc" || services[1] != "tester" {
		t.Errorf("the collector got resources of %v, want svcc and tester", services)
	}
}
