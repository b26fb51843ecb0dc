package wire_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/apipb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/typepb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/switchboard-dev/switchboard/wire"
)

type quoteRequest struct {
	Item     string            `json:"item"`
	Quantity int               `json:"quantity,omitempty"`
	Express  bool              `json:"express"`
	At       time.Time         `json:"at"`
	Address  address           `json:"address"`
	Lines    []line            `json:"lines,omitempty"`
	Extra    map[string]string `json:"extra,omitempty"`
	Secret   string            `json:"-"`
	internal int
}

type address struct {
	City string `json:"city"`
}

type line struct {
	SKU   string  `json:"sku"`
	Price float64 `json:"price"`
}

type treeNode struct {
	Name     string      `json:"name"`
	Children []*treeNode `json:"children,omitempty"`
}

type withFunc struct {
	Callback func()
}

// schemaOf returns Schema(v) decoded, failing the test if it is not JSON.
func schemaOf(t *testing.T, v any) map[string]any {
	t.Helper()
	raw := wire.Schema(v)
	var s map[string]any
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatalf("Schema(%T) is not a JSON object: %v\n%s", v, err, raw)
	}
	if s["$schema"] != "https://json-schema.org/draft/2020-12/schema" {
		t.Errorf("Schema(%T) $schema = %v, want draft 2020-12", v, s["$schema"])
	}
	return s
}

// at walks a decoded schema along object keys and array indexes, failing
// the test if one is missing.
func at(t *testing.T, s any, path ...string) any {
	t.Helper()
	for i, k := range path {
		ok := false
		switch node := s.(type) {
		case map[string]any:
			s, ok = node[k]
		case []any:
			if n, err := strconv.Atoi(k); err == nil && n >= 0 && n < len(node) {
				s, ok = node[n], true
			}
		}
		if !ok {
			t.Fatalf("schema has no %s", strings.Join(path[:i+1], "/"))
		}
	}
	return s
}

func TestSchemaOfStruct(t *testing.T) {
	s := schemaOf(t, &quoteRequest{})
	tests := []struct {
		name string
		path []string
		want any
	}{
		{"the root is an object", []string{"type"}, "object"},
		{"fields are named by their json tags", []string{"properties", "item", "type"}, "string"},
		{"ints are integers", []string{"properties", "quantity", "type"}, "integer"},
		{"times are date-time strings", []string{"properties", "at", "format"}, "date-time"},
		{"nested structs are inline", []string{"properties", "address", "properties", "city", "type"}, "string"},
		{"slices of structs are arrays of inline objects", []string{"properties", "lines", "items", "properties", "price", "type"}, "number"},
		{"maps are objects of their values", []string{"properties", "extra", "additionalProperties", "type"}, "string"},
		{"fields without omitempty are required", []string{"required"}, []any{"item", "express", "at", "address"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := at(t, s, tt.path...); fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("%s = %v, want %v", strings.Join(tt.path, "/"), got, tt.want)
			}
		})
	}
	t.Run("fields json ignores are absent", func(t *testing.T) {
		props := at(t, s, "properties").(map[string]any)
		for _, name := range []string{"Secret", "-", "internal"} {
			if _, ok := props[name]; ok {
				t.Errorf("property %q should not be in the schema", name)
			}
		}
	})
	t.Run("the schema is self-contained without references", func(t *testing.T) {
		raw := string(wire.Schema(&quoteRequest{}))
		for _, s := range []string{`"$ref"`, `"$defs"`, `"$id"`} {
			if strings.Contains(raw, s) {
				t.Errorf("schema has %s: %s", s, raw)
			}
		}
	})
	t.Run("unknown properties are allowed, as Unmarshal ignores them", func(t *testing.T) {
		if strings.Contains(string(wire.Schema(&quoteRequest{})), `"additionalProperties":false`) {
			t.Errorf("schema forbids additional properties")
		}
	})
}

