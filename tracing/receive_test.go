package tracing_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/tracing"
)

// TestOTLPReceiverForwardsForeignSpansOverTheBus plays a service in another
// language: plain OpenTelemetry with the standard OTLP/HTTP exporter,
// pointed at the receiver. Its spans must come out on the bus in the
// collector's form, with service, parentage, kind, error and attributes.
func TestOTLPReceiverForwardsForeignSpansOverTheBus(t *testing.T) {
	conn := embeddedBus(t)
	ctx := testContext(t)
	got := make(chan []tracing.Span, 4)
	sub, err := conn.Listen(ctx, tracing.Subject, func(m *bus.Message) {
		spans, _, err := tracing.DecodeBatch(m.Body)
		if err != nil {
			t.Errorf("the receiver sent a batch the collector cannot read: %v", err)
		}
		got <- spans
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Stop(context.Background())
	srv := httptest.NewServer(tracing.OTLPHandler(conn))
	defer srv.Close()

	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(srv.URL+tracing.OTLPPath))
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp), sdktrace.WithResource(resource.NewSchemaless(
		attribute.String("service.name", "legacy-billing"), attribute.String("service.instance.id", "py-7"))))
	tr := tp.Tracer("billing")
	pctx, parent := tr.Start(ctx, "POST /invoices", trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("rpc.service", "legacy-billing"), attribute.String("rpc.method", "invoice"), attribute.Int("items", 3)))
	_, child := tr.Start(pctx, "SELECT invoices", trace.WithSpanKind(trace.SpanKindClient))
	child.SetStatus(codes.Error, "deadlock detected")
	child.End()
	parent.End()
	if err := tp.Shutdown(ctx); err != nil {
		t.Fatalf("the OTLP exporter failed against the receiver: %v", err)
	}

	var spans []tracing.Span
	deadline := time.After(15 * time.Second)
	for len(spans) < 2 {
		select {
		case s := <-got:
			spans = append(spans, s...)
		case <-deadline:
			t.Fatalf("only %d of 2 spans came out on the bus within 15s", len(spans))
		}
	}
	byName := map[string]tracing.Span{}
	for _, s := range spans {
		byName[s.Name] = s
	}
	p, c := byName["POST /invoices"], byName["SELECT invoices"]
	if p.Service != "legacy-billing" || p.Instance != "py-7" || p.Kind != "server" || p.TraceID != parent.SpanContext().TraceID().String() ||
		p.Attrs["items"] != "3" || p.Endpoint() != "legacy-billing.invoice" || p.DurationNS <= 0 {
		t.Errorf("parent span %+v", p)
	}
	if c.ParentID != p.SpanID || c.TraceID != p.TraceID || c.Kind != "client" || c.Error != "deadlock detected" || !c.Failed() {
		t.Errorf("child span %+v (parent %s)", c, p.SpanID)
	}
}

func TestOTLPReceiverRejectsBadInput(t *testing.T) {
	conn := embeddedBus(t)
	h := tracing.OTLPHandler(conn)
	for _, tc := range []struct {
		name, method, ct string
		body             []byte
		status           int
		msg              string
	}{
		{"GET is not OTLP", http.MethodGet, "application/x-protobuf", nil, http.StatusMethodNotAllowed, "POST"},
		{"another encoding", http.MethodPost, "text/plain", []byte("hi"), http.StatusUnsupportedMediaType, "unsupported Content-Type"},
		{"malformed protobuf", http.MethodPost, "application/x-protobuf", []byte{0xff, 0xff, 0xff}, http.StatusBadRequest, "malformed OTLP"},
		{"malformed JSON", http.MethodPost, "application/json", []byte(`{"resourceSpans": [`), http.StatusBadRequest, "malformed OTLP"},
		{"too large", http.MethodPost, "application/x-protobuf", bytes.Repeat([]byte{0}, tracing.MaxOTLPBody+1), http.StatusRequestEntityTooLarge, "larger than"},
		{"an empty request is fine", http.MethodPost, "application/json", []byte(`{}`), http.StatusOK, "{}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(tc.method, tracing.OTLPPath, bytes.NewReader(tc.body))
			r.Header.Set("Content-Type", tc.ct)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.status || !strings.Contains(w.Body.String()+w.Header().Get("Allow"), tc.msg) {
				t.Fatalf("got %d %q, want %d containing %q", w.Code, w.Body.String(), tc.status, tc.msg)
			}
		})
	}
}
