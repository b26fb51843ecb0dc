package wire_test

// Fuzz tests for every decoder that reads bytes or headers from the bus.
// Whatever a peer sends, a decoder must not panic, and a failure must be an
// InvalidArgument *bus.Error, so the caller is told its input was bad rather
// than that the service broke. Seeds are below and in testdata/fuzz.

import (
	"bytes"
	"encoding/json"
	"maps"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/apipb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/typepb"

	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/wire"
)

// requireInvalidArgument fails unless err is nil or an InvalidArgument *bus.Error.
func requireInvalidArgument(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if _, ok := err.(*bus.Error); !ok || bus.ErrorCode(err) != bus.InvalidArgument {
		t.Fatalf("error %v (%T, code %v), want an InvalidArgument *bus.Error", err, err, bus.ErrorCode(err))
	}
}

func FuzzDecodeEnvelope(f *testing.F) {
	f.Add("1500", "pricing", "quote", "application/json", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	f.Add("0", "", "", "", "")
	f.Add("", "s", "e", "application/protobuf; charset=x", "")
	f.Add("-1", "s", "e", "", "")
	f.Add("9223372036854775807", "s", "e", "", "")
	f.Add("+5", "s", "e", "", "")
	f.Add("1e3", "s\r\n", "e", "", "")
	f.Fuzz(func(t *testing.T, timeout, service, endpoint, contentType, traceparent string) {
		h := bus.Header{
			wire.HeaderService: service, wire.HeaderEndpoint: endpoint,
			wire.HeaderContentType: contentType, wire.HeaderTraceParent: traceparent,
		}
		if timeout != "" {
			h[wire.HeaderTimeout] = timeout
		}
		start := time.Now()
		env, err := wire.DecodeEnvelope(h)
		requireInvalidArgument(t, err)
		if err != nil {
			if timeout == "" {
				t.Fatalf("only %s can be malformed, got %v", wire.HeaderTimeout, err)
			}
			return
		}
		if timeout != "" && (env.Deadline.IsZero() || env.Deadline.Before(start)) {
			t.Fatalf("%s=%q gave deadline %v, want one no earlier than %v", wire.HeaderTimeout, timeout, env.Deadline, start)
		}
		again := bus.Header{}
		env.Encode(again)
		env2, err := wire.DecodeEnvelope(again)
		if err != nil {
			t.Fatalf("re-encoded envelope does not decode: %v (headers %q)", err, again)
		}
		env.Deadline, env2.Deadline = time.Time{}, time.Time{}
		env.Service, env.Endpoint = "", "" // the subject carries them, not the headers
		if env != env2 {
			t.Fatalf("re-encoded envelope %+v, want %+v", env2, env)
		}
	})
}

func FuzzDecodeEvent(f *testing.F) {
	f.Add("ev-1", "/switchboard/trips", "1.0", "trip.requested", "trip-42", "2025-03-04T05:06:07.89Z", "application/json")
	f.Add("ev-1", "s", "1.0", "t", "", "", "")
	f.Add("", "s", "1.0", "t", "", "", "")
	f.Add("id", "s", "0.3", "t", "", "", "")
	f.Add("id", "s", "1.0", "t", "", "2025-03-04T05:06:07+23:59", "APPLICATION/PROTOBUF")
	f.Add("id", "s", "1.0", "t", "", "0000-01-01T00:00:00+01:00", "")
	f.Add("id", "s", "1.0", "t", "", "not a time", "")
	f.Fuzz(func(t *testing.T, id, source, specversion, typ, subject, tm, contentType string) {
		h := bus.Header{}
		for k, v := range map[string]string{
			wire.HeaderCEID: id, wire.HeaderCESource: source, wire.HeaderCESpecVersion: specversion,
			wire.HeaderCEType: typ, wire.HeaderCESubject: subject, wire.HeaderCETime: tm,
			wire.HeaderContentType: contentType,
		} {
			if v != "" {
				h[k] = v
			}
		}
		ev, err := wire.DecodeEvent(h)
		requireInvalidArgument(t, err)
		if err != nil {
			return
		}
		if ev.ID == "" || ev.Source == "" || ev.Type == "" {
			t.Fatalf("event %+v decoded without a required attribute", ev)
		}
		again := bus.Header{}
		ev.Encode(again)
		ev2, err := wire.DecodeEvent(again)
		if err != nil {
			t.Fatalf("re-encoded event does not decode: %v (headers %q)", err, again)
		}
		if !ev2.Time.Equal(ev.Time) {
			t.Fatalf("re-encoded time %v, want %v", ev2.Time, ev.Time)
		}
		ev.Time, ev2.Time = time.Time{}, time.Time{}
		if ev != ev2 {
			t.Fatalf("re-encoded event %+v, want %+v", ev2, ev)
		}
	})
}

func FuzzDecodeError(f *testing.F) {
	f.Add("NotFound", `trip "t-1" not found`, `{"trip_id":"t-1"}`)
	f.Add("", "stray message", "")
	f.Add("OK", "", "")
	f.Add("Exploded", "msg", "[1,2")
	f.Add("internal", "a\r\nb", "null")
	f.Add("Unavailable", "", `{"retry_after":"2s","x":"\u00ff"}`)
	f.Add("Aborted", "", "{\"k\":\"\xff\"}")
	f.Fuzz(func(t *testing.T, code, msg, details string) {
		h := bus.Header{wire.HeaderErrorCode: code, wire.HeaderErrorMsg: msg, wire.HeaderErrorDetail: details}
		err := wire.DecodeError(h)
		if code == "" {
			if err != nil {
				t.Fatalf("DecodeError without a code = %v, want nil", err)
			}
			return
		}
		be, ok := err.(*bus.Error)
		if !ok {
			t.Fatalf("DecodeError = %#v, want a *bus.Error", err)
		}
		if be.Code == bus.OK {
			t.Fatalf("an error reply decoded as OK")
		}
		// Relaying the error (encode, decode) keeps what it says, with
		// the message on one line; after one relay nothing changes.
		relay := func(e *bus.Error) *bus.Error {
			h := bus.Header{}
			wire.EncodeError(h, e)
			out, ok := wire.DecodeError(h).(*bus.Error)
			if !ok {
				t.Fatalf("relayed error did not decode: headers %q", h)
			}
			return out
		}
		once := relay(be)
		oneLine := strings.NewReplacer("\r", " ", "\n", " ").Replace(be.Message)
		if once.Code != be.Code || once.Message != oneLine {
			t.Fatalf("relayed error = %v %q, want %v %q", once.Code, once.Message, be.Code, oneLine)
		}
		twice := relay(once)
		if twice.Code != once.Code || twice.Message != once.Message || !maps.Equal(twice.Details, once.Details) {
			t.Fatalf("second relay changed the error: %+v, then %+v", once, twice)
		}
	})
}

// fuzzBody is a struct with one field of each kind a JSON body commonly has.
type fuzzBody struct {
	Name    string             `json:"name"`
	Age     int                `json:"age"`
	Small   int8               `json:"small"`
	Count   uint64             `json:"count,string"`
	Ratio   float64            `json:"ratio"`
	OK      bool               `json:"ok"`
	Tags    []string           `json:"tags"`
	Pair    [2]int             `json:"pair"`
	Labels  map[string]int     `json:"labels"`
	ByID    map[int]string     `json:"by_id"`
	When    time.Time          `json:"when"`
	Raw     json.RawMessage    `json:"raw"`
	Any     any                `json:"any"`
	Next    *fuzzBody          `json:"next"`
	Bytes   []byte             `json:"bytes"`
	Entries []map[string]*bool `json:"entries"`
}

var jsonSeeds = []string{
	`{"name":"Ada","age":36,"small":-5,"count":"18446744073709551615","ratio":1.5e300,"ok":true}`,
	`{"tags":["a"],"pair":[1,2],"labels":{"x":1},"by_id":{"7":"seven"},"when":"2025-01-02T03:04:05Z"}`,
	`{"raw":{"x":[1,{}]},"any":[null,1,"s"],"next":{"next":{"name":"deep"}},"bytes":"AAEC","entries":[{"a":true,"b":null}]}`,
	`{"name": }`, `{"age":"x"}`, `{"small":300}`, `{"by_id":{"x":"y"}}`, `{"count":"-1"}`, `[1]`, `null`, ``, `"`,
	`{"name":"Api","methods":[{"name":"M","requestStreaming":true,"syntax":"SYNTAX_PROTO3"}],"sourceContext":{"fileName":"f"}}`,
	`{"options":[{"name":"o","value":{"@type":"type.googleapis.com/google.protobuf.Duration","value":"1s"}}]}`,
	`{"options":[{"value":{"@type":"type.googleapis.com/nope.Missing"}}]}`,
	`{"fields":[{"kind":"TYPE_INT64","number":3,"cardinality":7}]}`,
	`{"orderId":"o","totalCents":"-1","sequence":1e3,"weight":"-Infinity","blob":"_-8","counts":{"a":"1"},"placedAt":"1970-01-01T00:00:00Z","ttl":"315576000001s","limit":null,"byId":{"-3":{"name":"x"}},"anything":{"a":[]}}`,
	`{"a":1,"a":2}`, "{\"name\":\"\xff\"}", `{"name":"\ud800"}`,
}

// fuzzProtoTargets returns fresh messages to decode fuzz input into: generated
// messages with nested, repeated, enum, Any and well-known fields, and a
// dynamic message with maps, 64-bit integers and wrappers.
func fuzzProtoTargets(t testing.TB) func() []proto.Message {
	order := orderDescriptor(t)
	return func() []proto.Message {
		return []proto.Message{
			&apipb.Api{}, &typepb.Type{}, &descriptorpb.FileDescriptorProto{},
			&structpb.Struct{}, &timestamppb.Timestamp{}, dynamicpb.NewMessage(order),
		}
	}
}

func FuzzUnmarshalJSON(f *testing.F) {
	for _, s := range jsonSeeds {
		f.Add([]byte(s))
	}
	targets := fuzzProtoTargets(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		var body fuzzBody
		requireInvalidArgument(t, wire.Unmarshal(data, wire.ContentTypeJSON, &body))
		var anything any
		requireInvalidArgument(t, wire.Unmarshal(data, wire.ContentTypeJSON, &anything))

		for _, m := range targets() {
			err := wire.Unmarshal(data, wire.ContentTypeJSON, m)
			requireInvalidArgument(t, err)
			if err != nil {
				continue
			}
			// What a service accepted it must be able to send back.
			out, err := wire.Marshal(m, wire.ContentTypeJSON)
			if err != nil {
				t.Fatalf("%T decoded from %q does not encode: %v", m, data, err)
			}
			m2 := m.ProtoReflect().New().Interface()
			if err := wire.Unmarshal(out, wire.ContentTypeJSON, m2); err != nil {
				t.Fatalf("%T re-encoded as %s does not decode: %v", m, out, err)
			}
			if !proto.Equal(m, m2) && !hasNaN(out) {
				t.Fatalf("%T changed in a JSON round trip: %v, then %v", m, m, m2)
			}
		}
	})
}