func TestSchemaOfRecursiveStructUsesDefinitions(t *testing.T) {
	s := schemaOf(t, treeNode{})
	if got := at(t, s, "$ref"); got != "#/$defs/treeNode" {
		t.Errorf("$ref = %v", got)
	}
	if got := at(t, s, "$defs", "treeNode", "properties", "children", "items", "$ref"); got != "#/$defs/treeNode" {
		t.Errorf("children items $ref = %v", got)
	}
}

func TestSchemaOfProtoMessage(t *testing.T) {
	tests := []struct {
		name string
		v    any
		path []string
		want any
	}{
		{"a message is an object", (*apipb.Api)(nil), []string{"type"}, "object"},
		{"fields have lowerCamelCase JSON names", &apipb.Api{}, []string{"properties", "sourceContext", "properties", "fileName", "type"}, "string"},
		{"repeated fields are arrays of inline messages", &apipb.Api{}, []string{"properties", "methods", "items", "properties", "requestTypeUrl", "type"}, "string"},
		{"enums are strings of value names", &apipb.Api{}, []string{"properties", "syntax", "enum"}, []any{"SYNTAX_PROTO2", "SYNTAX_PROTO3", "SYNTAX_EDITIONS"}},
		{"enum types inside repeated messages too", &typepb.Type{}, []string{"properties", "fields", "items", "properties", "kind", "type"}, "string"},
		{"int32 is an integer", &typepb.Type{}, []string{"properties", "fields", "items", "properties", "number", "type"}, "integer"},
		{"Any carries its @type", &apipb.Api{}, []string{"properties", "options", "items", "properties", "value", "required"}, []any{"@type"}},
		{"uint64 is a string", &descriptorpb.UninterpretedOption{}, []string{"properties", "positiveIntValue", "type"}, "string"},
		{"int64 is a string", &descriptorpb.UninterpretedOption{}, []string{"properties", "negativeIntValue", "format"}, "int64"},
		{"bytes are base64 strings", &descriptorpb.UninterpretedOption{}, []string{"properties", "stringValue", "contentEncoding"}, "base64"},
		{"a double may be a number or a non-finite string", &descriptorpb.UninterpretedOption{}, []string{"properties", "doubleValue", "anyOf", "1", "enum"}, []any{"NaN", "Infinity", "-Infinity"}},
		{"a message that contains itself refers to the root", &descriptorpb.DescriptorProto{}, []string{"properties", "nestedType", "items", "$ref"}, "#"},
		{"a timestamp is a date-time string", (*timestamppb.Timestamp)(nil), []string{"format"}, "date-time"},
		{"a duration is a string in seconds", &durationpb.Duration{}, []string{"pattern"}, `^-?[0-9]+(\.[0-9]{1,9})?s$`},
		{"a field mask is a string", &fieldmaskpb.FieldMask{}, []string{"type"}, "string"},
		{"an Int64Value wrapper is its scalar", &wrapperspb.Int64Value{}, []string{"type"}, "string"},
		{"a BoolValue wrapper is its scalar", &wrapperspb.BoolValue{}, []string{"type"}, "boolean"},
		{"a Struct is an object", &structpb.Struct{}, []string{"type"}, "object"},
		{"a ListValue is an array", &structpb.ListValue{}, []string{"type"}, "array"},
		{"Empty is an object", &emptypb.Empty{}, []string{"type"}, "object"},
		{"a pointer to a message pointer is still a message", new(*apipb.Api), []string{"properties", "version", "type"}, "string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := schemaOf(t, tt.v)
			if got := at(t, s, tt.path...); fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("%s = %v, want %v", strings.Join(tt.path, "/"), got, tt.want)
			}
		})
	}
}

