package ridehail_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/examples/ridehail"
	"github.com/switchboard-dev/switchboard/examples/ridehail/contract"
	"github.com/switchboard-dev/switchboard/examples/ridehail/customers"
	"github.com/switchboard-dev/switchboard/examples/ridehail/dispatch"
	"github.com/switchboard-dev/switchboard/examples/ridehail/drivers"
	"github.com/switchboard-dev/switchboard/examples/ridehail/geo"
	"github.com/switchboard-dev/switchboard/examples/ridehail/internal/ridetest"
	"github.com/switchboard-dev/switchboard/examples/ridehail/payments"
	"github.com/switchboard-dev/switchboard/examples/ridehail/pricing"
	"github.com/switchboard-dev/switchboard/examples/ridehail/proto/ridehailpb"
	"github.com/switchboard-dev/switchboard/examples/ridehail/trips"
	"github.com/switchboard-dev/switchboard/wire"
)

var (
	dam     = geo.Point{Lat: 52.3731, Lng: 4.8926} // Dam Square, Amsterdam
	museums = geo.Point{Lat: 52.3389, Lng: 4.8730} // Amsterdam Zuid, about 4 km south
)

// platform starts all services on a fresh embedded bus and returns a client.
func platform(t *testing.T) (*switchboard.Client, *bus.Conn) {
	t.Helper()
	conn := ridetest.Bus(t)
	ridetest.Start(t, conn, ridehail.Services(ridetest.Logger(t))...)
	return ridetest.Client(t, conn), conn
}

// driverAt brings a driver online at p.
func driverAt(t *testing.T, c switchboard.Caller, id string, p geo.Point) {
	t.Helper()
	if _, err := contract.ReportPosition.Call(ridetest.Context(t), c, &contract.ReportPositionRequest{DriverID: id, Position: p}); err != nil {
		t.Fatalf("report position of %s: %v", id, err)
	}
}

// available returns the ids of available drivers near p.
func available(t *testing.T, c switchboard.Caller, p geo.Point) []string {
	t.Helper()
	rsp, err := contract.NearbyDrivers.Call(ridetest.Context(t), c, &contract.NearbyRequest{Near: p, RadiusKM: 50, Limit: 100})
	if err != nil {
		t.Fatalf("nearby drivers: %v", err)
	}
	var ids []string
	for _, d := range rsp.Drivers {
		ids = append(ids, d.DriverID)
	}
	return ids
}

