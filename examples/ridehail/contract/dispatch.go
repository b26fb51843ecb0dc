package contract

import (
	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/examples/ridehail/proto/ridehailpb"
)

// Endpoints of the dispatch service (protobuf), which matches trips with
// drivers.
var (
	// Match assigns the nearest available driver to a trip. It fails with
	// FailedPrecondition when no driver is available within the radius.
	Match = switchboard.Endpoint[*ridehailpb.MatchRequest, *ridehailpb.MatchReply](DispatchService, "match")
	// ReleaseMatch undoes a match: the driver is free again. It can be
	// retried.
	ReleaseMatch = switchboard.Endpoint[*ridehailpb.ReleaseRequest, *ridehailpb.ReleaseReply](DispatchService, "release")
)