// orderFile is a proto file written as text so the tests need no generated
// code: maps, 64-bit integers, wrappers, well-known types and a message
// (Category) that contains itself below the root.
const orderFile = `
name: "switchboard/test/v1/order.proto"
package: "switchboard.test.v1"
dependency: ["google/protobuf/timestamp.proto", "google/protobuf/duration.proto", "google/protobuf/wrappers.proto", "google/protobuf/struct.proto"]
syntax: "proto3"
message_type {
  name: "Order"
  field { name: "order_id" number: 1 label: LABEL_OPTIONAL type: TYPE_STRING }
  field { name: "total_cents" number: 2 label: LABEL_OPTIONAL type: TYPE_INT64 }
  field { name: "sequence" number: 3 label: LABEL_OPTIONAL type: TYPE_FIXED64 }
  field { name: "weight" number: 4 label: LABEL_OPTIONAL type: TYPE_FLOAT }
  field { name: "blob" number: 5 label: LABEL_OPTIONAL type: TYPE_BYTES }
  field { name: "status" number: 6 label: LABEL_OPTIONAL type: TYPE_ENUM type_name: ".switchboard.test.v1.Order.Status" }
  field { name: "tags" number: 7 label: LABEL_REPEATED type: TYPE_STRING }
  field { name: "counts" number: 8 label: LABEL_REPEATED type: TYPE_MESSAGE type_name: ".switchboard.test.v1.Order.CountsEntry" }
  field { name: "placed_at" number: 9 label: LABEL_OPTIONAL type: TYPE_MESSAGE type_name: ".google.protobuf.Timestamp" }
  field { name: "ttl" number: 10 label: LABEL_OPTIONAL type: TYPE_MESSAGE type_name: ".google.protobuf.Duration" }
  field { name: "note" number: 11 label: LABEL_OPTIONAL type: TYPE_MESSAGE type_name: ".google.protobuf.StringValue" }
  field { name: "limit" number: 12 label: LABEL_OPTIONAL type: TYPE_MESSAGE type_name: ".google.protobuf.Int64Value" }
  field { name: "category" number: 13 label: LABEL_OPTIONAL type: TYPE_MESSAGE type_name: ".switchboard.test.v1.Category" }
  field { name: "extra" number: 14 label: LABEL_OPTIONAL type: TYPE_MESSAGE type_name: ".google.protobuf.Struct" }
  field { name: "anything" number: 15 label: LABEL_OPTIONAL type: TYPE_MESSAGE type_name: ".google.protobuf.Value" }
  field { name: "by_id" number: 16 label: LABEL_REPEATED type: TYPE_MESSAGE type_name: ".switchboard.test.v1.Order.ByIdEntry" }
  field { name: "ratio" number: 17 label: LABEL_OPTIONAL type: TYPE_DOUBLE }
  nested_type {
    name: "CountsEntry"
    field { name: "key" number: 1 label: LABEL_OPTIONAL type: TYPE_STRING }
    field { name: "value" number: 2 label: LABEL_OPTIONAL type: TYPE_INT64 }
    options { map_entry: true }
  }
  nested_type {
    name: "ByIdEntry"
    field { name: "key" number: 1 label: LABEL_OPTIONAL type: TYPE_INT32 }
    field { name: "value" number: 2 label: LABEL_OPTIONAL type: TYPE_MESSAGE type_name: ".switchboard.test.v1.Category" }
    options { map_entry: true }
  }
  enum_type {
    name: "Status"
    value { name: "STATUS_UNSPECIFIED" number: 0 }
    value { name: "PLACED" number: 1 }
    value { name: "SHIPPED" number: 2 }
  }
}
message_type {
  name: "Category"
  field { name: "name" number: 1 label: LABEL_OPTIONAL type: TYPE_STRING }
  field { name: "children" number: 2 label: LABEL_REPEATED type: TYPE_MESSAGE type_name: ".switchboard.test.v1.Category" }
}
`

