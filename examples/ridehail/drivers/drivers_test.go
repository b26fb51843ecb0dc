package drivers_test

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/examples/ridehail/contract"
	"github.com/switchboard-dev/switchboard/examples/ridehail/drivers"
	"github.com/switchboard-dev/switchboard/examples/ridehail/geo"
	"github.com/switchboard-dev/switchboard/examples/ridehail/internal/ridetest"
)

var center = geo.Point{Lat: 52.37, Lng: 4.89}

func start(t *testing.T) *switchboard.Client {
	conn := ridetest.Bus(t)
	ridetest.Start(t, conn, drivers.New(ridetest.Logger(t)))
	return ridetest.Client(t, conn)
}

func report(t *testing.T, c *switchboard.Client, id string, p geo.Point) *contract.ReportPositionReply {
	t.Helper()
	rsp, err := contract.ReportPosition.Call(ridetest.Context(t), c, &contract.ReportPositionRequest{DriverID: id, Position: p})
	if err != nil {
		t.Fatal(err)
	}
	return rsp
}

func nearby(t *testing.T, c *switchboard.Client, req *contract.NearbyRequest) []string {
	t.Helper()
	rsp, err := contract.NearbyDrivers.Call(ridetest.Context(t), c, req)
	if err != nil {
		t.Fatal(err)
	}
	ids := []string{}
	for _, d := range rsp.Drivers {
		ids = append(ids, d.DriverID)
	}
	return ids
}

func TestNearbyListsFreeDriversNearestFirst(t *testing.T) {
	c := start(t)
	for i, km := range []float64{3, 0.5, 1, 8, 2} {
		report(t, c, fmt.Sprintf("d%d", i), geo.Offset(center, km, 0))
	}
	if got, want := nearby(t, c, &contract.NearbyRequest{Near: center}), []string{"d1", "d2", "d4", "d0"}; !slices.Equal(got, want) {
		t.Errorf("nearby within the default 5 km = %v, want %v", got, want)
	}
	if got, want := nearby(t, c, &contract.NearbyRequest{Near: center, RadiusKM: 10, Limit: 2}), []string{"d1", "d2"}; !slices.Equal(got, want) {
		t.Errorf("nearby with limit 2 = %v, want %v", got, want)
	}
	if _, err := contract.AssignDriver.Call(ridetest.Context(t), c, &contract.AssignDriverRequest{DriverID: "d1", TripID: "t1"}); err != nil {
		t.Fatal(err)
	}
	if got, want := nearby(t, c, &contract.NearbyRequest{Near: center}), []string{"d2", "d4", "d0"}; !slices.Equal(got, want) {
		t.Errorf("nearby after d1 was assigned = %v, want %v", got, want)
	}
	if rsp := report(t, c, "d1", center); rsp.Status != contract.StatusBusy || rsp.TripID != "t1" {
		t.Errorf("busy driver's report reply = %+v, want busy with t1", rsp)
	}
}

func TestADriverGoesToOneTripHoweverManyMatchesRaceForIt(t *testing.T) {
	c := start(t)
	report(t, c, "d1", center)
	const racers = 20
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		won  []string
		errs = map[switchboard.Code]int{}
	)
	for i := range racers {
		wg.Go(func() {
			trip := fmt.Sprintf("t%d", i)
			_, err := contract.AssignDriver.Call(ridetest.Context(t), c, &contract.AssignDriverRequest{DriverID: "d1", TripID: trip})
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				won = append(won, trip)
			} else {
				errs[switchboard.ErrorCode(err)]++
			}
		})
	}
	wg.Wait()
	if len(won) != 1 || errs[switchboard.Aborted] != racers-1 {
		t.Fatalf("winners %v, errors by code %v; want one winner and %d Aborted", won, errs, racers-1)
	}
	// The winner may retry its assign; it stays its trip.
	if _, err := contract.AssignDriver.Call(ridetest.Context(t), c, &contract.AssignDriverRequest{DriverID: "d1", TripID: won[0]}); err != nil {
		t.Errorf("a retried assign by the winner failed: %v", err)
	}
}

