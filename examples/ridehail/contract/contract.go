// Package contract is the shared contract of the ride-hailing example: the
// endpoint and topic values that servers handle and clients call, and the
// request, reply and event types they carry. Importing it gives a type-checked
// client of every service without importing the services themselves.
//
// Two codecs are used on purpose. The dispatch and trips services and the
// trip events speak protobuf (types from package ridehailpb, generated from
// .proto files); the drivers, customers, pricing and payments services speak
// JSON with plain Go structs. Any endpoint also accepts JSON, so all of them
// can be called with `switchboard call`.
//
// The services, and who calls whom:
//
//	trips.request_trip ──┬─ customers.get_customer   (in parallel)
//	                     ├─ pricing.quote
//	                     └─ dispatch.match ── drivers.nearby, drivers.assign
//	                  then publishes trip.requested and driver.assigned
//	trips.complete_trip ── publishes trip.completed, dispatch.release ── drivers.release
//	payments ◀── consumes trip.completed (group "payments") and charges the fare
package contract

// Service names.
const (
	DriversService   = "drivers"
	CustomersService = "customers"
	PricingService   = "pricing"
	DispatchService  = "dispatch"
	TripsService     = "trips"
	PaymentsService  = "payments"
)

// Currency is the one currency fares are quoted and charged in.
const Currency = "EUR"