func TestTripFromRequestToPayment(t *testing.T) {
	c, _ := platform(t)
	ctx := ridetest.Context(t)
	driverAt(t, c, "far", geo.Offset(dam, 2, 0))
	driverAt(t, c, "near", geo.Offset(dam, 0.1, 0.1))
	driverAt(t, c, "middle", geo.Offset(dam, -1, 0))

	trip, err := contract.RequestTrip.Call(ctx, c, &ridehailpb.RequestTripRequest{
		CustomerId: "ada", Pickup: contract.LatLng(dam), Dropoff: contract.LatLng(museums),
	})
	if err != nil {
		t.Fatalf("request trip: %v", err)
	}
	t.Logf("trip: %v", trip)
	if trip.GetDriverId() != "near" {
		t.Errorf("driver = %q, want the nearest, %q", trip.GetDriverId(), "near")
	}
	if trip.GetStatus() != ridehailpb.TripStatus_TRIP_STATUS_ASSIGNED {
		t.Errorf("status = %v, want ASSIGNED", trip.GetStatus())
	}
	wantFare := pricing.Fare(geo.DistanceKM(dam, museums), geo.DistanceKM(dam, museums)/pricing.SpeedKMH*60, 1)
	if wantFare.AmountCents <= pricing.MinimumCents {
		t.Fatalf("the test ride is too short to check the tariff: %+v", wantFare)
	}
	if trip.GetFare().GetAmountCents() != wantFare.AmountCents || trip.GetFare().GetCurrency() != "EUR" {
		t.Errorf("fare = %v, want %+v", trip.GetFare(), wantFare)
	}
	if trip.GetDriverEtaSeconds() <= 0 || trip.GetRequestedAt() == nil || !strings.HasPrefix(trip.GetTripId(), "trip-") {
		t.Errorf("trip lacks an ETA, a request time or an id: %v", trip)
	}
	if got := available(t, c, dam); strings.Contains(strings.Join(got, ","), "near") {
		t.Errorf("the assigned driver is still offered for trips: available = %v", got)
	}

	got, err := contract.GetTrip.Call(ctx, c, &ridehailpb.GetTripRequest{TripId: trip.GetTripId()})
	if err != nil || !proto.Equal(got, trip) {
		t.Errorf("get_trip = %v, %v; want the trip as requested", got, err)
	}
	// Any endpoint can be called with JSON, protobuf ones included.
	raw, err := c.CallJSON(ctx, contract.TripsService, "get_trip", []byte(`{"tripId":"`+trip.GetTripId()+`"}`))
	if err != nil || !strings.Contains(string(raw.Body), `"driverId":"near"`) {
		t.Errorf("get_trip with JSON = %v, %v", raw, err)
	}

	done, err := contract.CompleteTrip.Call(ctx, c, &ridehailpb.CompleteTripRequest{TripId: trip.GetTripId()})
	if err != nil {
		t.Fatalf("complete trip: %v", err)
	}
	if done.GetStatus() != ridehailpb.TripStatus_TRIP_STATUS_COMPLETED || done.GetCompletedAt() == nil {
		t.Errorf("completed trip = %v, want status COMPLETED and a completion time", done)
	}
	if got := available(t, c, dam); !strings.Contains(strings.Join(got, ","), "near") {
		t.Errorf("the driver is not free after the trip: available = %v", got)
	}
	again, err := contract.CompleteTrip.Call(ctx, c, &ridehailpb.CompleteTripRequest{TripId: trip.GetTripId()})
	if err != nil || !proto.Equal(again, done) {
		t.Errorf("completing again = %v, %v; want the completed trip unchanged", again, err)
	}

	var pay *contract.Payment
	ridetest.Await(t, "payments charges the completed trip", func(ctx context.Context) (err error) {
		pay, err = contract.GetPayment.Call(ctx, c, &contract.GetPaymentRequest{TripID: trip.GetTripId()})
		return err
	})
	if pay.Amount.AmountCents != trip.GetFare().GetAmountCents() || pay.CustomerID != "ada" || pay.DriverID != "near" {
		t.Errorf("payment = %+v, want the fare of %v charged to ada for driver near", pay, trip.GetFare())
	}
	if pay.EventID != contract.TripCompletedID(trip.GetTripId()) {
		t.Errorf("payment event id = %q, want %q", pay.EventID, contract.TripCompletedID(trip.GetTripId()))
	}
	bal, err := contract.Balance.Call(ctx, c, &contract.BalanceRequest{CustomerID: "ada"})
	if err != nil || bal.Charged.AmountCents != trip.GetFare().GetAmountCents() || bal.Payments != 1 {
		t.Errorf("balance of ada = %+v, %v; want one payment of %d", bal, err, trip.GetFare().GetAmountCents())
	}
}

// barrier proves calls run concurrently without measuring time: each call
// that arrives waits until all the calls it expects have arrived. Calls made
// one after the other never get past it; the first one gives up after wait.
type barrier struct {
	want []string
	wait time.Duration

	mu      sync.Mutex
	arrived map[string]bool
	all     chan struct{}
}

func newBarrier(wait time.Duration, want ...string) *barrier {
	return &barrier{want: want, wait: wait, arrived: map[string]bool{}, all: make(chan struct{})}
}

