package contract

import (
	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/examples/ridehail/geo"
)

// Endpoints of the drivers service (JSON), which knows where every driver is
// and whether they are free.
var (
	// ReportPosition records a driver's position; a driver seen for the first
	// time becomes available. Drivers that stop reporting are not offered
	// for trips after a while.
	ReportPosition = switchboard.Endpoint[*ReportPositionRequest, *ReportPositionReply](DriversService, "report_position")
	// NearbyDrivers lists available drivers near a point, nearest first.
	NearbyDrivers = switchboard.Endpoint[*NearbyRequest, *NearbyReply](DriversService, "nearby")
	// AssignDriver marks an available driver busy with a trip. It fails with
	// Aborted when someone else took the driver first, and NotFound for an
	// unknown driver.
	AssignDriver = switchboard.Endpoint[*AssignDriverRequest, *AssignDriverReply](DriversService, "assign")
	// ReleaseDriver frees the driver busy with the given trip. Releasing a
	// driver that is not on that trip changes nothing, so it can be retried.
	ReleaseDriver = switchboard.Endpoint[*ReleaseDriverRequest, *ReleaseDriverReply](DriversService, "release")
)

// Driver statuses reported by the drivers service.
const (
	StatusAvailable = "available"
	StatusBusy      = "busy"
)

// ReportPositionRequest is a driver's position report.
type ReportPositionRequest struct {
	DriverID string    `json:"driverId"`
	Position geo.Point `json:"position"`
}

// ReportPositionReply tells the driver their status.
type ReportPositionReply struct {
	Status string `json:"status"`
	TripID string `json:"tripId,omitempty"`
}

// NearbyRequest asks for available drivers within RadiusKM of Near.
type NearbyRequest struct {
	Near geo.Point `json:"near"`
	// RadiusKM defaults to 5 km.
	RadiusKM float64 `json:"radiusKm,omitempty"`
	// Limit defaults to 10.
	Limit int `json:"limit,omitempty"`
}

// NearbyReply lists drivers nearest first.
type NearbyReply struct {
	Drivers []NearbyDriver `json:"drivers"`
}

// NearbyDriver is one available driver and how far away they are.
type NearbyDriver struct {
	DriverID   string    `json:"driverId"`
	Position   geo.Point `json:"position"`
	DistanceKM float64   `json:"distanceKm"`
}

// AssignDriverRequest asks to make a driver busy with a trip.
type AssignDriverRequest struct {
	DriverID string `json:"driverId"`
	TripID   string `json:"tripId"`
}

// AssignDriverReply confirms the assignment.
type AssignDriverReply struct {
	Position geo.Point `json:"position"`
}

// ReleaseDriverRequest frees a driver from a trip.
type ReleaseDriverRequest struct {
	// DriverID may be empty: then whichever driver is on TripID is freed.
	DriverID string `json:"driverId,omitempty"`
	TripID   string `json:"tripId"`
}

// ReleaseDriverReply says whether the driver was on the trip and is now free.
type ReleaseDriverReply struct {
	Released bool `json:"released"`
}
