package tracing

import (
	"compress/gzip"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/switchboard-dev/switchboard/bus"
)

// OTLPPath is where OTLP/HTTP exporters send traces: the standard path,
// so that OTEL_EXPORTER_OTLP_ENDPOINT=http://HOST:PORT works unchanged.
const OTLPPath = "/v1/traces"

// MaxOTLPBody bounds one OTLP/HTTP export request.
const MaxOTLPBody = 8 << 20

// OTLPHandler receives traces by OTLP over HTTP (POST OTLPPath, protobuf
// or JSON encoding, optionally gzip-compressed) from services in any
// language instrumented with plain OpenTelemetry, and forwards their spans
// over conn on Subject, where the traces collector (package tracestore)
// stores them beside Switchboard's own: they show in `switchboard trace`
// and the dashboard's trace views. It answers 200 with an empty
// ExportTraceServiceResponse once the spans went out, 400 for a malformed
// request, 413 for one over MaxOTLPBody, 415 for another encoding and 503
// when the bus did not take the spans.
func OTLPHandler(conn *bus.Conn) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "OTLP/HTTP takes POST", http.StatusMethodNotAllowed)
			return
		}
		ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		var unmarshal func([]byte, proto.Message) error
		switch ct {
		case "application/x-protobuf", "application/protobuf":
			unmarshal = proto.Unmarshal
		case "application/json":
			unmarshal = protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal
		default:
			http.Error(w, fmt.Sprintf("unsupported Content-Type %q: send application/x-protobuf or application/json", ct), http.StatusUnsupportedMediaType)
			return
		}
		body, err := readBody(r)
		if err != nil {
			status := http.StatusBadRequest
			if strings.Contains(err.Error(), "larger than") {
				status = http.StatusRequestEntityTooLarge
			}
			http.Error(w, err.Error(), status)
			return
		}
		var req coltracepb.ExportTraceServiceRequest
		if err := unmarshal(body, &req); err != nil {
			http.Error(w, "malformed OTLP trace request: "+err.Error(), http.StatusBadRequest)
			return
		}
		spans := FromOTLP(&req)
		batches, err := EncodeBatches(spans, maxBatchMsgLen)
		if err == nil {
			for _, b := range batches {
				if err = conn.Send(r.Context(), &bus.Message{Subject: Subject, Header: bus.Header{"Content-Type": "application/json"}, Body: b}); err != nil {
					break
				}
			}
		}
		if err != nil {
			http.Error(w, "spans not forwarded: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		rep, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		if ct == "application/json" {
			rep = []byte("{}")
		}
		w.Header().Set("Content-Type", ct)
		_, _ = w.Write(rep)
	})
}

func readBody(r *http.Request) ([]byte, error) {
	var src io.Reader = http.MaxBytesReader(nil, r.Body, MaxOTLPBody)
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(src)
		if err != nil {
			return nil, fmt.Errorf("malformed gzip body: %w", err)
		}
		defer zr.Close()
		src = io.LimitReader(zr, MaxOTLPBody+1)
	}
	b, err := io.ReadAll(src)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, fmt.Errorf("request body larger than %d bytes", MaxOTLPBody)
		}
		return nil, fmt.Errorf("read request body: %w", err)
	}
	if len(b) > MaxOTLPBody {
		return nil, fmt.Errorf("request body larger than %d bytes once decompressed", MaxOTLPBody)
	}
	return b, nil
}

// FromOTLP converts the spans of an OTLP export request to the bus form.
// Spans with malformed ids are left out; strings, attributes and links are
// cut to the limits that the collector enforces.
func FromOTLP(req *coltracepb.ExportTraceServiceRequest) []Span {
	var out []Span
	for _, rs := range req.GetResourceSpans() {
		res := attrMap(rs.GetResource().GetAttributes())
		service, instance := res["service.name"], res["service.instance.id"]
		if service == "" {
			service = "unknown_service"
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, sp := range ss.GetSpans() {
				s := Span{
					TraceID:  hex.EncodeToString(sp.GetTraceId()),
					SpanID:   hex.EncodeToString(sp.GetSpanId()),
					Name:     clip(sp.GetName(), MaxNameLen),
					Kind:     otlpKind(sp.GetKind()),
					Service:  clip(service, MaxNameLen),
					Instance: clip(instance, MaxNameLen),
					StartNS:  int64(sp.GetStartTimeUnixNano()),
				}
				if len(sp.GetParentSpanId()) > 0 {
					s.ParentID = hex.EncodeToString(sp.GetParentSpanId())
				}
				if end := int64(sp.GetEndTimeUnixNano()); end > s.StartNS {
					s.DurationNS = end - s.StartNS
				}
				if !ValidTraceID(s.TraceID) || !validSpanID(s.SpanID) || s.ParentID != "" && !validSpanID(s.ParentID) {
					continue
				}
				if st := sp.GetStatus(); st.GetCode() == tracepb.Status_STATUS_CODE_ERROR {
					s.Error = clip(st.GetMessage(), MaxErrorLen)
					if s.Error == "" {
						s.Error = "error"
					}
					s.Code = "Unknown"
				}
				if attrs := sp.GetAttributes(); len(attrs) > 0 {
					s.Attrs = make(map[string]string, min(len(attrs), MaxAttrs))
					for k, v := range attrMap(attrs) {
						if len(s.Attrs) == MaxAttrs {
							break
						}
						s.Attrs[clip(k, MaxAttrKeyLen)] = clip(v, MaxAttrValLen)
					}
				}
				for _, l := range sp.GetLinks() {
					if len(s.Links) == MaxLinks {
						break
					}
					s.Links = append(s.Links, Link{TraceID: hex.EncodeToString(l.GetTraceId()), SpanID: hex.EncodeToString(l.GetSpanId())})
				}
				out = append(out, s)
			}
		}
	}
	return out
}

func otlpKind(k tracepb.Span_SpanKind) string {
	switch k {
	case tracepb.Span_SPAN_KIND_SERVER:
		return "server"
	case tracepb.Span_SPAN_KIND_CLIENT:
		return "client"
	case tracepb.Span_SPAN_KIND_PRODUCER:
		return "producer"
	case tracepb.Span_SPAN_KIND_CONSUMER:
		return "consumer"
	}
	return "internal"
}

func attrMap(kvs []*commonpb.KeyValue) map[string]string {
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		m[kv.GetKey()] = anyString(kv.GetValue())
	}
	return m
}

func anyString(v *commonpb.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_BoolValue:
		return strconv.FormatBool(x.BoolValue)
	case *commonpb.AnyValue_IntValue:
		return strconv.FormatInt(x.IntValue, 10)
	case *commonpb.AnyValue_DoubleValue:
		return strconv.FormatFloat(x.DoubleValue, 'g', -1, 64)
	case *commonpb.AnyValue_BytesValue:
		return hex.EncodeToString(x.BytesValue)
	case nil:
		return ""
	}
	b, _ := protojson.Marshal(v)
	return string(b)
}