// at returns server middleware that stops calls of endpoint at the barrier.
func (b *barrier) at(endpoint string) switchboard.ServiceOption {
	return switchboard.WithMiddleware(func(next switchboard.Handler) switchboard.Handler {
		return func(ctx context.Context, call *switchboard.Call) (any, error) {
			if call.Endpoint == endpoint {
				if err := b.arrive(ctx, call.Service+"."+call.Endpoint); err != nil {
					return nil, err
				}
			}
			return next(ctx, call)
		}
	})
}

func (b *barrier) arrive(ctx context.Context, name string) error {
	b.mu.Lock()
	b.arrived[name] = true
	if len(b.arrived) == len(b.want) {
		close(b.all)
	}
	b.mu.Unlock()
	timer := time.NewTimer(b.wait)
	defer timer.Stop()
	select {
	case <-b.all:
		return nil
	case <-ctx.Done():
	case <-timer.C:
	}
	return switchboard.Errorf(switchboard.Aborted, "barrier: %s waited for %v in vain: only %v were in flight", name, b.want, b.seen())
}

func (b *barrier) seen() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var s []string
	for _, w := range b.want {
		if b.arrived[w] {
			s = append(s, w)
		}
	}
	return s
}

func TestRequestTripCallsCustomersPricingAndDispatchInParallel(t *testing.T) {
	b := newBarrier(ridetest.Timeout/2, "customers.get_customer", "pricing.quote", "dispatch.match")
	log := ridetest.Logger(t)
	conn := ridetest.Bus(t)
	ridetest.Start(t, conn,
		customers.New(log, b.at("get_customer")),
		drivers.New(log),
		pricing.New(log, b.at("quote")),
		dispatch.New(log, b.at("match")),
		trips.New(log),
		payments.New(log),
	)
	c := ridetest.Client(t, conn)
	driverAt(t, c, "d1", dam)
	trip, err := contract.RequestTrip.Call(ridetest.Context(t), c, &ridehailpb.RequestTripRequest{
		CustomerId: "grace", Pickup: contract.LatLng(dam), Dropoff: contract.LatLng(museums),
	})
	if err != nil {
		t.Fatalf("request_trip did not have its three calls in flight at once: %v", err)
	}
	if trip.GetDriverId() != "d1" || trip.GetFare().GetAmountCents() <= 0 {
		t.Errorf("trip = %v, want driver d1 and a fare", trip)
	}

	t.Run("the barrier stops calls made one after the other", func(t *testing.T) {
		seq := newBarrier(50*time.Millisecond, "customers.get_customer", "pricing.quote")
		conn := ridetest.Bus(t)
		ridetest.Start(t, conn, customers.New(log, seq.at("get_customer")), pricing.New(log, seq.at("quote")))
		c := ridetest.Client(t, conn)
		_, err := contract.GetCustomer.Call(ridetest.Context(t), c, &contract.GetCustomerRequest{CustomerID: "grace"})
		if switchboard.ErrorCode(err) != switchboard.Aborted || !strings.Contains(err.Error(), "in vain") {
			t.Fatalf("a lone call passed the barrier: %v", err)
		}
	})
}