// orderDescriptor builds the Order message from orderFile.
func orderDescriptor(t testing.TB) protoreflect.MessageDescriptor {
	t.Helper()
	var fdp descriptorpb.FileDescriptorProto
	if err := prototext.Unmarshal([]byte(orderFile), &fdp); err != nil {
		t.Fatal(err)
	}
	fd, err := protodesc.NewFile(&fdp, protoregistry.GlobalFiles)
	if err != nil {
		t.Fatal(err)
	}
	return fd.Messages().ByName("Order")
}

func TestSchemaOfDynamicMessage(t *testing.T) {
	order := dynamicpb.NewMessage(orderDescriptor(t))
	s := schemaOf(t, order)
	tests := []struct {
		name string
		path []string
		want any
	}{
		{"a map is an object of its values", []string{"properties", "counts", "additionalProperties", "format"}, "int64"},
		{"a map with int keys is still an object", []string{"properties", "byId", "type"}, "object"},
		{"a float is a number or a non-finite string", []string{"properties", "weight", "anyOf", "0", "format"}, "float"},
		{"fixed64 is a string", []string{"properties", "sequence", "format"}, "uint64"},
		{"a nested enum lists its names", []string{"properties", "status", "enum"}, []any{"STATUS_UNSPECIFIED", "PLACED", "SHIPPED"}},
		{"a StringValue field is a string", []string{"properties", "note", "type"}, "string"},
		{"an Int64Value field is a string", []string{"properties", "limit", "format"}, "int64"},
		{"a Timestamp field is a date-time", []string{"properties", "placedAt", "format"}, "date-time"},
		{"a message that recurs below the root is inline once", []string{"properties", "category", "properties", "children", "items", "$ref"}, "#/$defs/switchboard.test.v1.Category"},
		{"and defined once under $defs", []string{"$defs", "switchboard.test.v1.Category", "properties", "children", "items", "$ref"}, "#/$defs/switchboard.test.v1.Category"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := at(t, s, tt.path...); fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("%s = %v, want %v", strings.Join(tt.path, "/"), got, tt.want)
			}
		})
	}
}

