// Package ridehailpb holds the Go code generated from the protobuf contracts
// of the ride-hailing example (geo.proto, dispatch.proto, trips.proto): the
// request, reply and event messages of the dispatch and trips services.
// Package contract pairs them with endpoint and topic names.
//
// Regenerate after editing a .proto file (needs protoc and protoc-gen-go
// v1.36.12 on PATH):
//
//	go generate ./examples/ridehail/proto/ridehailpb
package ridehailpb

//go:generate protoc -I .. --go_out=.. --go_opt=paths=source_relative ridehailpb/geo.proto ridehailpb/dispatch.proto ridehailpb/trips.proto
