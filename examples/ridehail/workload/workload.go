// Package workload drives the ride-hailing example the way its users would:
// robot drivers report their positions every few seconds, and robot
// customers request trips at a steady average rate (Poisson arrivals), ride
// for a moment and complete them. `switchboard dev` runs it so that the
// dashboard has something to show; benchmarks and simulations run it while
// they measure or break things.
//
// Every call is counted; Stats returns a snapshot at any time, safe to call
// from other goroutines while Run is running.
package workload

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/examples/ridehail/contract"
	"github.com/switchboard-dev/switchboard/examples/ridehail/geo"
	"github.com/switchboard-dev/switchboard/examples/ridehail/proto/ridehailpb"
)

// Options tunes a Generator. The zero value of each field means its default.
type Options struct {
	// Rate is the average number of trips requested per second (default 1).
	Rate float64
	// Drivers is the size of the robot fleet (default: enough that about a
	// third of it is busy at Rate, and at least 20).
	Drivers int
	// Customers is the number of robot customers (default 50).
	Customers int
	// RideTime is the average time between a trip's request and its
	// completion (default 2s).
	RideTime time.Duration
	// ReportEvery is how often each driver reports its position (default 2s).
	ReportEvery time.Duration
	// Center and RadiusKM give the area where drivers roam and trips start
	// (default central Amsterdam, 4 km).
	Center   geo.Point
	RadiusKM float64
	// MaxInFlight bounds the trips in progress at once; arrivals beyond it
	// are skipped and counted (default 1000), so a stalled system does not
	// pile up goroutines.
	MaxInFlight int
	// CallTimeout bounds each call (default 5s).
	CallTimeout time.Duration
	// Logger receives start, stop and error reports (default slog.Default()).
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if !(o.Rate > 0) {
		o.Rate = 1
	}
	if o.RideTime <= 0 {
		o.RideTime = 2 * time.Second
	}
	if o.Drivers <= 0 {
		o.Drivers = max(20, int(math.Ceil(o.Rate*o.RideTime.Seconds()*3)))
	}
	if o.Customers <= 0 {
		o.Customers = 50
	}
	if o.ReportEvery <= 0 {
		o.ReportEvery = 2 * time.Second
	}
	if o.Center == (geo.Point{}) {
		o.Center = geo.Point{Lat: 52.3676, Lng: 4.9041}
	}
	if !(o.RadiusKM > 0) {
		o.RadiusKM = 4
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = 1000
	}
	if o.CallTimeout <= 0 {
		o.CallTimeout = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Stats is a snapshot of what a Generator did.
type Stats struct {
	// Requested counts request_trip calls; Assigned those that succeeded.
	Requested int64 `json:"requested"`
	Assigned  int64 `json:"assigned"`
	// Completed counts successful complete_trip calls.
	Completed int64 `json:"completed"`
	// Reports counts successful position reports.
	Reports int64 `json:"reports"`
	// Errors counts failed calls of any kind; ErrorsByCode splits them by
	// error code (e.g. "FailedPrecondition" when no driver was free).
	Errors       int64            `json:"errors"`
	ErrorsByCode map[string]int64 `json:"errorsByCode,omitempty"`
	// Recovered counts orphaned trips that robot drivers completed: trips
	// the system assigned although their request failed on the way back
	// (a timeout), which no customer would otherwise ever complete.
	Recovered int64 `json:"recovered"`
	// Skipped counts trip arrivals dropped because MaxInFlight trips were
	// already in progress.
	Skipped int64 `json:"skipped"`
	// InFlight is the number of trips in progress now.
	InFlight int64 `json:"inFlight"`
	// LastError is the text of the most recent error.
	LastError string `json:"lastError,omitempty"`
	// Elapsed is the time since Run started.
	Elapsed time.Duration `json:"elapsed"`
}

// OK returns the number of successful calls.
func (s Stats) OK() int64 { return s.Assigned + s.Completed + s.Reports }

// Generator runs a workload. Create it with New.
type Generator struct {
	c    switchboard.Caller
	opts Options
	log  *slog.Logger

	started                                 atomic.Int64 // unix nanos
	running                                 atomic.Bool
	requested, assigned, completed, reports atomic.Int64
	errs, skipped, inFlight, recovered      atomic.Int64

	mu        sync.Mutex
	byCode    map[string]int64
	lastErr   string
	positions []geo.Point     // by driver index
	orphans   []orphan        // by driver index: a trip nobody rides
	riding    map[string]bool // trips a robot customer is on
}

// orphan is a trip a driver reported being busy with that no robot customer
// knows of, and since when.
type orphan struct {
	tripID string
	since  time.Time
}

// New returns a generator that calls the services through c (a client or
// a service). Nothing happens until Run.
func New(c switchboard.Caller, opts Options) *Generator {
	opts = opts.withDefaults()
	return &Generator{c: c, opts: opts, log: opts.Logger.With("component", "workload"), byCode: map[string]int64{}, riding: map[string]bool{}}
}

// Run is the short form: New(c, Options{Rate: rate, Logger: logger}).Run
// until ctx ends, returning the final Stats.
func Run(ctx context.Context, c switchboard.Caller, rate float64, logger *slog.Logger) Stats {
	g := New(c, Options{Rate: rate, Logger: logger})
	if err := g.Run(ctx); err != nil && ctx.Err() == nil {
		g.log.Error("workload could not start", "err", err)
	}
	return g.Stats()
}

// Stats returns a snapshot of the counters.
func (g *Generator) Stats() Stats {
	s := Stats{
		Requested: g.requested.Load(), Assigned: g.assigned.Load(), Completed: g.completed.Load(),
		Reports: g.reports.Load(), Errors: g.errs.Load(), Recovered: g.recovered.Load(), Skipped: g.skipped.Load(), InFlight: g.inFlight.Load(),
	}
	if t := g.started.Load(); t != 0 {
		s.Elapsed = time.Since(time.Unix(0, t))
	}
	g.mu.Lock()
	s.ErrorsByCode = maps.Clone(g.byCode)
	s.LastError = g.lastErr
	g.mu.Unlock()
	return s
}

// DriverID returns the id of robot driver i.
func DriverID(i int) string { return fmt.Sprintf("robot-driver-%04d", i) }

// CustomerID returns the id of robot customer i.
func CustomerID(i int) string { return fmt.Sprintf("robot-customer-%04d", i) }

// Run registers the robot customers, puts the drivers on the map and then
// keeps drivers reporting and customers riding until ctx ends. When it ends
// no new trip starts, trips in progress are seen through with their rides
// cut short (each call still within CallTimeout, so no driver is left
// busy), and Run returns after all its goroutines have. It returns an
// error only if it could not start: it was already running, or ctx ended
// during the set-up.
func (g *Generator) Run(ctx context.Context) error {
	if !g.running.CompareAndSwap(false, true) {
		return errors.New("workload: already running")
	}
	defer g.running.Store(false)
	g.started.Store(time.Now().UnixNano())
	o := g.opts
	g.log.Info("workload starting", "rate", o.Rate, "drivers", o.Drivers, "customers", o.Customers, "ride_time", o.RideTime)

	if err := g.setUp(ctx); err != nil {
		return err
	}
	var wg sync.WaitGroup
	for i := range o.Drivers {
		wg.Go(func() { g.drive(ctx, i) })
	}
	g.arrivals(ctx, &wg)
	wg.Wait()
	s := g.Stats()
	g.log.Info("workload stopped", "requested", s.Requested, "assigned", s.Assigned, "completed", s.Completed,
		"reports", s.Reports, "errors", s.Errors, "skipped", s.Skipped)
	return nil
}

// setUp registers the customers and reports every driver once, retrying
// each second while the services are not reachable yet.
func (g *Generator) setUp(ctx context.Context) error {
	o := g.opts
	g.mu.Lock()
	g.positions = make([]geo.Point, o.Drivers)
	g.orphans = make([]orphan, o.Drivers)
	for i := range g.positions {
		g.positions[i] = randomPoint(o.Center, o.RadiusKM)
	}
	g.mu.Unlock()
	next := 0 // customers registered so far
	for {
		for ; next < o.Customers; next++ {
			_, err := contract.RegisterCustomer.Call(ctx, g.c, &contract.Customer{
				CustomerID: CustomerID(next), Name: fmt.Sprintf("Robot Customer %d", next), Rating: 4.5,
			}, switchboard.WithTimeout(o.CallTimeout))
			if err != nil {
				if ctx.Err() != nil {
					return fmt.Errorf("workload: set-up: %w", ctx.Err())
				}
				g.fail("register customer", err)
				break
			}
		}
		if next == o.Customers {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("workload: set-up: %w", ctx.Err())
		case <-time.After(time.Second):
		}
	}
	var wg sync.WaitGroup
	for i := range o.Drivers {
		wg.Go(func() { g.report(ctx, i) })
	}
	wg.Wait()
	return nil
}

// drive keeps driver i reporting, wandering a little between reports.
func (g *Generator) drive(ctx context.Context, i int) {
	every := g.opts.ReportEvery
	// Spread the fleet's reports over the interval.
	first := time.NewTimer(rand.N(every))
	defer first.Stop()
	select {
	case <-ctx.Done():
		return
	case <-first.C:
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		g.mu.Lock()
		p := g.opts.Center
		if d := geo.DistanceKM(p, g.positions[i]); d < g.opts.RadiusKM {
			p = g.positions[i]
		}
		g.positions[i] = geo.Offset(p, rand.Float64()*0.4-0.2, rand.Float64()*0.4-0.2)
		g.mu.Unlock()
		g.report(ctx, i)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (g *Generator) report(ctx context.Context, i int) {
	g.mu.Lock()
	p := g.positions[i]
	g.mu.Unlock()
	rsp, err := contract.ReportPosition.Call(ctx, g.c, &contract.ReportPositionRequest{DriverID: DriverID(i), Position: p},
		switchboard.WithTimeout(g.opts.CallTimeout))
	if err != nil {
		if ctx.Err() == nil {
			g.fail("report position", err)
		}
		return
	}
	g.reports.Add(1)
	if g.isOrphan(i, rsp) {
		g.completeOrphan(ctx, i, rsp.TripID)
	}
}

// isOrphan reports whether driver i has been busy with a trip no robot
// customer rides for longer than any request could still be under way: its
// request timed out after the trip was made, so nobody will complete it.
func (g *Generator) isOrphan(i int, rsp *contract.ReportPositionReply) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	o := &g.orphans[i]
	if rsp.Status != contract.StatusBusy || g.riding[rsp.TripID] {
		*o = orphan{}
		return false
	}
	if o.tripID != rsp.TripID {
		*o = orphan{tripID: rsp.TripID, since: time.Now()}
		return false
	}
	return time.Since(o.since) > g.opts.CallTimeout+2*g.opts.RideTime
}

// completeOrphan ends an orphaned trip, as a real driver ends a ride the
// customer's app lost track of.
func (g *Generator) completeOrphan(ctx context.Context, i int, tripID string) {
	_, err := contract.CompleteTrip.Call(ctx, g.c, &ridehailpb.CompleteTripRequest{TripId: tripID}, switchboard.WithTimeout(g.opts.CallTimeout))
	if err != nil {
		if ctx.Err() == nil {
			g.fail("complete orphaned trip", err)
		}
		return
	}
	g.recovered.Add(1)
	g.log.Info("robot driver completed an orphaned trip", "driver", DriverID(i), "trip", tripID)
	g.mu.Lock()
	g.orphans[i] = orphan{}
	g.mu.Unlock()
}

// arrivals starts trips at exponentially distributed intervals (a Poisson
// process of rate Rate) until ctx ends.
func (g *Generator) arrivals(ctx context.Context, wg *sync.WaitGroup) {
	next := func() time.Duration { return time.Duration(rand.ExpFloat64() / g.opts.Rate * float64(time.Second)) }
	timer := time.NewTimer(next())
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		if g.inFlight.Load() >= int64(g.opts.MaxInFlight) {
			g.skipped.Add(1)
		} else {
			g.inFlight.Add(1)
			wg.Go(func() {
				defer g.inFlight.Add(-1)
				g.ride(ctx)
			})
		}
		timer.Reset(next())
	}
}

// ride is one customer's trip: request, ride, complete. Once requested, a
// trip is seen through even if the workload is stopping (the ride is just
// cut short), so that no driver is left busy.
func (g *Generator) ride(ctx context.Context) {
	o := g.opts
	pickup := randomPoint(o.Center, o.RadiusKM)
	// Rides stay in the area, so the fleet does too; at least 1 km long.
	dropoff := randomPoint(o.Center, o.RadiusKM)
	for range 10 {
		if geo.DistanceKM(pickup, dropoff) >= 1 {
			break
		}
		dropoff = randomPoint(o.Center, o.RadiusKM)
	}
	g.requested.Add(1)
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), o.CallTimeout)
	defer cancel()
	trip, err := contract.RequestTrip.Call(rctx, g.c, &ridehailpb.RequestTripRequest{
		CustomerId: CustomerID(rand.IntN(o.Customers)),
		Pickup:     contract.LatLng(pickup),
		Dropoff:    contract.LatLng(dropoff),
	})
	if err != nil {
		g.fail("request trip", err)
		return
	}
	g.assigned.Add(1)
	g.mu.Lock()
	g.riding[trip.GetTripId()] = true
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		delete(g.riding, trip.GetTripId())
		g.mu.Unlock()
	}()
	// Rides last RideTime on average (±50%), or end now if the workload stops.
	t := time.NewTimer(time.Duration((0.5 + rand.Float64()) * float64(o.RideTime)))
	select {
	case <-ctx.Done():
	case <-t.C:
	}
	t.Stop()
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), o.CallTimeout)
	defer cancel()
	if _, err := contract.CompleteTrip.Call(cctx, g.c, &ridehailpb.CompleteTripRequest{TripId: trip.GetTripId()}); err != nil {
		g.fail("complete trip", err)
		return
	}
	g.completed.Add(1)
	var i int
	if _, err := fmt.Sscanf(trip.GetDriverId(), "robot-driver-%d", &i); err == nil && i >= 0 && i < o.Drivers {
		g.mu.Lock()
		g.positions[i] = dropoff
		g.mu.Unlock()
	}
}

// fail counts an error. The first error of each kind is logged as a
// warning, repeats only at debug level, so a broken dependency does not
// flood the log. FailedPrecondition is a refusal the simulation expects
// now and then (no driver free near a random pickup), not a fault: its
// first is logged at info level.
func (g *Generator) fail(op string, err error) {
	code := switchboard.ErrorCode(err).String()
	g.errs.Add(1)
	g.mu.Lock()
	first := g.byCode[code] == 0
	g.byCode[code]++
	g.lastErr = op + ": " + err.Error()
	g.mu.Unlock()
	level := slog.LevelDebug
	switch {
	case first && code == switchboard.FailedPrecondition.String():
		level = slog.LevelInfo
	case first:
		level = slog.LevelWarn
	}
	g.log.Log(context.Background(), level, "workload call failed", "op", op, "code", code, "err", err)
}

// randomPoint returns a point uniformly distributed within radiusKM of c.
func randomPoint(c geo.Point, radiusKM float64) geo.Point {
	r := radiusKM * math.Sqrt(rand.Float64())
	a := rand.Float64() * 2 * math.Pi
	return geo.Offset(c, r*math.Cos(a), r*math.Sin(a))
}
