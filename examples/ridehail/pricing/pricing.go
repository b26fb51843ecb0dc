// Package pricing is the pricing service of the ride-hailing example: it
// quotes upfront fares from the distance and expected duration of a ride,
// multiplied by a surge factor that rises with demand (the number of quotes
// asked for in the last minute).
//
// Its contract (JSON) is in package contract: Quote.
package pricing

import (
	"context"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/examples/ridehail/contract"
	"github.com/switchboard-dev/switchboard/examples/ridehail/geo"
	"github.com/switchboard-dev/switchboard/examples/ridehail/internal/check"
)

// Version is the service version.
const Version = "1.0.0"

// The tariff. Amounts are in cents of contract.Currency.
const (
	BaseCents      = 250
	PerKMCents     = 120
	PerMinuteCents = 30
	MinimumCents   = 600
	// SpeedKMH is the average city speed used to estimate a ride's duration.
	SpeedKMH = 25.0
	// MaxRideKM is the longest ride quoted.
	MaxRideKM = 200.0
)

// Surge rules: every SurgeStep quotes in the last minute add SurgeIncrement
// to the multiplier, up to MaxSurge.
const (
	SurgeStep      = 600
	SurgeIncrement = 0.25
	MaxSurge       = 2.5
)

// Fare returns the fare of a ride of distanceKM taking durationMin at the
// given surge multiplier: base + distance + time, at least the minimum fare,
// times surge, rounded to the cent.
func Fare(distanceKM, durationMin, surge float64) contract.Money {
	raw := math.Max(MinimumCents, BaseCents+PerKMCents*distanceKM+PerMinuteCents*durationMin)
	return contract.Money{AmountCents: int64(math.Round(raw * surge)), Currency: contract.Currency}
}

// Surge returns the multiplier for quotesLastMinute quotes in the last
// minute.
func Surge(quotesLastMinute int) float64 {
	return math.Min(MaxSurge, 1+SurgeIncrement*float64(quotesLastMinute/SurgeStep))
}

// New returns the pricing service. A nil logger means slog.Default(); opts
// are applied after the service's own defaults (use them for middleware).
func New(logger *slog.Logger, opts ...switchboard.ServiceOption) *switchboard.Service {
	if logger == nil {
		logger = slog.Default()
	}
	svc := switchboard.NewService(contract.PricingService, Version, append([]switchboard.ServiceOption{
		switchboard.WithDescription("Upfront fares with surge"),
		switchboard.WithLogger(logger),
	}, opts...)...)
	var d demand
	contract.Quote.Handle(svc, func(_ context.Context, req *contract.QuoteRequest) (*contract.QuoteReply, error) {
		if err := check.First(geo.Validate("pickup", req.Pickup), geo.Validate("dropoff", req.Dropoff)); err != nil {
			return nil, err
		}
		dist := geo.DistanceKM(req.Pickup, req.Dropoff)
		switch {
		case dist < 0.01:
			return nil, check.Invalid("dropoff", "is the same place as pickup")
		case dist > MaxRideKM:
			return nil, check.Invalid("dropoff", "is %.0f km from pickup; rides are limited to %.0f km", dist, MaxRideKM)
		}
		minutes := dist / SpeedKMH * 60
		surge := Surge(d.add(time.Now()))
		return &contract.QuoteReply{
			Fare:        Fare(dist, minutes, surge),
			DistanceKM:  math.Round(dist*1000) / 1000,
			DurationMin: math.Round(minutes*10) / 10,
			Surge:       surge,
		}, nil
	}, switchboard.Describe("The upfront fare of a ride, with surge"))
	return svc
}

// demand counts quotes over the last minute in one-second buckets.
type demand struct {
	mu      sync.Mutex
	buckets [60]struct {
		sec int64
		n   int
	}
}

// add counts one quote at now and returns the count over the last minute,
// this one included.
func (d *demand) add(now time.Time) int {
	sec := now.Unix()
	d.mu.Lock()
	defer d.mu.Unlock()
	b := &d.buckets[sec%60]
	if b.sec != sec {
		b.sec, b.n = sec, 0
	}
	b.n++
	total := 0
	for _, b := range d.buckets {
		if sec-b.sec < 60 {
			total += b.n
		}
	}
	return total
}
