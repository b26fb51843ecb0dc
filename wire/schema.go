package wire

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"sync"

	"github.com/invopop/jsonschema"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"
)

// schemaCache maps a reflect.Type to its JSON Schema. Schemas are computed
// once per type: services register endpoints at start and discovery
// announces them on every heartbeat.
var schemaCache sync.Map // reflect.Type → json.RawMessage

var protoMessageType = reflect.TypeFor[proto.Message]()

// Schema returns a JSON Schema (draft 2020-12) of the JSON body that
// Marshal produces for v's type with ContentTypeJSON, and that Unmarshal
// accepts. Only the type of v matters: a nil pointer such as (*T)(nil) works.
//
// For a protobuf message the schema follows protojson: lowerCamelCase field
// names, 64-bit integers as strings, enums as the names of their values,
// well-known types in their JSON forms (Timestamp and Duration as strings,
// wrappers as their scalar). For any other type it follows encoding/json and
// the json struct tags; a `jsonschema:"..."` tag adds keywords (see
// github.com/invopop/jsonschema).
//
// The schema is self-contained: types are written inline, and only types
// that contain themselves are put under "$defs" and referenced. Objects allow
// properties the schema does not list, as Unmarshal ignores unknown fields.
// Schema never fails: for a type that has no JSON form (a func or a chan) it
// returns a schema that says so in its description.
//
// Schema is safe for concurrent use. The result is the same for every call
// with the same type; callers own the returned slice.
func Schema(v any) json.RawMessage {
	t := reflect.TypeOf(v)
	if t == nil {
		return schemaJSON(&jsonschema.Schema{Version: jsonschema.Version})
	}
	// One reflect type stands for every dynamic message, so those cannot be
	// cached by type.
	_, dynamic := v.(*dynamicpb.Message)
	if !dynamic {
		if s, ok := schemaCache.Load(t); ok {
			return bytes.Clone(s.(json.RawMessage))
		}
	}
	s := buildSchema(v, t)
	if !dynamic {
		schemaCache.Store(t, s)
	}
	return bytes.Clone(s)
}

// buildSchema computes the schema of v. The reflector panics on types it
// cannot describe; that must not take a service down at registration.
func buildSchema(v any, t reflect.Type) (out json.RawMessage) {
	defer func() {
		if r := recover(); r != nil {
			out = schemaJSON(&jsonschema.Schema{
				Version:     jsonschema.Version,
				Description: fmt.Sprintf("wire: no JSON schema for %s: %v", t, r),
			})
		}
	}()
	if md := messageDescriptor(v); md != nil {
		return schemaJSON(protoSchema(md))
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	r := &jsonschema.Reflector{
		Anonymous:                 true, // no made-up $id URLs
		AllowAdditionalProperties: true, // Unmarshal ignores unknown fields
		DoNotReference:            !recursiveType(t, map[reflect.Type]bool{}),
		Mapper: func(t reflect.Type) *jsonschema.Schema {
			if t.Kind() == reflect.Uintptr { // encoding/json writes a number
				return &jsonschema.Schema{Type: "integer"}
			}
			return nil
		},
	}
	return schemaJSON(r.ReflectFromType(t))
}

func schemaJSON(s *jsonschema.Schema) json.RawMessage {
	b, err := json.Marshal(s)
	if err != nil {
		// Only reachable through a type's own JSONSchema method returning
		// something unencodable.
		b, _ = json.Marshal(&jsonschema.Schema{
			Version:     jsonschema.Version,
			Description: "wire: cannot encode JSON schema: " + err.Error(),
		})
	}
	return b
}

// recursiveType reports whether t contains itself through the exported
// fields encoding/json follows. Such types cannot be written inline.
func recursiveType(t reflect.Type, onPath map[reflect.Type]bool) bool {
	switch t.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Array:
		return recursiveType(t.Elem(), onPath)
	case reflect.Map:
		return recursiveType(t.Key(), onPath) || recursiveType(t.Elem(), onPath)
	case reflect.Struct:
		if onPath[t] {
			return true
		}
		onPath[t] = true
		defer delete(onPath, t)
		for i := range t.NumField() {
			if f := t.Field(i); (f.IsExported() || f.Anonymous) && recursiveType(f.Type, onPath) {
				return true
			}
		}
	}
	return false
}

