// Package trips is the trips service of the ride-hailing example and the
// front door of its domain. RequestTrip fans out to three services at once —
// customers (is this a customer?), pricing (what will it cost?) and dispatch
// (which driver?) — and waits for all three, so a request takes as long as
// the slowest of them rather than their sum. When one fails the caller gets
// that first failure, the customer and quote calls still running are
// canceled, and a driver the match claimed is released again.
//
// Trips are kept in memory (the most recent MaxTrips). Every change is also
// published as an event (trip.requested, driver.assigned, trip.completed),
// which is how payments learns that a fare is due.
//
// Its contract (protobuf) is in package contract: RequestTrip, CompleteTrip,
// GetTrip and the topics TripRequested, DriverAssigned and TripCompleted.
package trips

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/examples/ridehail/contract"
	"github.com/switchboard-dev/switchboard/examples/ridehail/geo"
	"github.com/switchboard-dev/switchboard/examples/ridehail/internal/check"
	"github.com/switchboard-dev/switchboard/examples/ridehail/internal/recent"
	"github.com/switchboard-dev/switchboard/examples/ridehail/proto/ridehailpb"
)

// Version is the service version.
const Version = "1.0.0"

// MaxTrips bounds the trips held in memory; the oldest are forgotten first.
const MaxTrips = 100_000

// compensateTimeout bounds the clean-up calls made after a request failed;
// they run even when the caller has given up.
const compensateTimeout = 5 * time.Second

type service struct {
	svc    *switchboard.Service
	logger *slog.Logger
	// trips holds immutable snapshots: a change stores a new *Trip.
	trips *recent.Map[string, *ridehailpb.Trip]
}

// New returns the trips service. A nil logger means slog.Default(); opts
// are applied after the service's own defaults (use them for middleware).
func New(logger *slog.Logger, opts ...switchboard.ServiceOption) *switchboard.Service {
	if logger == nil {
		logger = slog.Default()
	}
	svc := switchboard.NewService(contract.TripsService, Version, append([]switchboard.ServiceOption{
		switchboard.WithDescription("Requests, tracks and completes trips"),
		switchboard.WithLogger(logger),
	}, opts...)...)
	s := &service{svc: svc, logger: logger.With("service", contract.TripsService), trips: recent.New[string, *ridehailpb.Trip](MaxTrips)}
	contract.RequestTrip.Handle(svc, s.requestTrip, switchboard.Describe("Price a ride and assign a driver (customers, pricing and dispatch in parallel)"))
	contract.CompleteTrip.Handle(svc, s.completeTrip, switchboard.Describe("End a ride: publishes trip.completed and frees the driver"))
	contract.GetTrip.Handle(svc, s.getTrip, switchboard.Describe("A trip by id, or NotFound"))
	contract.TripRequested.Declare(svc)
	contract.DriverAssigned.Declare(svc)
	contract.TripCompleted.Declare(svc)
	return svc
}

func (s *service) requestTrip(ctx context.Context, req *ridehailpb.RequestTripRequest) (*ridehailpb.Trip, error) {
	pickup, dropoff := contract.Point(req.GetPickup()), contract.Point(req.GetDropoff())
	if err := check.First(
		check.Required("customerId", req.GetCustomerId()),
		geo.Validate("pickup", pickup),
		geo.Validate("dropoff", dropoff),
	); err != nil {
		return nil, err
	}
	id := "trip-" + uuid.NewString()

	// The fan-out. The first failure cancels the customer and quote calls
	// and becomes the cause of fctx, which is what the caller gets. The match
	// is not canceled: the dispatcher may claim a driver whatever we do, and
	// only its reply says which driver to release.
	fctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		wg                              sync.WaitGroup
		quote                           *contract.QuoteReply
		match                           *ridehailpb.MatchReply
		customerErr, quoteErr, matchErr error
	)
	wg.Go(func() {
		if _, customerErr = contract.GetCustomer.Call(fctx, s.svc, &contract.GetCustomerRequest{CustomerID: req.GetCustomerId()}); customerErr != nil {
			cancel(check.Relay("trips: request_trip: customer", customerErr))
		}
	})
	wg.Go(func() {
		if quote, quoteErr = contract.Quote.Call(fctx, s.svc, &contract.QuoteRequest{Pickup: pickup, Dropoff: dropoff}); quoteErr != nil {
			cancel(check.Relay("trips: request_trip: quote", quoteErr))
		}
	})
	wg.Go(func() {
		if match, matchErr = contract.Match.Call(ctx, s.svc, &ridehailpb.MatchRequest{TripId: id, Pickup: req.GetPickup()}); matchErr != nil {
			cancel(check.Relay("trips: request_trip: match", matchErr))
		}
	})
	wg.Wait()
	if customerErr != nil || quoteErr != nil || matchErr != nil {
		err := context.Cause(fctx)
		switch {
		case matchErr == nil:
			s.releaseDriver(ctx, id, match.GetDriverId(), err)
		case isTimeout(matchErr):
			// The dispatcher may have claimed a driver after we stopped
			// waiting: release whoever is on the trip.
			s.releaseDriver(ctx, id, "", err)
		}
		return nil, err
	}
	if ctx.Err() != nil {
		// The caller gave up while we waited: it will never learn of this
		// trip, so the driver must not wait for it.
		code := switchboard.DeadlineExceeded
		if errors.Is(ctx.Err(), context.Canceled) {
			code = switchboard.Canceled
		}
		err := switchboard.Errorf(code, "trips: request_trip: the call ended during the fan-out: %v", ctx.Err())
		s.releaseDriver(ctx, id, match.GetDriverId(), err)
		return nil, err
	}

	now := timestamppb.Now()
	trip := &ridehailpb.Trip{
		TripId:           id,
		CustomerId:       req.GetCustomerId(),
		Pickup:           contract.LatLng(pickup),
		Dropoff:          contract.LatLng(dropoff),
		DriverId:         match.GetDriverId(),
		DriverEtaSeconds: match.GetEtaSeconds(),
		Fare:             &ridehailpb.Money{AmountCents: quote.Fare.AmountCents, Currency: quote.Fare.Currency},
		Surge:            quote.Surge,
		DistanceKm:       quote.DistanceKM,
		Status:           ridehailpb.TripStatus_TRIP_STATUS_ASSIGNED,
		RequestedAt:      now,
	}
	s.trips.Put(id, trip)

	// A production service would write the trip and its events in one
	// transaction (an outbox); here a failed publish undoes the trip.
	err := contract.TripRequested.Publish(ctx, s.svc, &ridehailpb.TripRequested{
		TripId: id, CustomerId: trip.CustomerId, Pickup: trip.Pickup, Dropoff: trip.Dropoff, Fare: trip.Fare, RequestedAt: now,
	}, switchboard.WithEventID("trip.requested:"+id), switchboard.WithSubject(id))
	if err == nil {
		err = contract.DriverAssigned.Publish(ctx, s.svc, &ridehailpb.DriverAssigned{
			TripId: id, DriverId: match.GetDriverId(), DriverPosition: match.GetDriverPosition(), EtaSeconds: match.GetEtaSeconds(),
		}, switchboard.WithEventID("driver.assigned:"+id), switchboard.WithSubject(id))
	}
	if err != nil {
		s.trips.Delete(id)
		err = check.Relay("trips: request_trip: publish", err)
		s.releaseDriver(ctx, id, match.GetDriverId(), err)
		return nil, err
	}
	s.logger.Debug("trip requested", "trip", id, "customer", trip.CustomerId, "driver", trip.DriverId, "fare_cents", trip.Fare.AmountCents)
	return trip, nil
}