func TestReleaseFreesOnlyTheDriversOwnTrip(t *testing.T) {
	c := start(t)
	ctx := ridetest.Context(t)
	report(t, c, "d1", center)
	report(t, c, "d2", center)
	for _, a := range []contract.AssignDriverRequest{{DriverID: "d1", TripID: "t1"}, {DriverID: "d2", TripID: "t2"}} {
		if _, err := contract.AssignDriver.Call(ctx, c, &a); err != nil {
			t.Fatal(err)
		}
	}
	steps := []struct {
		name string
		req  contract.ReleaseDriverRequest
		want bool
	}{
		{"releasing d1 from another trip changes nothing", contract.ReleaseDriverRequest{DriverID: "d1", TripID: "t2"}, false},
		{"releasing d1 from its trip frees it", contract.ReleaseDriverRequest{DriverID: "d1", TripID: "t1"}, true},
		{"releasing it again changes nothing", contract.ReleaseDriverRequest{DriverID: "d1", TripID: "t1"}, false},
		{"releasing by trip alone frees whoever is on it", contract.ReleaseDriverRequest{TripID: "t2"}, true},
		{"releasing a trip nobody is on changes nothing", contract.ReleaseDriverRequest{TripID: "t3"}, false},
	}
	for _, s := range steps {
		rsp, err := contract.ReleaseDriver.Call(ctx, c, &s.req)
		if err != nil || rsp.Released != s.want {
			t.Errorf("%s: released = %+v, %v; want %v", s.name, rsp, err, s.want)
		}
	}
	if got := nearby(t, c, &contract.NearbyRequest{Near: center}); len(got) != 2 {
		t.Errorf("free drivers = %v, want both", got)
	}
}

func TestBadInputIsInvalidArgumentNamingTheField(t *testing.T) {
	c := start(t)
	report(t, c, "d1", center)
	ctx := ridetest.Context(t)
	tests := []struct {
		name  string
		call  func() error
		field string
	}{
		{"a report without a driver", func() error {
			_, err := contract.ReportPosition.Call(ctx, c, &contract.ReportPositionRequest{Position: center})
			return err
		}, "driverId"},
		{"a report without a position", func() error {
			_, err := contract.ReportPosition.Call(ctx, c, &contract.ReportPositionRequest{DriverID: "d9"})
			return err
		}, "position"},
		{"a report north of the pole", func() error {
			_, err := contract.ReportPosition.Call(ctx, c, &contract.ReportPositionRequest{DriverID: "d9", Position: geo.Point{Lat: 90.5, Lng: 1}})
			return err
		}, "position.lat"},
		{"a negative radius", func() error {
			_, err := contract.NearbyDrivers.Call(ctx, c, &contract.NearbyRequest{Near: center, RadiusKM: -1})
			return err
		}, "radiusKm"},
		{"a limit too large", func() error {
			_, err := contract.NearbyDrivers.Call(ctx, c, &contract.NearbyRequest{Near: center, Limit: drivers.MaxLimit + 1})
			return err
		}, "limit"},
		{"an assign without a trip", func() error {
			_, err := contract.AssignDriver.Call(ctx, c, &contract.AssignDriverRequest{DriverID: "d1"})
			return err
		}, "tripId"},
	}
	for _, tt := range tests {
		t.Run(tt.name+" names "+tt.field, func(t *testing.T) {
			var e *switchboard.Error
			if err := tt.call(); !errors.As(err, &e) || e.Code != switchboard.InvalidArgument || e.Details["field"] != tt.field {
				t.Errorf("error = %v (details %v), want InvalidArgument naming %s", err, e.Details, tt.field)
			}
		})
	}
	t.Run("assigning an unknown driver is NotFound", func(t *testing.T) {
		_, err := contract.AssignDriver.Call(ctx, c, &contract.AssignDriverRequest{DriverID: "ghost", TripID: "t1"})
		if switchboard.ErrorCode(err) != switchboard.NotFound {
			t.Errorf("error = %v, want NotFound", err)
		}
	})
}
