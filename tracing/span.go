package tracing

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/switchboard-dev/switchboard/bus"
)

// Subject is where finished spans travel over the bus, as a Batch in JSON
// (fire-and-forget: a collector that is not listening misses them).
const Subject = "sb.trace.spans"

// Limits on what one span carries over the bus. Decode enforces them too,
// since a collector must not trust what arrives.
const (
	MaxNameLen     = 256  // span name, service, instance
	MaxAttrs       = 32   // attributes per span
	MaxAttrKeyLen  = 128  // attribute key
	MaxAttrValLen  = 512  // attribute value
	MaxErrorLen    = 1024 // status message
	MaxLinks       = 8    // links per span
	MaxBatchSpans  = 4096 // spans per message
	maxBatchMsgLen = 512 << 10
)

// Span is one finished span in the compact JSON form that goes over the bus
// and that `switchboard trace -o json` prints (see docs/protocol.md,
// "Traces"). IDs are lowercase hex; times are Unix nanoseconds.
type Span struct {
	TraceID    string            `json:"trace_id"`
	SpanID     string            `json:"span_id"`
	ParentID   string            `json:"parent_id,omitempty"`
	Name       string            `json:"name"`
	Kind       string            `json:"kind"` // server, client, producer, consumer, internal
	Service    string            `json:"service"`
	Instance   string            `json:"instance,omitempty"`
	StartNS    int64             `json:"start_ns"`
	DurationNS int64             `json:"duration_ns"`
	Error      string            `json:"error,omitempty"` // status message when the span failed
	Code       string            `json:"code,omitempty"`  // Switchboard error code, "" or "OK" on success
	Attrs      map[string]string `json:"attrs,omitempty"`
	Links      []Link            `json:"links,omitempty"`
}

// Link points from a span to another span, possibly in another trace.
type Link struct {
	TraceID string `json:"trace_id"`
	SpanID  string `json:"span_id"`
}

// Batch is the body of one message on Subject.
type Batch struct {
	Spans []Span `json:"spans"`
}

// Failed reports whether the span ended in error.
func (s *Span) Failed() bool { return s.Error != "" || s.Code != "" && s.Code != "OK" }

// Endpoint is what `switchboard trace --last` matches a span by:
// "service.endpoint" for a SERVER span, "service.topic" for a CONSUMER span,
// "" for other spans.
func (s *Span) Endpoint() string {
	switch s.Kind {
	case "server":
		if svc, m := s.Attrs[string(keyRPCService)], s.Attrs[string(keyRPCMethod)]; svc != "" && m != "" {
			return svc + "." + m
		}
	case "consumer":
		if t := s.Attrs[string(keyMsgDestination)]; t != "" && s.Service != "" {
			return s.Service + "." + t
		}
	}
	return ""
}

// FromOTel converts a finished OpenTelemetry span to the compact form,
// truncating what exceeds the limits above.
func FromOTel(s sdktrace.ReadOnlySpan) Span { return fromFinished(s) }

func fromFinished(s finished) Span {
	sc := s.SpanContext()
	out := Span{
		TraceID:    sc.TraceID().String(),
		SpanID:     sc.SpanID().String(),
		Name:       clip(s.Name(), MaxNameLen),
		Kind:       kindName(s.SpanKind()),
		StartNS:    s.StartTime().UnixNano(),
		DurationNS: s.EndTime().Sub(s.StartTime()).Nanoseconds(),
	}
	if p := s.Parent(); p.IsValid() {
		out.ParentID = p.SpanID().String()
	}
	if r := s.Resource(); r != nil {
		if v, ok := r.Set().Value(keyServiceName); ok {
			out.Service = clip(v.Emit(), MaxNameLen)
		}
		if v, ok := r.Set().Value(keyServiceInstance); ok {
			out.Instance = clip(v.Emit(), MaxNameLen)
		}
	}
	if st := s.Status(); st.Code == codes.Error {
		out.Error = clip(st.Description, MaxErrorLen)
		if out.Error == "" {
			out.Error = "error"
		}
	}
	attrs := s.Attributes()
	if len(attrs) > 0 {
		out.Attrs = make(map[string]string, min(len(attrs), MaxAttrs))
		for i, kv := range attrs {
			if i == MaxAttrs {
				break
			}
			out.Attrs[clip(string(kv.Key), MaxAttrKeyLen)] = clip(kv.Value.Emit(), MaxAttrValLen)
		}
		out.Code = out.Attrs[string(keyRPCStatus)]
		if out.Code == "" {
			out.Code = out.Attrs[string(keyErrorType)]
		}
	}
	for i, l := range s.Links() {
		if i == MaxLinks {
			break
		}
		out.Links = append(out.Links, Link{TraceID: l.SpanContext.TraceID().String(), SpanID: l.SpanContext.SpanID().String()})
	}
	return out
}

func kindName(k trace.SpanKind) string {
	switch k {
	case trace.SpanKindServer:
		return "server"
	case trace.SpanKindClient:
		return "client"
	case trace.SpanKindProducer:
		return "producer"
	case trace.SpanKindConsumer:
		return "consumer"
	}
	return "internal"
}

