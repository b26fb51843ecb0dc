package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/switchboard-dev/switchboard/bus"
)

// Content types of message bodies. Any endpoint accepts JSON; endpoints whose
// types are protobuf messages also accept binary protobuf, which typed Go
// clients send by default.
const (
	ContentTypeJSON  = "application/json"
	ContentTypeProto = "application/protobuf"
)

// DefaultContentType is the encoding a Go caller uses for v: protobuf for a
// proto.Message, JSON otherwise.
func DefaultContentType(v any) string {
	if _, ok := v.(proto.Message); ok {
		return ContentTypeProto
	}
	return ContentTypeJSON
}

// normalize maps content-type spellings to ours. An empty content type means
// JSON, the lingua franca for callers without a codec.
func normalize(ct string) string {
	ct = strings.TrimSpace(strings.ToLower(ct))
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = strings.TrimSpace(ct[:i])
	}
	switch ct {
	case "", ContentTypeJSON, "text/json":
		return ContentTypeJSON
	case ContentTypeProto, "application/x-protobuf", "application/vnd.google.protobuf":
		return ContentTypeProto
	}
	return ct
}

// Marshal encodes v in content type ct.
func Marshal(v any, ct string) ([]byte, error) {
	switch normalize(ct) {
	case ContentTypeJSON:
		if m, ok := v.(proto.Message); ok {
			return protojson.Marshal(m)
		}
		return json.Marshal(v)
	case ContentTypeProto:
		m, ok := v.(proto.Message)
		if !ok {
			return nil, bus.Errorf(bus.InvalidArgument, "wire: cannot encode %T as %s: not a protobuf message", v, ContentTypeProto)
		}
		return proto.Marshal(m)
	}
	return nil, bus.Errorf(bus.InvalidArgument, "wire: unsupported content type %q: use %s or %s", ct, ContentTypeJSON, ContentTypeProto)
}

// Unmarshal decodes data of content type ct into v (a pointer). A body that
// does not decode is an InvalidArgument error naming the field or byte
// offset at fault. Unknown JSON fields are ignored so that newer callers can
// talk to older services.
func Unmarshal(data []byte, ct string, v any) error {
	switch normalize(ct) {
	case ContentTypeJSON:
		if m, ok := v.(proto.Message); ok {
			if len(bytes.TrimSpace(data)) == 0 {
				return nil
			}
			if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(data, m); err != nil {
				return withCause(bus.Errorf(bus.InvalidArgument, "wire: malformed JSON for %s: %s", m.ProtoReflect().Descriptor().FullName(), strings.TrimPrefix(err.Error(), "proto: ")), err)
			}
			return nil
		}
		if len(bytes.TrimSpace(data)) == 0 {
			data = []byte("null")
		}
		return jsonError(json.Unmarshal(data, v), v)
	case ContentTypeProto:
		m, ok := v.(proto.Message)
		if !ok {
			return bus.Errorf(bus.InvalidArgument, "wire: cannot decode %s into %T: not a protobuf message; send %s", ContentTypeProto, v, ContentTypeJSON)
		}
		if err := proto.Unmarshal(data, m); err != nil {
			return bus.Errorf(bus.InvalidArgument, "wire: malformed protobuf for %s: %w", m.ProtoReflect().Descriptor().FullName(), err)
		}
		return nil
	}
	return bus.Errorf(bus.InvalidArgument, "wire: unsupported content type %q: use %s or %s", ct, ContentTypeJSON, ContentTypeProto)
}

// jsonError turns encoding/json's errors into InvalidArgument errors that
// name the field or offset, with details a program can read.
func jsonError(err error, v any) error {
	if err == nil {
		return nil
	}
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return bus.Errorf(bus.InvalidArgument, "wire: malformed JSON at byte offset %d: %w", syn.Offset, syn).
			WithDetail("offset", fmt.Sprint(syn.Offset))
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			field = "(top level)"
		}
		return withCause(bus.Errorf(bus.InvalidArgument, "wire: field %q: got JSON %s, want %s (byte offset %d)", field, typ.Value, typ.Type, typ.Offset).
			WithDetail("field", field), err)
	}
	return bus.Errorf(bus.InvalidArgument, "wire: cannot decode JSON into %T: %w", v, err)
}

// withCause keeps err as the cause of e (it is not sent on the wire).
func withCause(e *bus.Error, err error) *bus.Error {
	e.Err = err
	return e
}
