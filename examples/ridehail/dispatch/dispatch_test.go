package dispatch_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/examples/ridehail/contract"
	"github.com/switchboard-dev/switchboard/examples/ridehail/dispatch"
	"github.com/switchboard-dev/switchboard/examples/ridehail/drivers"
	"github.com/switchboard-dev/switchboard/examples/ridehail/geo"
	"github.com/switchboard-dev/switchboard/examples/ridehail/internal/ridetest"
	"github.com/switchboard-dev/switchboard/examples/ridehail/proto/ridehailpb"
)

var pickup = geo.Point{Lat: 52.37, Lng: 4.89}

// stealFirstAssign is drivers middleware that, on the first assign, gives
// the driver to another trip just before the assign runs: the race two
// dispatchers have when both pick the same nearest driver.
func stealFirstAssign(stolen *atomic.Bool) switchboard.ServiceOption {
	return switchboard.WithMiddleware(func(next switchboard.Handler) switchboard.Handler {
		return func(ctx context.Context, call *switchboard.Call) (any, error) {
			if call.Endpoint == "assign" && stolen.CompareAndSwap(false, true) {
				req := call.Request.(*contract.AssignDriverRequest)
				other := *call
				other.Request = &contract.AssignDriverRequest{DriverID: req.DriverID, TripID: "someone-elses-trip"}
				if _, err := next(ctx, &other); err != nil {
					return nil, err
				}
			}
			return next(ctx, call)
		}
	})
}

func TestMatchTakesTheNextDriverWhenTheNearestIsTakenMeanwhile(t *testing.T) {
	var stolen atomic.Bool
	conn := ridetest.Bus(t)
	log := ridetest.Logger(t)
	ridetest.Start(t, conn, drivers.New(log, stealFirstAssign(&stolen)), dispatch.New(log))
	c := ridetest.Client(t, conn)
	ctx := ridetest.Context(t)
	for id, km := range map[string]float64{"nearest": 0.2, "second": 1, "third": 2} {
		if _, err := contract.ReportPosition.Call(ctx, c, &contract.ReportPositionRequest{DriverID: id, Position: geo.Offset(pickup, km, 0)}); err != nil {
			t.Fatal(err)
		}
	}
	m, err := contract.Match.Call(ctx, c, &ridehailpb.MatchRequest{TripId: "t1", Pickup: contract.LatLng(pickup)})
	if err != nil {
		t.Fatal(err)
	}
	if !stolen.Load() {
		t.Fatal("the nearest driver was never taken: the race was not staged")
	}
	if m.GetDriverId() != "second" || m.GetEtaSeconds() < 60 || m.GetDistanceKm() < 0.9 {
		t.Errorf("match = %v, want the second nearest driver about 1 km away", m)
	}

	t.Run("with no free driver left nearby it is FailedPrecondition", func(t *testing.T) {
		// "nearest" went to someone else's trip, "second" to t1; t2 takes "third".
		if m, err := contract.Match.Call(ctx, c, &ridehailpb.MatchRequest{TripId: "t2", Pickup: contract.LatLng(pickup)}); err != nil || m.GetDriverId() != "third" {
			t.Fatalf("match t2 = %v, %v; want third", m, err)
		}
		_, err := contract.Match.Call(ctx, c, &ridehailpb.MatchRequest{TripId: "t3", Pickup: contract.LatLng(pickup), RadiusKm: 1.5})
		if switchboard.ErrorCode(err) != switchboard.FailedPrecondition {
			t.Errorf("error = %v, want FailedPrecondition", err)
		}
	})

	t.Run("release frees the driver for the next match", func(t *testing.T) {
		rel, err := contract.ReleaseMatch.Call(ctx, c, &ridehailpb.ReleaseRequest{TripId: "t1", DriverId: "second"})
		if err != nil || !rel.GetReleased() {
			t.Fatalf("release = %v, %v", rel, err)
		}
		m, err := contract.Match.Call(ctx, c, &ridehailpb.MatchRequest{TripId: "t4", Pickup: contract.LatLng(pickup), RadiusKm: 1.5})
		if err != nil || m.GetDriverId() != "second" {
			t.Errorf("match after release = %v, %v; want the released driver", m, err)
		}
	})

	t.Run("a match without a pickup names the field", func(t *testing.T) {
		_, err := contract.Match.Call(ctx, c, &ridehailpb.MatchRequest{TripId: "t5"})
		var e *switchboard.Error
		if switchboard.ErrorCode(err) != switchboard.InvalidArgument || !errors.As(err, &e) || e.Details["field"] != "pickup" {
			t.Errorf("error = %v, want InvalidArgument naming pickup", err)
		}
	})
}