func TestRequestTripRejectsBadInputNamingTheField(t *testing.T) {
	c, _ := platform(t)
	driverAt(t, c, "d1", dam)
	ll := contract.LatLng
	tests := []struct {
		name  string
		req   *ridehailpb.RequestTripRequest
		field string
	}{
		{"a missing customer", &ridehailpb.RequestTripRequest{Pickup: ll(dam), Dropoff: ll(museums)}, "customerId"},
		{"a missing pickup", &ridehailpb.RequestTripRequest{CustomerId: "ada", Dropoff: ll(museums)}, "pickup"},
		{"a latitude beyond the pole", &ridehailpb.RequestTripRequest{CustomerId: "ada", Pickup: &ridehailpb.LatLng{Lat: 95, Lng: 4.9}, Dropoff: ll(museums)}, "pickup.lat"},
		{"a longitude off the map", &ridehailpb.RequestTripRequest{CustomerId: "ada", Pickup: ll(dam), Dropoff: &ridehailpb.LatLng{Lat: 52, Lng: -200}}, "dropoff.lng"},
		// Checked by pricing, behind the fan-out: the field survives the hop.
		{"a dropoff at the pickup", &ridehailpb.RequestTripRequest{CustomerId: "ada", Pickup: ll(dam), Dropoff: ll(dam)}, "dropoff"},
	}
	for _, tt := range tests {
		t.Run(tt.name+" is InvalidArgument naming "+tt.field, func(t *testing.T) {
			_, err := contract.RequestTrip.Call(ridetest.Context(t), c, tt.req)
			var e *switchboard.Error
			if !errors.As(err, &e) || e.Code != switchboard.InvalidArgument {
				t.Fatalf("error = %v, want InvalidArgument", err)
			}
			if e.Details["field"] != tt.field || !strings.Contains(e.Message, tt.field+":") {
				t.Errorf("error %q (field detail %q) does not name %q", e.Message, e.Details["field"], tt.field)
			}
		})
	}
	if got := available(t, c, dam); len(got) != 1 {
		t.Errorf("after the rejected requests, available drivers = %v, want d1 free", got)
	}

	t.Run("a malformed JSON body is InvalidArgument", func(t *testing.T) {
		_, err := c.CallJSON(ridetest.Context(t), contract.TripsService, "request_trip", []byte(`{"customerId": 7}`))
		if switchboard.ErrorCode(err) != switchboard.InvalidArgument {
			t.Errorf("error = %v, want InvalidArgument", err)
		}
	})
}

func TestUnknownThingsAreNotFound(t *testing.T) {
	c, _ := platform(t)
	ctx := ridetest.Context(t)
	driverAt(t, c, "d1", dam)
	t.Run("get_trip of an unknown trip", func(t *testing.T) {
		_, err := contract.GetTrip.Call(ctx, c, &ridehailpb.GetTripRequest{TripId: "trip-nope"})
		if switchboard.ErrorCode(err) != switchboard.NotFound || !strings.Contains(err.Error(), "trip-nope") {
			t.Errorf("error = %v, want NotFound naming the trip", err)
		}
	})
	t.Run("complete_trip of an unknown trip", func(t *testing.T) {
		_, err := contract.CompleteTrip.Call(ctx, c, &ridehailpb.CompleteTripRequest{TripId: "trip-nope"})
		if switchboard.ErrorCode(err) != switchboard.NotFound {
			t.Errorf("error = %v, want NotFound", err)
		}
	})
	t.Run("request_trip for an unknown customer releases the driver it matched", func(t *testing.T) {
		_, err := contract.RequestTrip.Call(ctx, c, &ridehailpb.RequestTripRequest{
			CustomerId: "mallory", Pickup: contract.LatLng(dam), Dropoff: contract.LatLng(museums),
		})
		if switchboard.ErrorCode(err) != switchboard.NotFound || !strings.Contains(err.Error(), "mallory") {
			t.Fatalf("error = %v, want NotFound naming the customer", err)
		}
		// The match ran in parallel with the failed customer lookup; the
		// driver it claimed must be free again.
		if got := available(t, c, dam); len(got) != 1 {
			t.Errorf("available drivers = %v, want d1 free again", got)
		}
	})
	t.Run("get_payment of a trip not charged", func(t *testing.T) {
		_, err := contract.GetPayment.Call(ctx, c, &contract.GetPaymentRequest{TripID: "trip-nope"})
		if switchboard.ErrorCode(err) != switchboard.NotFound {
			t.Errorf("error = %v, want NotFound", err)
		}
	})
	t.Run("no driver near the pickup is FailedPrecondition", func(t *testing.T) {
		faraway := geo.Point{Lat: -33.86, Lng: 151.21}
		_, err := contract.RequestTrip.Call(ctx, c, &ridehailpb.RequestTripRequest{
			CustomerId: "ada", Pickup: contract.LatLng(faraway), Dropoff: contract.LatLng(geo.Offset(faraway, 2, 2)),
		})
		if switchboard.ErrorCode(err) != switchboard.FailedPrecondition {
			t.Errorf("error = %v, want FailedPrecondition", err)
		}
	})
}