// messageDescriptor returns the descriptor of v's message type if v's type
// (or a pointer to it, through any number of pointers) is a proto.Message.
func messageDescriptor(v any) protoreflect.MessageDescriptor {
	if m, ok := v.(proto.Message); ok {
		return m.ProtoReflect().Descriptor()
	}
	t := reflect.TypeOf(v)
	for t.Kind() == reflect.Pointer {
		if t.Implements(protoMessageType) {
			break
		}
		t = t.Elem()
	}
	switch {
	case t.Kind() == reflect.Pointer && t.Implements(protoMessageType):
		return reflect.New(t.Elem()).Interface().(proto.Message).ProtoReflect().Descriptor()
	case reflect.PointerTo(t).Implements(protoMessageType):
		return reflect.New(t).Interface().(proto.Message).ProtoReflect().Descriptor()
	}
	return nil
}

// TypeName names v's type for discovery and logs: the full protobuf name for
// a message ("switchboard.examples.trips.v1.RequestTripRequest"), otherwise
// the Go import path and name ("github.com/you/shop/orders.PlaceOrder").
// Pointers are looked through, since a body is the same JSON either way.
// Unnamed types are spelled as in Go ("[]github.com/you/shop/orders.Item",
// "map[string]int"). TypeName(nil) is "".
func TypeName(v any) (name string) {
	t := reflect.TypeOf(v)
	if t == nil {
		return ""
	}
	defer func() {
		if recover() != nil { // a nil *dynamicpb.Message has no descriptor
			name = goTypeName(t)
		}
	}()
	if md := messageDescriptor(v); md != nil {
		return string(md.FullName())
	}
	return goTypeName(t)
}

func goTypeName(t reflect.Type) string {
	for t.Kind() == reflect.Pointer && t.Name() == "" {
		t = t.Elem()
	}
	if t.Name() != "" {
		if t.PkgPath() == "" {
			return t.Name() // predeclared: string, int, error
		}
		return t.PkgPath() + "." + t.Name()
	}
	switch t.Kind() {
	case reflect.Slice:
		return "[]" + goTypeName(t.Elem())
	case reflect.Array:
		return fmt.Sprintf("[%d]%s", t.Len(), goTypeName(t.Elem()))
	case reflect.Map:
		return "map[" + goTypeName(t.Key()) + "]" + goTypeName(t.Elem())
	}
	return t.String() // struct{...}, interface{...}, func(...)
}

// protoSchema is the schema of md's protojson form. Messages are written
// inline; a message that contains itself is written once under "$defs" and
// referenced where it recurs ("#" when that is the root).
func protoSchema(md protoreflect.MessageDescriptor) *jsonschema.Schema {
	b := &protoSchemaBuilder{root: md.FullName(), onPath: map[protoreflect.FullName]bool{}, refs: map[protoreflect.FullName]protoreflect.MessageDescriptor{}}
	s := b.message(md)
	defs := jsonschema.Definitions{}
	for {
		var todo []protoreflect.FullName
		for name := range b.refs {
			if _, done := defs[string(name)]; !done {
				todo = append(todo, name)
			}
		}
		if len(todo) == 0 {
			break
		}
		slices.Sort(todo)
		for _, name := range todo {
			defs[string(name)] = b.message(b.refs[name])
		}
	}
	s.Version = jsonschema.Version
	if len(defs) > 0 {
		s.Definitions = defs
	}
	return s
}

type protoSchemaBuilder struct {
	root   protoreflect.FullName
	onPath map[protoreflect.FullName]bool
	refs   map[protoreflect.FullName]protoreflect.MessageDescriptor // recursive messages, for $defs
}

func (b *protoSchemaBuilder) message(md protoreflect.MessageDescriptor) *jsonschema.Schema {
	if s := wellKnownSchema(md); s != nil {
		return s
	}
	name := md.FullName()
	if b.onPath[name] {
		if name == b.root {
			return &jsonschema.Schema{Ref: "#"}
		}
		b.refs[name] = md
		return &jsonschema.Schema{Ref: "#/$defs/" + string(name)}
	}
	b.onPath[name] = true
	defer delete(b.onPath, name)

	s := &jsonschema.Schema{Type: "object"}
	fields := md.Fields()
	if fields.Len() > 0 {
		s.Properties = jsonschema.NewProperties()
	}
	for i := range fields.Len() {
		fd := fields.Get(i)
		s.Properties.Set(fd.JSONName(), b.field(fd))
	}
	return s
}