// TestSchemaDescribesWhatMarshalWrites validates bodies written by Marshal
// against their Schema, so that schema and codec cannot drift apart.
func TestSchemaDescribesWhatMarshalWrites(t *testing.T) {
	order := dynamicpb.NewMessage(orderDescriptor(t))
	const orderJSON = `{
		"orderId": "o-1", "totalCents": "-1234", "sequence": "18446744073709551615",
		"weight": "NaN", "ratio": 0.25, "blob": "AAEC/w==", "status": "SHIPPED", "tags": ["a", "b"],
		"counts": {"x": "1", "y": "-2"}, "placedAt": "2025-01-02T03:04:05.123Z", "ttl": "-1.5s",
		"note": "hi", "limit": "9007199254740993",
		"category": {"name": "root", "children": [{"name": "kid", "children": [{"name": "grandkid"}]}]},
		"extra": {"k": [1, "two", null, {"x": true}]}, "anything": [1, 2],
		"byId": {"7": {"name": "seven"}}
	}`
	if err := protojson.Unmarshal([]byte(orderJSON), order); err != nil {
		t.Fatal(err)
	}
	anyAPI, err := anypb.New(&wrapperspb.StringValue{Value: "x"})
	if err != nil {
		t.Fatal(err)
	}
	api := sampleAPI()
	api.Options = []*typepb.Option{{Name: "o", Value: anyAPI}}
	api.Methods[0].Options = []*typepb.Option{{Name: "p", Value: anyAPI}}

	desc := &descriptorpb.DescriptorProto{
		Name: proto.String("Outer"),
		NestedType: []*descriptorpb.DescriptorProto{{
			Name:       proto.String("Inner"),
			NestedType: []*descriptorpb.DescriptorProto{{Name: proto.String("Innermost")}},
		}},
		Options: &descriptorpb.MessageOptions{UninterpretedOption: []*descriptorpb.UninterpretedOption{{
			PositiveIntValue: proto.Uint64(math.MaxUint64), NegativeIntValue: proto.Int64(math.MinInt64),
			DoubleValue: proto.Float64(math.Inf(-1)), StringValue: []byte{0, 1, 2, 255},
		}}},
	}
	tests := []struct {
		name string
		v    any
	}{
		{"a struct", &quoteRequest{Item: "tea", Quantity: 3, At: time.Now(), Lines: []line{{SKU: "a", Price: 1.5}}, Extra: map[string]string{"k": "v"}}},
		{"a recursive struct", &treeNode{Name: "a", Children: []*treeNode{{Name: "b", Children: []*treeNode{{Name: "c"}}}}}},
		{"an API description", api},
		{"a type description", &typepb.Type{Name: "T", Fields: []*typepb.Field{{Kind: typepb.Field_TYPE_INT64, Number: 3, Name: "f", Packed: true}}}},
		{"a descriptor that contains itself", desc},
		{"a dynamic message with every kind of field", order},
		{"a timestamp", timestamppb.Now()},
		{"a duration", durationpb.New(-90*time.Second - 5*time.Millisecond)},
		{"a struct value", &structpb.Struct{Fields: map[string]*structpb.Value{"a": structpb.NewNumberValue(1)}}},
		{"a field mask", &fieldmaskpb.FieldMask{Paths: []string{"source_context.file_name", "name"}}},
		{"a bytes wrapper", wrapperspb.Bytes([]byte("hello"))},
		{"a uint64 wrapper", wrapperspb.UInt64(math.MaxUint64)},
		{"a float wrapper holding infinity", wrapperspb.Float(float32(math.Inf(1)))},
	}
	for _, tt := range tests {
		t.Run(tt.name+" conforms to its schema", func(t *testing.T) {
			body, err := wire.Marshal(tt.v, wire.ContentTypeJSON)
			if err != nil {
				t.Fatal(err)
			}
			var schema, doc any
			if err := json.Unmarshal(wire.Schema(tt.v), &schema); err != nil {
				t.Fatal(err)
			}
			d := json.NewDecoder(bytes.NewReader(body))
			d.UseNumber()
			if err := d.Decode(&doc); err != nil {
				t.Fatal(err)
			}
			v := validator{root: schema.(map[string]any)}
			for _, problem := range v.check(schema, doc, "") {
				t.Errorf("%s\nbody: %s", problem, body)
			}
		})
	}
}

func TestSchemaIsStableAndCached(t *testing.T) {
	t.Run("every call returns the same bytes", func(t *testing.T) {
		for _, v := range []any{&quoteRequest{}, &apipb.Api{}, &descriptorpb.FileDescriptorProto{}, dynamicpb.NewMessage(orderDescriptor(t))} {
			first := wire.Schema(v)
			for range 5 {
				if got := wire.Schema(v); !bytes.Equal(got, first) {
					t.Fatalf("Schema(%T) changed between calls:\n%s\n%s", v, first, got)
				}
			}
		}
	})
	t.Run("a pointer and its element have the same schema", func(t *testing.T) {
		if a, b := wire.Schema(quoteRequest{}), wire.Schema(&quoteRequest{}); !bytes.Equal(a, b) {
			t.Errorf("Schema(T) = %s\nSchema(*T) = %s", a, b)
		}
	})
	t.Run("a caller changing the result does not change the cache", func(t *testing.T) {
		a := wire.Schema(&apipb.Api{})
		want := bytes.Clone(a)
		clear(a)
		if got := wire.Schema(&apipb.Api{}); !bytes.Equal(got, want) {
			t.Errorf("cached schema was changed through a returned slice")
		}
	})
	t.Run("concurrent calls agree", func(t *testing.T) {
		type fresh struct{ A, B string }
		var wg sync.WaitGroup
		results := make([]json.RawMessage, 16)
		for i := range results {
			wg.Go(func() { results[i] = wire.Schema(&fresh{}) })
		}
		wg.Wait()
		for _, r := range results[1:] {
			if !bytes.Equal(r, results[0]) {
				t.Fatalf("concurrent schemas differ: %s vs %s", r, results[0])
			}
		}
	})
	t.Run("dynamic messages of different types are not confused", func(t *testing.T) {
		md := orderDescriptor(t)
		order := wire.Schema(dynamicpb.NewMessage(md))
		category := wire.Schema(dynamicpb.NewMessage(md.ParentFile().Messages().ByName("Category")))
		if bytes.Equal(order, category) {
			t.Errorf("Order and Category got the same schema")
		}
	})
}