func TestPaymentsChargesOncePerEventEvenWhenDeliveredTwice(t *testing.T) {
	conn := ridetest.Bus(t)
	ridetest.Start(t, conn, payments.New(ridetest.Logger(t)))
	c := ridetest.Client(t, conn)
	ctx := ridetest.Context(t)
	ev := &ridehailpb.TripCompleted{TripId: "trip-1", CustomerId: "ada", DriverId: "d1", Fare: &ridehailpb.Money{AmountCents: 1250, Currency: "EUR"}}

	if err := contract.TripCompleted.Publish(ctx, c, ev, switchboard.WithEventID("evt-1")); err != nil {
		t.Fatal(err)
	}
	// The same CloudEvent again, as a broker delivers it after a lost ack or
	// a re-publish outside its de-duplication window: the bus message id
	// differs (so NATS does not drop it), the event id is the same.
	body, err := proto.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	h := bus.Header{}
	(&wire.Event{ID: "evt-1", Source: "/test", Type: contract.TripCompleted.Name(), Time: time.Now(), DataContentType: wire.ContentTypeProto}).Encode(h)
	if err := conn.Publish(ctx, &bus.Message{Subject: contract.TripCompleted.Name(), Header: h, Body: body, ID: "redelivery-of-evt-1"}); err != nil {
		t.Fatal(err)
	}
	// A different event for another trip of the same customer is charged.
	ev2 := proto.CloneOf(ev)
	ev2.TripId = "trip-2"
	if err := contract.TripCompleted.Publish(ctx, c, ev2, switchboard.WithEventID("evt-2")); err != nil {
		t.Fatal(err)
	}

	var st *contract.PaymentStatsReply
	ridetest.Await(t, "payments sees all three deliveries", func(ctx context.Context) (err error) {
		st, err = contract.PaymentStats.Call(ctx, c, &contract.PaymentStatsRequest{})
		if err == nil && st.Payments+st.Duplicates < 3 {
			err = fmt.Errorf("stats %+v", st)
		}
		return err
	})
	t.Logf("ledger: published 3 (2 events, 1 repeated), charged %d, duplicates ignored %d", st.Payments, st.Duplicates)
	if st.Payments != 2 || st.Duplicates != 1 || st.ChargedCents != 2500 {
		t.Errorf("stats = %+v, want 2 payments of 1250 and 1 duplicate ignored", st)
	}
	bal, err := contract.Balance.Call(ctx, c, &contract.BalanceRequest{CustomerID: "ada"})
	if err != nil || bal.Charged.AmountCents != 2500 || bal.Payments != 2 {
		t.Errorf("balance = %+v, %v; want 2 payments, 2500 cents", bal, err)
	}
}

func TestServicesDescribeThemselves(t *testing.T) {
	c, _ := platform(t)
	insts, err := c.Discovery().List(ridetest.Context(t), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	for _, s := range switchboard.Summarize(insts) {
		got[s.Name] = s.Endpoints
	}
	want := map[string][]string{
		"customers": {"get_customer", "register"},
		"dispatch":  {"match", "release"},
		"drivers":   {"assign", "nearby", "release", "report_position"},
		"payments":  {"balance", "get_payment", "stats"},
		"pricing":   {"quote"},
		"trips":     {"complete_trip", "get_trip", "request_trip"},
	}
	gj, _ := json.Marshal(got)
	wj, _ := json.Marshal(want)
	if string(gj) != string(wj) {
		t.Errorf("services and endpoints:\n got %s\nwant %s", gj, wj)
	}
}
