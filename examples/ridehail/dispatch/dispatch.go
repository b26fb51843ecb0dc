// Package dispatch is the dispatch service of the ride-hailing example: it
// matches a trip with the nearest available driver. It keeps no state of its
// own: it asks the drivers service who is free near the pickup and claims
// the nearest one, moving on to the next when another match took them first.
//
// Its contract (protobuf) is in package contract: Match and ReleaseMatch.
package dispatch

import (
	"context"
	"log/slog"
	"math"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/examples/ridehail/contract"
	"github.com/switchboard-dev/switchboard/examples/ridehail/geo"
	"github.com/switchboard-dev/switchboard/examples/ridehail/internal/check"
	"github.com/switchboard-dev/switchboard/examples/ridehail/proto/ridehailpb"
)

// Version is the service version.
const Version = "1.0.0"

// Matching parameters.
const (
	DefaultRadiusKM = 5.0
	MaxRadiusKM     = 50.0
	// Candidates is how many nearby drivers a match tries to claim before
	// giving up.
	Candidates = 5
	// PickupSpeedKMH is the speed assumed for a driver's way to the pickup.
	PickupSpeedKMH = 25.0
)

type dispatcher struct {
	svc    *switchboard.Service
	logger *slog.Logger
}

// New returns the dispatch service. A nil logger means slog.Default(); opts
// are applied after the service's own defaults (use them for middleware).
func New(logger *slog.Logger, opts ...switchboard.ServiceOption) *switchboard.Service {
	if logger == nil {
		logger = slog.Default()
	}
	svc := switchboard.NewService(contract.DispatchService, Version, append([]switchboard.ServiceOption{
		switchboard.WithDescription("Matches trips with the nearest free driver"),
		switchboard.WithLogger(logger),
	}, opts...)...)
	d := &dispatcher{svc: svc, logger: logger.With("service", contract.DispatchService)}
	contract.Match.Handle(svc, d.match, switchboard.Describe("Assign the nearest available driver to a trip"))
	contract.ReleaseMatch.Handle(svc, d.release, switchboard.Describe("Free the driver assigned to a trip"))
	return svc
}

func (d *dispatcher) match(ctx context.Context, req *ridehailpb.MatchRequest) (*ridehailpb.MatchReply, error) {
	pickup := contract.Point(req.GetPickup())
	if err := check.First(check.Required("tripId", req.GetTripId()), geo.Validate("pickup", pickup)); err != nil {
		return nil, err
	}
	radius := req.GetRadiusKm()
	switch {
	case radius == 0:
		radius = DefaultRadiusKM
	case !(radius > 0 && radius <= MaxRadiusKM):
		return nil, check.Invalid("radiusKm", "%v is not between 0 and %v km", radius, MaxRadiusKM)
	}
	near, err := contract.NearbyDrivers.Call(ctx, d.svc, &contract.NearbyRequest{Near: pickup, RadiusKM: radius, Limit: Candidates})
	if err != nil {
		return nil, check.Relay("dispatch: match: nearby drivers", err)
	}
	for _, c := range near.Drivers {
		got, err := contract.AssignDriver.Call(ctx, d.svc, &contract.AssignDriverRequest{DriverID: c.DriverID, TripID: req.GetTripId()})
		switch switchboard.ErrorCode(err) {
		case switchboard.OK:
			dist := geo.DistanceKM(got.Position, pickup)
			return &ridehailpb.MatchReply{
				DriverId:       c.DriverID,
				DriverPosition: contract.LatLng(got.Position),
				DistanceKm:     math.Round(dist*1000) / 1000,
				EtaSeconds:     int32(math.Max(60, math.Round(dist/PickupSpeedKMH*3600))),
			}, nil
		case switchboard.Aborted, switchboard.NotFound:
			// Taken by another match or gone since nearby answered: next.
			d.logger.Debug("driver not assignable", "trip", req.GetTripId(), "driver", c.DriverID, "err", err)
		default:
			return nil, check.Relay("dispatch: match: assign driver", err)
		}
	}
	return nil, switchboard.Errorf(switchboard.FailedPrecondition, "dispatch: no available driver within %v km of the pickup", radius)
}

func (d *dispatcher) release(ctx context.Context, req *ridehailpb.ReleaseRequest) (*ridehailpb.ReleaseReply, error) {
	if err := check.Required("tripId", req.GetTripId()); err != nil {
		return nil, err
	}
	rsp, err := contract.ReleaseDriver.Call(ctx, d.svc, &contract.ReleaseDriverRequest{DriverID: req.GetDriverId(), TripID: req.GetTripId()})
	if err != nil {
		return nil, check.Relay("dispatch: release", err)
	}
	return &ridehailpb.ReleaseReply{Released: rsp.Released}, nil
}
