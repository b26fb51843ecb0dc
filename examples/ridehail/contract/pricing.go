package contract

import (
	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/examples/ridehail/geo"
)

// Quote is the pricing service's endpoint (JSON): the upfront fare of a ride
// from pickup to dropoff at the current surge.
var Quote = switchboard.Endpoint[*QuoteRequest, *QuoteReply](PricingService, "quote")

// QuoteRequest asks the price of a ride.
type QuoteRequest struct {
	Pickup  geo.Point `json:"pickup"`
	Dropoff geo.Point `json:"dropoff"`
}

// QuoteReply is the fare and how it was computed.
type QuoteReply struct {
	Fare        Money   `json:"fare"`
	DistanceKM  float64 `json:"distanceKm"`
	DurationMin float64 `json:"durationMin"`
	// Surge is the demand multiplier applied, 1 when demand is normal.
	Surge float64 `json:"surge"`
}

// Money is an amount in cents of Currency.
type Money struct {
	AmountCents int64  `json:"amountCents"`
	Currency    string `json:"currency"`
}