func (b *protoSchemaBuilder) field(fd protoreflect.FieldDescriptor) *jsonschema.Schema {
	switch {
	case fd.IsMap():
		// JSON object keys are strings whatever the key kind.
		return &jsonschema.Schema{Type: "object", AdditionalProperties: b.singular(fd.MapValue())}
	case fd.IsList():
		return &jsonschema.Schema{Type: "array", Items: b.singular(fd)}
	}
	return b.singular(fd)
}

func (b *protoSchemaBuilder) singular(fd protoreflect.FieldDescriptor) *jsonschema.Schema {
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return b.message(fd.Message())
	case protoreflect.EnumKind:
		return enumSchema(fd.Enum())
	}
	return scalarSchema(fd.Kind())
}

func scalarSchema(k protoreflect.Kind) *jsonschema.Schema {
	switch k {
	case protoreflect.BoolKind:
		return &jsonschema.Schema{Type: "boolean"}
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return &jsonschema.Schema{Type: "integer", Format: "int32"}
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return &jsonschema.Schema{Type: "integer", Format: "uint32"}
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		// protojson writes 64-bit integers as strings so that JavaScript
		// readers keep every digit.
		return &jsonschema.Schema{Type: "string", Format: "int64"}
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return &jsonschema.Schema{Type: "string", Format: "uint64"}
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		// Non-finite values have no JSON number; protojson writes them as
		// these strings.
		format := "double"
		if k == protoreflect.FloatKind {
			format = "float"
		}
		return &jsonschema.Schema{AnyOf: []*jsonschema.Schema{
			{Type: "number", Format: format},
			{Type: "string", Enum: []any{"NaN", "Infinity", "-Infinity"}},
		}}
	case protoreflect.StringKind:
		return &jsonschema.Schema{Type: "string"}
	case protoreflect.BytesKind:
		return &jsonschema.Schema{Type: "string", ContentEncoding: "base64"}
	}
	return &jsonschema.Schema{}
}

func enumSchema(ed protoreflect.EnumDescriptor) *jsonschema.Schema {
	if ed.FullName() == "google.protobuf.NullValue" {
		return &jsonschema.Schema{Type: "null"}
	}
	values := ed.Values()
	names := make([]any, values.Len())
	for i := range values.Len() {
		names[i] = string(values.Get(i).Name())
	}
	return &jsonschema.Schema{Type: "string", Enum: names}
}

// wellKnownSchema returns the schema of the well-known types that protojson
// writes in a special form, or nil for an ordinary message.
func wellKnownSchema(md protoreflect.MessageDescriptor) *jsonschema.Schema {
	if md.ParentFile() == nil || md.ParentFile().Package() != "google.protobuf" {
		return nil
	}
	switch md.Name() {
	case "Timestamp":
		return &jsonschema.Schema{Type: "string", Format: "date-time"}
	case "Duration":
		return &jsonschema.Schema{Type: "string", Pattern: `^-?[0-9]+(\.[0-9]{1,9})?s$`}
	case "FieldMask":
		return &jsonschema.Schema{Type: "string", Description: "comma-separated lowerCamelCase field paths"}
	case "Struct":
		return &jsonschema.Schema{Type: "object"}
	case "ListValue":
		return &jsonschema.Schema{Type: "array"}
	case "Value":
		return &jsonschema.Schema{Description: "any JSON value"}
	case "Any":
		props := jsonschema.NewProperties()
		props.Set("@type", &jsonschema.Schema{Type: "string"})
		return &jsonschema.Schema{Type: "object", Properties: props, Required: []string{"@type"}}
	case "DoubleValue", "FloatValue", "Int64Value", "UInt64Value", "Int32Value",
		"UInt32Value", "BoolValue", "StringValue", "BytesValue":
		if fd := md.Fields().ByName("value"); fd != nil {
			return scalarSchema(fd.Kind())
		}
	}
	return nil
}
