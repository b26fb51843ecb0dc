package contract

import (
	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/examples/ridehail/proto/ridehailpb"
)

// Endpoints of the trips service (protobuf), the front door of the domain.
var (
	// RequestTrip checks the customer, prices the ride and matches a driver
	// in parallel, then publishes TripRequested and DriverAssigned. Bad input
	// is InvalidArgument naming the field; an unknown customer is NotFound;
	// no free driver nearby is FailedPrecondition.
	RequestTrip = switchboard.Endpoint[*ridehailpb.RequestTripRequest, *ridehailpb.Trip](TripsService, "request_trip")
	// CompleteTrip ends a ride: it publishes TripCompleted and frees the
	// driver. Completing a completed trip returns it unchanged. An unknown
	// trip is NotFound.
	CompleteTrip = switchboard.Endpoint[*ridehailpb.CompleteTripRequest, *ridehailpb.Trip](TripsService, "complete_trip")
	// GetTrip returns a trip, or NotFound.
	GetTrip = switchboard.Endpoint[*ridehailpb.GetTripRequest, *ridehailpb.Trip](TripsService, "get_trip")
)

// Events published by the trips service (protobuf bodies).
var (
	// TripRequested is published once per trip, after a driver was assigned.
	TripRequested = switchboard.Topic[*ridehailpb.TripRequested]("trip.requested")
	// DriverAssigned is published once per trip, with TripRequested.
	DriverAssigned = switchboard.Topic[*ridehailpb.DriverAssigned]("driver.assigned")
	// TripCompleted is published when a ride ends. Its event id is
	// TripCompletedID(tripID), so a re-publish is recognisably the same fact.
	TripCompleted = switchboard.Topic[*ridehailpb.TripCompleted]("trip.completed")
)

// TripCompletedID is the CloudEvents id of the TripCompleted event of a trip.
func TripCompletedID(tripID string) string { return "trip.completed:" + tripID }