func FuzzUnmarshalProto(f *testing.F) {
	targets := fuzzProtoTargets(f)
	for _, s := range jsonSeeds {
		for _, m := range targets() {
			if protojson.Unmarshal([]byte(s), m) == nil {
				if b, err := proto.Marshal(m); err == nil {
					f.Add(b)
				}
			}
		}
	}
	f.Add([]byte("\x0a\x05ab"))                // truncated string
	f.Add([]byte("\x0b\x0c"))                  // group start and end
	f.Add([]byte("\xff\xff\xff\xff\xff\xff"))  // overlong varint tag
	f.Add([]byte("\x12\x02\x0a\xff"))          // nested length past the end
	f.Add([]byte("\x0a\x02\xc3\x28"))          // invalid UTF-8 in a proto3 string
	f.Add([]byte("\x42\x06\x0a\x01a\x10\x01")) // a map entry
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, m := range targets() {
			err := wire.Unmarshal(data, wire.ContentTypeProto, m)
			requireInvalidArgument(t, err)
			if err != nil {
				continue
			}
			opts := proto.MarshalOptions{Deterministic: true}
			b1, err := opts.Marshal(m)
			if err != nil {
				t.Fatalf("%T decoded from %q does not encode: %v", m, data, err)
			}
			m2 := m.ProtoReflect().New().Interface()
			if err := wire.Unmarshal(b1, wire.ContentTypeProto, m2); err != nil {
				t.Fatalf("%T re-encoded as %q does not decode: %v", m, b1, err)
			}
			if b2, _ := opts.Marshal(m2); !bytes.Equal(b1, b2) {
				t.Fatalf("%T changed in a protobuf round trip: %q, then %q", m, b1, b2)
			}
		}
	})
}

// hasNaN reports whether a protojson body holds a NaN, which no message
// equals (not even itself).
func hasNaN(body []byte) bool { return bytes.Contains(body, []byte(`"NaN"`)) }
