package wire_test

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/wire"
)

// A caller writes the envelope into the request's headers; the service reads
// it back. The deadline travels as the remaining budget in milliseconds, so
// the two clocks need not agree.
func ExampleEnvelope() {
	req := wire.Envelope{
		Service:     "pricing",
		Endpoint:    "quote",
		ContentType: wire.ContentTypeJSON,
		Caller:      "trips",
		Deadline:    time.Now().Add(30 * time.Second),
	}
	h := bus.Header{}
	req.Encode(h)
	for _, k := range slices.Sorted(maps.Keys(h)) {
		if k != wire.HeaderTimeout { // its exact value depends on timing
			fmt.Printf("%s: %s\n", k, h[k])
		}
	}

	got, err := wire.DecodeEnvelope(h)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("from", got.Caller, "in", got.ContentType)
	fmt.Println("budget:", time.Until(got.Deadline).Round(10*time.Second))

	_, err = wire.DecodeEnvelope(bus.Header{wire.HeaderTimeout: "soon"})
	fmt.Println(bus.ErrorCode(err))
	// Output:
	// Sb-Caller: trips
	// from trips in application/json
	// budget: 30s
	// InvalidArgument
}

// Errors cross the wire in reply headers with their code, so the caller can
// branch on it with bus.ErrorCode.
func ExampleEncodeError() {
	h := bus.Header{}
	wire.EncodeError(h, bus.Errorf(bus.NotFound, "trip %q not found", "t-42").WithDetail("trip_id", "t-42"))

	err := wire.DecodeError(h)
	fmt.Println(bus.ErrorCode(err))
	fmt.Println(err)
	// Output:
	// NotFound
	// NotFound: trip "t-42" not found
}

// A Go struct travels as JSON; a body that does not decode is an
// InvalidArgument error that names the field at fault.
func ExampleMarshal() {
	type QuoteRequest struct {
		Item     string `json:"item"`
		Quantity int    `json:"quantity"`
	}
	body, err := wire.Marshal(QuoteRequest{Item: "tea", Quantity: 2}, wire.ContentTypeJSON)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(string(body))

	var req QuoteRequest
	if err := wire.Unmarshal(body, wire.ContentTypeJSON, &req); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%+v\n", req)

	err = wire.Unmarshal([]byte(`{"item":"tea","quantity":"two"}`), wire.ContentTypeJSON, &req)
	fmt.Println(err)
	// Output:
	// {"item":"tea","quantity":2}
	// {Item:tea Quantity:2}
	// InvalidArgument: wire: field "quantity": got JSON string, want int (byte offset 30)
}

// A protobuf message travels as binary protobuf by default and as protojson
// when the caller asks for JSON, so any endpoint can be called with JSON.
func ExampleUnmarshal_protobuf() {
	sent := timestamppb.New(time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC))

	for _, ct := range []string{wire.DefaultContentType(sent), wire.ContentTypeJSON} {
		body, err := wire.Marshal(sent, ct)
		if err != nil {
			fmt.Println(err)
			return
		}
		var got timestamppb.Timestamp
		if err := wire.Unmarshal(body, ct, &got); err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(ct, got.AsTime().Format(time.RFC3339))
	}
	// Output:
	// application/protobuf 2025-03-04T05:06:07Z
	// application/json 2025-03-04T05:06:07Z
}

// Schema and TypeName describe an endpoint's body for discovery.
func ExampleSchema() {
	type QuoteRequest struct {
		Item     string `json:"item"`
		Quantity int    `json:"quantity,omitempty"`
	}
	fmt.Println(string(wire.Schema(&QuoteRequest{})))
	fmt.Println(wire.TypeName(&timestamppb.Timestamp{}))
	fmt.Println(string(wire.Schema(&timestamppb.Timestamp{})))
	// Output:
	// {"$schema":"https://json-schema.org/draft/2020-12/schema","properties":{"item":{"type":"string"},"quantity":{"type":"integer"}},"type":"object","required":["item"]}
	// google.protobuf.Timestamp
	// {"$schema":"https://json-schema.org/draft/2020-12/schema","type":"string","format":"date-time"}
}