// releaseDriver undoes a match after the request failed with cause; an
// empty driverID releases whoever is on the trip. It runs even if ctx is
// done: a driver must not stay busy with a trip that does not exist.
func (s *service) releaseDriver(ctx context.Context, tripID, driverID string, cause error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), compensateTimeout)
	defer cancel()
	if _, err := contract.ReleaseMatch.Call(ctx, s.svc, &ridehailpb.ReleaseRequest{TripId: tripID, DriverId: driverID}); err != nil {
		s.logger.Warn("driver left busy: could not release it after a failed trip request",
			"trip", tripID, "driver", driverID, "cause", cause, "err", err)
	}
}

func isTimeout(err error) bool {
	c := switchboard.ErrorCode(err)
	return c == switchboard.DeadlineExceeded || c == switchboard.Canceled
}

func (s *service) find(id string) (*ridehailpb.Trip, error) {
	if err := check.Required("tripId", id); err != nil {
		return nil, err
	}
	t, ok := s.trips.Get(id)
	if !ok {
		return nil, switchboard.Errorf(switchboard.NotFound, "trips: no trip %q", id).WithDetail("tripId", id)
	}
	return t, nil
}

func (s *service) getTrip(_ context.Context, req *ridehailpb.GetTripRequest) (*ridehailpb.Trip, error) {
	return s.find(req.GetTripId())
}

// completeTrip publishes TripCompleted, frees the driver, then marks the trip
// completed. Each step can be repeated, so when one fails the trip stays
// assigned and the caller can simply retry; the event's fixed id keeps a
// repeated publish from charging twice.
func (s *service) completeTrip(ctx context.Context, req *ridehailpb.CompleteTripRequest) (*ridehailpb.Trip, error) {
	t, err := s.find(req.GetTripId())
	if err != nil {
		return nil, err
	}
	if t.GetStatus() == ridehailpb.TripStatus_TRIP_STATUS_COMPLETED {
		return t, nil
	}
	now := timestamppb.Now()
	err = contract.TripCompleted.Publish(ctx, s.svc, &ridehailpb.TripCompleted{
		TripId: t.TripId, CustomerId: t.CustomerId, DriverId: t.DriverId, Fare: t.Fare, CompletedAt: now,
	}, switchboard.WithEventID(contract.TripCompletedID(t.TripId)), switchboard.WithSubject(t.TripId))
	if err != nil {
		return nil, check.Relay("trips: complete_trip: publish", err)
	}
	if _, err := contract.ReleaseMatch.Call(ctx, s.svc, &ridehailpb.ReleaseRequest{TripId: t.TripId, DriverId: t.DriverId}); err != nil {
		return nil, check.Relay(fmt.Sprintf("trips: complete_trip: release driver %s", t.DriverId), err)
	}
	done := s.trips.Update(t.TripId, func(cur *ridehailpb.Trip, ok bool) (*ridehailpb.Trip, bool) {
		if !ok || cur.GetStatus() == ridehailpb.TripStatus_TRIP_STATUS_COMPLETED {
			return cur, false // forgotten meanwhile, or completed by a concurrent call
		}
		c := proto.CloneOf(cur)
		c.Status, c.CompletedAt = ridehailpb.TripStatus_TRIP_STATUS_COMPLETED, now
		return c, true
	})
	if done == nil {
		done = proto.CloneOf(t)
		done.Status, done.CompletedAt = ridehailpb.TripStatus_TRIP_STATUS_COMPLETED, now
	}
	s.logger.Debug("trip completed", "trip", t.TripId, "driver", t.DriverId)
	return done, nil
}