// EncodeBatches encodes spans as Batch bodies of at most maxLen bytes each
// (a span larger than that on its own gets a message of its own).
func EncodeBatches(spans []Span, maxLen int) ([][]byte, error) {
	var (
		out  [][]byte
		cur  []byte
		n    int
		comm = []byte(`{"spans":[`)
	)
	flush := func() {
		if n > 0 {
			out = append(out, append(cur, "]}"...))
		}
		cur, n = nil, 0
	}
	for i := range spans {
		b, err := json.Marshal(&spans[i])
		if err != nil {
			return nil, fmt.Errorf("tracing: encode span: %w", err)
		}
		if n > 0 && (len(cur)+len(b)+3 > maxLen || n == MaxBatchSpans) {
			flush()
		}
		if n == 0 {
			cur = append(make([]byte, 0, min(maxLen, 64<<10)), comm...)
		} else {
			cur = append(cur, ',')
		}
		cur = append(cur, b...)
		n++
	}
	flush()
	return out, nil
}

// DecodeBatch reads a Batch body. Spans with a malformed trace or span id
// are dropped (dropped counts them); strings beyond the limits are cut, and
// attributes and links beyond them left out. Malformed JSON, or more than
// MaxBatchSpans spans, is an InvalidArgument error.
func DecodeBatch(b []byte) (spans []Span, dropped int, err error) {
	var batch Batch
	if err := json.Unmarshal(b, &batch); err != nil {
		return nil, 0, bus.Errorf(bus.InvalidArgument, "tracing: malformed span batch: %v", err)
	}
	if len(batch.Spans) > MaxBatchSpans {
		return nil, 0, bus.Errorf(bus.InvalidArgument, "tracing: span batch of %d spans, the limit is %d", len(batch.Spans), MaxBatchSpans)
	}
	spans = batch.Spans[:0]
	for _, s := range batch.Spans {
		if !ValidTraceID(s.TraceID) || !validSpanID(s.SpanID) || s.ParentID != "" && !validSpanID(s.ParentID) {
			dropped++
			continue
		}
		s.Name, s.Kind = clip(s.Name, MaxNameLen), clip(s.Kind, 16)
		s.Service, s.Instance = clip(s.Service, MaxNameLen), clip(s.Instance, MaxNameLen)
		s.Error, s.Code = clip(s.Error, MaxErrorLen), clip(s.Code, 64)
		if s.DurationNS < 0 {
			s.DurationNS = 0
		}
		if len(s.Attrs) > MaxAttrs {
			keys := make([]string, 0, len(s.Attrs))
			for k := range s.Attrs {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys[MaxAttrs:] {
				delete(s.Attrs, k)
			}
		}
		for k, v := range s.Attrs {
			if ck := clip(k, MaxAttrKeyLen); ck != k || len(v) > MaxAttrValLen {
				delete(s.Attrs, k)
				s.Attrs[ck] = clip(v, MaxAttrValLen)
			}
		}
		links := s.Links[:0]
		for _, l := range s.Links {
			if len(links) < MaxLinks && ValidTraceID(l.TraceID) && validSpanID(l.SpanID) {
				links = append(links, l)
			}
		}
		s.Links = links
		if len(s.Links) == 0 {
			s.Links = nil
		}
		spans = append(spans, s)
	}
	return spans, dropped, nil
}

// ValidTraceID reports whether s is a W3C trace id: 32 lowercase hex
// digits, not all zero.
func ValidTraceID(s string) bool { return validHexID(s, 16) }

func validSpanID(s string) bool { return validHexID(s, 8) }

func validHexID(s string, n int) bool {
	if len(s) != 2*n {
		return false
	}
	var b [16]byte
	if _, err := hex.Decode(b[:n], []byte(s)); err != nil {
		return false
	}
	for _, c := range s {
		if c >= 'A' && c <= 'F' {
			return false
		}
	}
	for _, x := range b[:n] {
		if x != 0 {
			return true
		}
	}
	return false
}

// clip cuts s to at most n bytes without splitting a UTF-8 sequence.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// Attribute keys, from the OpenTelemetry semantic conventions.
var (
	keyServiceName     = attribute.Key("service.name")
	keyServiceVersion  = attribute.Key("service.version")
	keyServiceInstance = attribute.Key("service.instance.id")

	keyRPCSystem  = attribute.Key("rpc.system")
	keyRPCService = attribute.Key("rpc.service")
	keyRPCMethod  = attribute.Key("rpc.method")
	keyRPCStatus  = attribute.Key("rpc.response.status_code")
	keyErrorType  = attribute.Key("error.type")
	keyCaller     = attribute.Key("switchboard.caller")

	keyMsgSystem      = attribute.Key("messaging.system")
	keyMsgDestination = attribute.Key("messaging.destination.name")
	keyMsgOpType      = attribute.Key("messaging.operation.type")
	keyMsgOpName      = attribute.Key("messaging.operation.name")
	keyMsgID          = attribute.Key("messaging.message.id")
	keyMsgGroup       = attribute.Key("messaging.consumer.group.name")
	keyMsgAttempt     = attribute.Key("messaging.message.delivery_count")
)

// System is the value of rpc.system and messaging.system.
const System = "switchboard"
