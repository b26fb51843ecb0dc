package wire_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/apipb"
	"google.golang.org/protobuf/types/known/sourcecontextpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/typepb"

	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/wire"
)

type person struct {
	Name    string            `json:"name"`
	Age     int               `json:"age"`
	Tags    []string          `json:"tags,omitempty"`
	Born    time.Time         `json:"born"`
	Labels  map[string]string `json:"labels,omitempty"`
	Manager *person           `json:"manager,omitempty"`
}

func sampleAPI() *apipb.Api {
	return &apipb.Api{
		Name:    "switchboard.examples.trips.v1.Trips",
		Version: "v1",
		Methods: []*apipb.Method{
			{Name: "RequestTrip", RequestTypeUrl: "type.googleapis.com/RequestTripRequest", ResponseStreaming: true},
			{Name: "CancelTrip", Syntax: typepb.Syntax_SYNTAX_PROTO3},
		},
		SourceContext: &sourcecontextpb.SourceContext{FileName: "trips.proto"},
		Syntax:        typepb.Syntax_SYNTAX_PROTO3,
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	born := time.Date(1990, 4, 1, 12, 30, 0, 0, time.UTC)
	tests := []struct {
		name string
		ct   string
		in   any
		out  func() any // a fresh pointer to decode into
	}{
		{"a struct round-trips through JSON", wire.ContentTypeJSON,
			&person{Name: "Ada", Age: 36, Tags: []string{"a", "b"}, Born: born, Manager: &person{Name: "Bob"}},
			func() any { return new(person) }},
		{"a struct round-trips through JSON with a charset parameter", "Application/JSON; charset=utf-8",
			&person{Name: "Ada", Labels: map[string]string{"k": "v"}}, func() any { return new(person) }},
		{"a struct round-trips through an empty content type as JSON", "",
			&person{Name: "Ada"}, func() any { return new(person) }},
		{"a timestamp round-trips through protobuf", wire.ContentTypeProto,
			timestamppb.New(born), func() any { return new(timestamppb.Timestamp) }},
		{"a timestamp round-trips through protojson", wire.ContentTypeJSON,
			timestamppb.New(born), func() any { return new(timestamppb.Timestamp) }},
		{"an API description round-trips through protobuf", wire.ContentTypeProto,
			sampleAPI(), func() any { return new(apipb.Api) }},
		{"an API description round-trips through protobuf spelled x-protobuf", "application/x-protobuf",
			sampleAPI(), func() any { return new(apipb.Api) }},
		{"an API description round-trips through protojson", wire.ContentTypeJSON,
			sampleAPI(), func() any { return new(apipb.Api) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, err := wire.Marshal(tt.in, tt.ct)
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			out := tt.out()
			if err := wire.Unmarshal(data, tt.ct, out); err != nil {
				t.Fatalf("Unmarshal(%s): %v", data, err)
			}
			if m, ok := tt.in.(proto.Message); ok {
				if !proto.Equal(m, out.(proto.Message)) {
					t.Errorf("got %v, want %v", out, m)
				}
			} else if !reflect.DeepEqual(out, tt.in) {
				t.Errorf("got %+v, want %+v", out, tt.in)
			}
		})
	}
}

func TestMarshalProtoAsJSONUsesProtojson(t *testing.T) {
	data, err := wire.Marshal(sampleAPI(), wire.ContentTypeJSON)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"requestTypeUrl"`, `"SYNTAX_PROTO3"`, `"sourceContext"`} {
		if !strings.Contains(strings.ReplaceAll(string(data), " ", ""), want) {
			t.Errorf("JSON %s lacks %s", data, want)
		}
	}
}

func TestUnmarshalAcceptsWhatOlderAndNewerPeersSend(t *testing.T) {
	t.Run("unknown JSON fields are ignored for a struct", func(t *testing.T) {
		var p person
		if err := wire.Unmarshal([]byte(`{"name":"Ada","shoe_size":42}`), wire.ContentTypeJSON, &p); err != nil || p.Name != "Ada" {
			t.Errorf("Unmarshal = %v, %+v", err, p)
		}
	})
	t.Run("unknown JSON fields are ignored for a protobuf message", func(t *testing.T) {
		var a apipb.Api
		if err := wire.Unmarshal([]byte(`{"name":"x","shoeSize":42}`), wire.ContentTypeJSON, &a); err != nil || a.Name != "x" {
			t.Errorf("Unmarshal = %v, %v", err, &a)
		}
	})
	t.Run("an unknown enum name is ignored like an unknown field", func(t *testing.T) {
		var a apipb.Api
		if err := wire.Unmarshal([]byte(`{"name":"x","syntax":"SYNTAX_COBOL"}`), wire.ContentTypeJSON, &a); err != nil || a.Name != "x" || a.Syntax != typepb.Syntax_SYNTAX_PROTO2 {
			t.Errorf("Unmarshal = %v, %v", err, &a)
		}
	})
	t.Run("protojson accepts proto field names too", func(t *testing.T) {
		var a apipb.Api
		if err := wire.Unmarshal([]byte(`{"source_context":{"file_name":"f"}}`), wire.ContentTypeJSON, &a); err != nil || a.GetSourceContext().GetFileName() != "f" {
			t.Errorf("Unmarshal = %v, %v", err, &a)
		}
	})
	t.Run("an empty body is the zero value", func(t *testing.T) {
		var p person
		var a apipb.Api
		if err := wire.Unmarshal(nil, wire.ContentTypeJSON, &p); err != nil {
			t.Errorf("struct: %v", err)
		}
		if err := wire.Unmarshal([]byte("  "), wire.ContentTypeJSON, &a); err != nil {
			t.Errorf("proto JSON: %v", err)
		}
		if err := wire.Unmarshal(nil, wire.ContentTypeProto, &a); err != nil {
			t.Errorf("proto: %v", err)
		}
	})
}

func TestUnmarshalErrors(t *testing.T) {
	tests := []struct {
		name        string
		data        string
		ct          string
		into        any
		wantInMsg   []string
		wantDetails map[string]string
	}{
		{"malformed JSON names the byte offset", `{"name": }`, wire.ContentTypeJSON, new(person),
			[]string{"malformed JSON", "byte offset 10"}, map[string]string{"offset": "10"}},
		{"truncated JSON names the byte offset", `{"name": "Ada"`, wire.ContentTypeJSON, new(person),
			[]string{"byte offset"}, nil},
		{"a wrongly typed field is named", `{"age":"x"}`, wire.ContentTypeJSON, &struct {
			Age int `json:"age"`
		}{}, []string{`field "age"`, "string", "int"}, map[string]string{"field": "age"}},
		{"a wrongly typed nested field is named by its path", `{"manager":{"age":true}}`, wire.ContentTypeJSON, new(person),
			[]string{`"manager.age"`}, map[string]string{"field": "manager.age"}},
		{"a wrongly typed top-level value says so", `[1]`, wire.ContentTypeJSON, new(person),
			[]string{"(top level)", "array"}, map[string]string{"field": "(top level)"}},
		{"a malformed time names the problem", `{"born":"yesterday"}`, wire.ContentTypeJSON, new(person),
			[]string{"yesterday"}, nil},
		{"malformed JSON for a protobuf message names the message", `{"name": 5}`, wire.ContentTypeJSON, new(apipb.Api),
			[]string{"google.protobuf.Api", "name"}, nil},
		{"malformed protobuf names the message", "\x0a\x05ab", wire.ContentTypeProto, new(apipb.Api),
			[]string{"malformed protobuf", "google.protobuf.Api"}, nil},
		{"protobuf into a type that is not a message is rejected", "\x0a\x01a", wire.ContentTypeProto, new(person),
			[]string{"not a protobuf message", wire.ContentTypeJSON}, nil},
		{"an unknown content type is rejected", `<a/>`, "application/xml", new(person),
			[]string{`"application/xml"`}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := wire.Unmarshal([]byte(tt.data), tt.ct, tt.into)
			var be *bus.Error
			if !errors.As(err, &be) || be.Code != bus.InvalidArgument {
				t.Fatalf("Unmarshal = %v, want an InvalidArgument *bus.Error", err)
			}
			for _, s := range tt.wantInMsg {
				if !strings.Contains(be.Message, s) {
					t.Errorf("message %q does not contain %q", be.Message, s)
				}
			}
			for k, v := range tt.wantDetails {
				if be.Details[k] != v {
					t.Errorf("detail %s = %q, want %q (all: %v)", k, be.Details[k], v, be.Details)
				}
			}
			if be.Unwrap() == nil && tt.ct == wire.ContentTypeJSON {
				t.Errorf("the decoder's error is lost as cause")
			}
		})
	}
}

func TestMarshalErrors(t *testing.T) {
	t.Run("a type that is not a message cannot be sent as protobuf", func(t *testing.T) {
		_, err := wire.Marshal(person{}, wire.ContentTypeProto)
		if bus.ErrorCode(err) != bus.InvalidArgument || !strings.Contains(err.Error(), "not a protobuf message") {
			t.Errorf("Marshal = %v", err)
		}
	})
	t.Run("an unknown content type is rejected", func(t *testing.T) {
		_, err := wire.Marshal(person{}, "text/csv")
		if bus.ErrorCode(err) != bus.InvalidArgument || !strings.Contains(err.Error(), `"text/csv"`) {
			t.Errorf("Marshal = %v", err)
		}
	})
}

func TestDefaultContentType(t *testing.T) {
	if got := wire.DefaultContentType(&apipb.Api{}); got != wire.ContentTypeProto {
		t.Errorf("DefaultContentType(message) = %q", got)
	}
	if got := wire.DefaultContentType(&person{}); got != wire.ContentTypeJSON {
		t.Errorf("DefaultContentType(struct) = %q", got)
	}
}
