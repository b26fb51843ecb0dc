// Package drivers is the drivers service of the ride-hailing example: it
// keeps every driver's last reported position and whether they are free or
// busy with a trip, and answers "who is free near here". State is in memory
// and safe for concurrent use; run one instance (it is the example's only
// stateful service without an event log behind it).
//
// Its contract (JSON) is in package contract: ReportPosition, NearbyDrivers,
// AssignDriver and ReleaseDriver.
package drivers

import (
	"cmp"
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/examples/ridehail/contract"
	"github.com/switchboard-dev/switchboard/examples/ridehail/geo"
	"github.com/switchboard-dev/switchboard/examples/ridehail/internal/check"
)

// Version is the service version.
const Version = "1.0.0"

// Limits and defaults of the service.
const (
	DefaultRadiusKM = 5.0
	MaxRadiusKM     = 50.0
	DefaultLimit    = 10
	MaxLimit        = 100
	// StaleAfter is how long after their last report a free driver is no
	// longer offered for trips (the app was closed, the phone lost signal).
	StaleAfter = 30 * time.Second
	// MaxDrivers bounds the drivers held in memory; free drivers silent for
	// longer than StaleAfter are forgotten to make room.
	MaxDrivers = 100_000
)

type driver struct {
	pos    geo.Point
	seen   time.Time
	tripID string // "" when free
}

type fleet struct {
	mu      sync.RWMutex
	drivers map[string]*driver
	logger  *slog.Logger
}

// New returns the drivers service. A nil logger means slog.Default(); opts
// are applied after the service's own defaults (use them for middleware).
func New(logger *slog.Logger, opts ...switchboard.ServiceOption) *switchboard.Service {
	if logger == nil {
		logger = slog.Default()
	}
	svc := switchboard.NewService(contract.DriversService, Version, append([]switchboard.ServiceOption{
		switchboard.WithDescription("Driver positions and availability"),
		switchboard.WithLogger(logger),
	}, opts...)...)
	f := &fleet{drivers: map[string]*driver{}, logger: logger.With("service", contract.DriversService)}
	contract.ReportPosition.Handle(svc, f.reportPosition, switchboard.Describe("Record a driver's position; new drivers become available"))
	contract.NearbyDrivers.Handle(svc, f.nearby, switchboard.Describe("Available drivers near a point, nearest first"))
	contract.AssignDriver.Handle(svc, f.assign, switchboard.Describe("Mark a free driver busy with a trip (Aborted if taken)"))
	contract.ReleaseDriver.Handle(svc, f.release, switchboard.Describe("Free a driver from a trip"))
	return svc
}

func (f *fleet) reportPosition(_ context.Context, req *contract.ReportPositionRequest) (*contract.ReportPositionReply, error) {
	if err := check.First(check.Required("driverId", req.DriverID), geo.Validate("position", req.Position)); err != nil {
		return nil, err
	}
	now := time.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	d := f.drivers[req.DriverID]
	if d == nil {
		if len(f.drivers) >= MaxDrivers {
			f.forgetStale(now)
		}
		if len(f.drivers) >= MaxDrivers {
			return nil, switchboard.Errorf(switchboard.ResourceExhausted, "drivers: %d drivers are online, the limit is %d", len(f.drivers), MaxDrivers)
		}
		d = &driver{}
		f.drivers[req.DriverID] = d
		f.logger.Debug("driver online", "driver", req.DriverID)
	}
	d.pos, d.seen = req.Position, now
	if d.tripID != "" {
		return &contract.ReportPositionReply{Status: contract.StatusBusy, TripID: d.tripID}, nil
	}
	return &contract.ReportPositionReply{Status: contract.StatusAvailable}, nil
}

// forgetStale drops free drivers that stopped reporting. Called with f.mu
// held.
func (f *fleet) forgetStale(now time.Time) {
	for id, d := range f.drivers {
		if d.tripID == "" && now.Sub(d.seen) > StaleAfter {
			delete(f.drivers, id)
		}
	}
}

func (f *fleet) nearby(_ context.Context, req *contract.NearbyRequest) (*contract.NearbyReply, error) {
	if err := geo.Validate("near", req.Near); err != nil {
		return nil, err
	}
	radius, limit := req.RadiusKM, req.Limit
	switch {
	case radius == 0:
		radius = DefaultRadiusKM
	case !(radius > 0 && radius <= MaxRadiusKM): // also catches NaN
		return nil, check.Invalid("radiusKm", "%v is not between 0 and %v km", radius, MaxRadiusKM)
	}
	switch {
	case limit == 0:
		limit = DefaultLimit
	case limit < 0 || limit > MaxLimit:
		return nil, check.Invalid("limit", "%d is not between 1 and %d", limit, MaxLimit)
	}
	now := time.Now()
	out := []contract.NearbyDriver{}
	f.mu.RLock()
	for id, d := range f.drivers {
		if d.tripID != "" || now.Sub(d.seen) > StaleAfter {
			continue
		}
		if dist := geo.DistanceKM(req.Near, d.pos); dist <= radius {
			out = append(out, contract.NearbyDriver{DriverID: id, Position: d.pos, DistanceKM: dist})
		}
	}
	f.mu.RUnlock()
	slices.SortFunc(out, func(a, b contract.NearbyDriver) int {
		return cmp.Or(cmp.Compare(a.DistanceKM, b.DistanceKM), cmp.Compare(a.DriverID, b.DriverID))
	})
	if len(out) > limit {
		out = out[:limit]
	}
	return &contract.NearbyReply{Drivers: out}, nil
}

func (f *fleet) assign(_ context.Context, req *contract.AssignDriverRequest) (*contract.AssignDriverReply, error) {
	if err := check.First(check.Required("driverId", req.DriverID), check.Required("tripId", req.TripID)); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	d := f.drivers[req.DriverID]
	switch {
	case d == nil:
		return nil, switchboard.Errorf(switchboard.NotFound, "drivers: no driver %q is online", req.DriverID)
	case d.tripID == req.TripID: // a retried assign
	case d.tripID != "":
		return nil, switchboard.Errorf(switchboard.Aborted, "drivers: driver %q is busy with trip %q", req.DriverID, d.tripID)
	case time.Since(d.seen) > StaleAfter:
		return nil, switchboard.Errorf(switchboard.Aborted, "drivers: driver %q has not reported for %s", req.DriverID, time.Since(d.seen).Round(time.Second))
	default:
		d.tripID = req.TripID
	}
	return &contract.AssignDriverReply{Position: d.pos}, nil
}

func (f *fleet) release(_ context.Context, req *contract.ReleaseDriverRequest) (*contract.ReleaseDriverReply, error) {
	if err := check.Required("tripId", req.TripID); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if req.DriverID == "" {
		// Rare (clean-up after a timed-out match), so a scan will do.
		for _, d := range f.drivers {
			if d.tripID == req.TripID {
				d.tripID = ""
				return &contract.ReleaseDriverReply{Released: true}, nil
			}
		}
		return &contract.ReleaseDriverReply{Released: false}, nil
	}
	d := f.drivers[req.DriverID]
	if d == nil {
		return nil, switchboard.Errorf(switchboard.NotFound, "drivers: no driver %q is online", req.DriverID)
	}
	if d.tripID != req.TripID {
		return &contract.ReleaseDriverReply{Released: false}, nil
	}
	d.tripID = ""
	return &contract.ReleaseDriverReply{Released: true}, nil
}