func TestSchemaNeverPanics(t *testing.T) {
	tests := []struct {
		name string
		v    any
		want string
	}{
		{"nil is any JSON value", nil, ""},
		{"a type without a JSON form says so", withFunc{}, "no JSON schema"},
		{"a nil dynamic message says so", (*dynamicpb.Message)(nil), "no JSON schema"},
		{"a string is a string", "", `"type":"string"`},
		{"a slice of structs is an array", []line{}, `"type":"array"`},
		{"raw JSON is anything", json.RawMessage(nil), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := string(wire.Schema(tt.v))
			if !json.Valid([]byte(raw)) || !strings.Contains(raw, tt.want) {
				t.Errorf("Schema = %s, want JSON containing %q", raw, tt.want)
			}
		})
	}
}

func TestTypeName(t *testing.T) {
	const pkg = "github.com/switchboard-dev/switchboard/wire_test"
	tests := []struct {
		name string
		v    any
		want string
	}{
		{"a struct is named by import path and name", quoteRequest{}, pkg + ".quoteRequest"},
		{"a pointer is named as its element", &quoteRequest{}, pkg + ".quoteRequest"},
		{"a nil pointer works", (*quoteRequest)(nil), pkg + ".quoteRequest"},
		{"a message is named by its full proto name", &apipb.Api{}, "google.protobuf.Api"},
		{"a nil message pointer works", (*timestamppb.Timestamp)(nil), "google.protobuf.Timestamp"},
		{"a dynamic message is named by its descriptor", dynamicpb.NewMessage(orderDescriptor(t)), "switchboard.test.v1.Order"},
		{"a slice is spelled as in Go", []*line{}, "[]" + pkg + ".line"},
		{"a map is spelled as in Go", map[string][2]int{}, "map[string][2]int"},
		{"a predeclared type is its name", 0, "int"},
		{"nil has no name", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := wire.TypeName(tt.v); got != tt.want {
				t.Errorf("TypeName = %q, want %q", got, tt.want)
			}
		})
	}
}

// validator checks a JSON document against the subset of JSON Schema that
// Schema produces. It reports keywords it does not know, so that a new
// keyword in Schema's output cannot go unchecked.
type validator struct{ root map[string]any }

