package workload_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/examples/ridehail"
	"github.com/switchboard-dev/switchboard/examples/ridehail/contract"
	"github.com/switchboard-dev/switchboard/examples/ridehail/geo"
	"github.com/switchboard-dev/switchboard/examples/ridehail/internal/ridetest"
	"github.com/switchboard-dev/switchboard/examples/ridehail/proto/ridehailpb"
	"github.com/switchboard-dev/switchboard/examples/ridehail/workload"
)

func TestWorkloadRidesUntilStoppedAndLeavesNothingBehind(t *testing.T) {
	conn := ridetest.Bus(t)
	ridetest.Start(t, conn, ridehail.Services(ridetest.Logger(t))...)
	c := ridetest.Client(t, conn)

	opts := workload.Options{
		Rate: 50, Drivers: 40, Customers: 5,
		RideTime: 20 * time.Millisecond, ReportEvery: 100 * time.Millisecond,
		Logger: ridetest.Logger(t),
	}
	g := workload.New(c, opts)
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()

	ridetest.Await(t, "the workload completes 50 trips", func(context.Context) error {
		if s := g.Stats(); s.Completed < 50 {
			return fmt.Errorf("stats so far %+v", s)
		}
		return nil
	})
	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(ridetest.Timeout):
		t.Fatal("Run did not return after its context ended")
	}

	s := g.Stats()
	pay := &contract.PaymentStatsReply{}
	ridetest.Await(t, "payments charges every completed trip", func(ctx context.Context) (err error) {
		pay, err = contract.PaymentStats.Call(ctx, c, &contract.PaymentStatsRequest{})
		if err == nil && pay.Payments < s.Completed {
			err = fmt.Errorf("%d charged of %d completed", pay.Payments, s.Completed)
		}
		return err
	})
	t.Logf("ledger: requested %d, assigned %d, completed %d, charged %d, duplicates %d, lost %d; reports %d, errors %d %v, skipped %d, in %v",
		s.Requested, s.Assigned, s.Completed, pay.Payments, pay.Duplicates, s.Completed-pay.Payments,
		s.Reports, s.Errors, s.ErrorsByCode, s.Skipped, s.Elapsed.Round(time.Millisecond))

	// No free driver near a pickup is a business outcome, not a fault: it
	// happens when the drivers near a pickup at the edge of the area are all
	// busy. Anything else is a fault.
	if faults := s.Errors - s.ErrorsByCode["FailedPrecondition"]; faults != 0 || s.Recovered != 0 {
		t.Errorf("%d calls failed and %d orphaned trips were recovered, last error: %s", faults, s.Recovered, s.LastError)
	}
	if s.Requested != s.Assigned+s.Errors {
		t.Errorf("requested %d trips, assigned %d, %d errors: some requests have no outcome", s.Requested, s.Assigned, s.Errors)
	}
	if s.InFlight != 0 {
		t.Errorf("%d trips still in flight after Run returned", s.InFlight)
	}
	if s.Completed != s.Assigned {
		t.Errorf("completed %d of %d assigned trips: stopping must complete rides in progress", s.Completed, s.Assigned)
	}
	if pay.Payments != s.Completed || pay.Duplicates != 0 {
		t.Errorf("charged %d (duplicates %d) for %d completed trips", pay.Payments, pay.Duplicates, s.Completed)
	}
	if s.Reports < int64(opts.Drivers) {
		t.Errorf("%d position reports, want at least one per driver (%d)", s.Reports, opts.Drivers)
	}
	// Every driver is free again.
	free := 0
	for i := range opts.Drivers {
		rsp, err := contract.ReportPosition.Call(ridetest.Context(t), c, &contract.ReportPositionRequest{DriverID: workload.DriverID(i), Position: geo.Point{Lat: 52.37, Lng: 4.9}})
		if err != nil {
			t.Fatal(err)
		}
		if rsp.Status == contract.StatusAvailable {
			free++
		}
	}
	if free != opts.Drivers {
		t.Errorf("%d of %d drivers are free after the workload stopped", free, opts.Drivers)
	}
}

func TestRobotDriversCompleteTripsNobodyRides(t *testing.T) {
	conn := ridetest.Bus(t)
	ridetest.Start(t, conn, ridehail.Services(ridetest.Logger(t))...)
	c := ridetest.Client(t, conn)
	// One driver, and trips so rare that the generator itself makes none.
	g := workload.New(c, workload.Options{
		Rate: 0.0001, Drivers: 1, Customers: 1, RideTime: 10 * time.Millisecond,
		ReportEvery: 20 * time.Millisecond, CallTimeout: time.Second, Logger: ridetest.Logger(t),
	})
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	defer func() { stop(); <-done }()
	ridetest.Await(t, "the robot driver reports", func(context.Context) error {
		if g.Stats().Reports == 0 {
			return fmt.Errorf("no report yet")
		}
		return nil
	})

	// A trip the workload knows nothing of, as when its request timed out
	// after the trip was made.
	near, err := contract.NearbyDrivers.Call(ridetest.Context(t), c, &contract.NearbyRequest{Near: geo.Point{Lat: 52.3676, Lng: 4.9041}})
	if err != nil || len(near.Drivers) != 1 {
		t.Fatalf("nearby = %+v, %v; want the robot driver", near, err)
	}
	pickup := near.Drivers[0].Position
	trip, err := contract.RequestTrip.Call(ridetest.Context(t), c, &ridehailpb.RequestTripRequest{
		CustomerId: "ada", Pickup: contract.LatLng(pickup), Dropoff: contract.LatLng(geo.Offset(pickup, 1, 1)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ridetest.Await(t, "the robot driver completes the orphaned trip", func(ctx context.Context) error {
		got, err := contract.GetTrip.Call(ctx, c, &ridehailpb.GetTripRequest{TripId: trip.GetTripId()})
		if err == nil && got.GetStatus() != ridehailpb.TripStatus_TRIP_STATUS_COMPLETED {
			err = fmt.Errorf("trip status %v", got.GetStatus())
		}
		return err
	})
	// The trip is completed before the robot driver's CompleteTrip call
	// returns and counts it.
	ridetest.Await(t, "the workload counts the recovered trip", func(context.Context) error {
		if g.Stats().Recovered == 0 {
			return fmt.Errorf("not counted yet")
		}
		return nil
	})
	if s := g.Stats(); s.Recovered != 1 {
		t.Errorf("stats = %+v, want 1 recovered trip", s)
	}
}

func TestRunReturnsTheStatsWhenItsContextEnds(t *testing.T) {
	conn := ridetest.Bus(t)
	ridetest.Start(t, conn, ridehail.Services(ridetest.Logger(t))...)
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // already over: Run sets up nothing and returns at once
	s := workload.Run(ctx, ridetest.Client(t, conn), 10, ridetest.Logger(t))
	if s.Requested != 0 || s.InFlight != 0 {
		t.Errorf("stats = %+v, want nothing done", s)
	}
}