func (v validator) check(schema, doc any, path string) []string {
	if b, ok := schema.(bool); ok {
		if !b {
			return []string{path + ": schema false"}
		}
		return nil
	}
	s := schema.(map[string]any)
	var problems []string
	fail := func(format string, args ...any) {
		problems = append(problems, fmt.Sprintf("%s: ", path)+fmt.Sprintf(format, args...))
	}
	for _, kw := range slices.Sorted(maps.Keys(s)) {
		switch val := s[kw]; kw {
		case "$schema", "$defs", "description", "title", "contentEncoding":
		case "$ref":
			ref := val.(string)
			target := any(v.root)
			if ref != "#" {
				name, ok := strings.CutPrefix(ref, "#/$defs/")
				if !ok {
					fail("unsupported $ref %q", ref)
					continue
				}
				if target, ok = v.root["$defs"].(map[string]any)[name]; !ok {
					fail("dangling $ref %q", ref)
					continue
				}
			}
			problems = append(problems, v.check(target, doc, path)...)
		case "anyOf":
			matched := false
			for _, alt := range val.([]any) {
				if len(v.check(alt, doc, path)) == 0 {
					matched = true
				}
			}
			if !matched {
				fail("%v matches no anyOf alternative", doc)
			}
		case "type":
			if !hasType(doc, val.(string)) {
				fail("%v (%T) is not of type %s", doc, doc, val)
			}
		case "enum":
			if !slices.ContainsFunc(val.([]any), func(e any) bool { return e == doc }) {
				fail("%v is not one of %v", doc, val)
			}
		case "pattern":
			if str, ok := doc.(string); ok && !regexp.MustCompile(val.(string)).MatchString(str) {
				fail("%q does not match %s", str, val)
			}
		case "format":
			if problem := checkFormat(val.(string), doc); problem != "" {
				fail("%s", problem)
			}
		case "required":
			if obj, ok := doc.(map[string]any); ok {
				for _, name := range val.([]any) {
					if _, ok := obj[name.(string)]; !ok {
						fail("missing required %v", name)
					}
				}
			}
		case "properties":
			if obj, ok := doc.(map[string]any); ok {
				for name, sub := range val.(map[string]any) {
					if field, ok := obj[name]; ok {
						problems = append(problems, v.check(sub, field, path+"/"+name)...)
					}
				}
			}
		case "additionalProperties":
			if obj, ok := doc.(map[string]any); ok {
				props, _ := s["properties"].(map[string]any)
				for name, field := range obj {
					if _, listed := props[name]; !listed {
						problems = append(problems, v.check(val, field, path+"/"+name)...)
					}
				}
			}
		case "items":
			if arr, ok := doc.([]any); ok {
				for i, item := range arr {
					problems = append(problems, v.check(val, item, fmt.Sprintf("%s/%d", path, i))...)
				}
			}
		default:
			fail("validator does not know keyword %q", kw)
		}
	}
	if s["contentEncoding"] == "base64" {
		if str, ok := doc.(string); ok {
			if _, err := base64.StdEncoding.DecodeString(str); err != nil {
				fail("%q is not base64: %v", str, err)
			}
		}
	}
	return problems
}

func hasType(doc any, typ string) bool {
	switch typ {
	case "object":
		_, ok := doc.(map[string]any)
		return ok
	case "array":
		_, ok := doc.([]any)
		return ok
	case "string":
		_, ok := doc.(string)
		return ok
	case "boolean":
		_, ok := doc.(bool)
		return ok
	case "null":
		return doc == nil
	case "number":
		_, ok := doc.(json.Number)
		return ok
	case "integer":
		n, ok := doc.(json.Number)
		if !ok {
			return false
		}
		_, err := strconv.ParseInt(n.String(), 10, 64)
		return err == nil
	}
	return false
}

func checkFormat(format string, doc any) string {
	switch format {
	case "date-time":
		if str, ok := doc.(string); ok {
			if _, err := time.Parse(time.RFC3339Nano, str); err != nil {
				return fmt.Sprintf("%q is not a date-time", str)
			}
		}
	case "int64", "int32":
		if str, ok := anyString(doc); ok {
			bits := map[string]int{"int64": 64, "int32": 32}[format]
			if _, err := strconv.ParseInt(str, 10, bits); err != nil {
				return fmt.Sprintf("%q is not an %s", str, format)
			}
		}
	case "uint64", "uint32":
		if str, ok := anyString(doc); ok {
			bits := map[string]int{"uint64": 64, "uint32": 32}[format]
			if _, err := strconv.ParseUint(str, 10, bits); err != nil {
				return fmt.Sprintf("%q is not a %s", str, format)
			}
		}
	case "float", "double":
	default:
		return fmt.Sprintf("validator does not know format %q", format)
	}
	return ""
}

func anyString(doc any) (string, bool) {
	switch d := doc.(type) {
	case string:
		return d, true
	case json.Number:
		return d.String(), true
	}
	return "", false
}
