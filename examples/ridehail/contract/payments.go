package contract

import (
	"time"

	"github.com/switchboard-dev/switchboard"
)

// Endpoints of the payments service (JSON), which charges fares when trips
// complete (it consumes TripCompleted as consumer group "payments").
var (
	// GetPayment returns the charge of a trip, or NotFound while the trip
	// is not charged (yet).
	GetPayment = switchboard.Endpoint[*GetPaymentRequest, *Payment](PaymentsService, "get_payment")
	// Balance returns what a customer was charged in total.
	Balance = switchboard.Endpoint[*BalanceRequest, *BalanceReply](PaymentsService, "balance")
	// PaymentStats counts charges and the duplicate deliveries ignored.
	PaymentStats = switchboard.Endpoint[*PaymentStatsRequest, *PaymentStatsReply](PaymentsService, "stats")
)

// PaymentsGroup is the consumer group of the payments service.
const PaymentsGroup = "payments"

// GetPaymentRequest names the trip.
type GetPaymentRequest struct {
	TripID string `json:"tripId"`
}

// Payment is one charge.
type Payment struct {
	TripID     string    `json:"tripId"`
	CustomerID string    `json:"customerId"`
	DriverID   string    `json:"driverId"`
	Amount     Money     `json:"amount"`
	EventID    string    `json:"eventId"`
	ChargedAt  time.Time `json:"chargedAt"`
}

// BalanceRequest names the customer.
type BalanceRequest struct {
	CustomerID string `json:"customerId"`
}

// BalanceReply is a customer's total charges. An unknown customer has none.
type BalanceReply struct {
	CustomerID string `json:"customerId"`
	Charged    Money  `json:"charged"`
	Payments   int64  `json:"payments"`
}

// PaymentStatsRequest takes no parameters.
type PaymentStatsRequest struct{}

// PaymentStatsReply counts what the payments instance did since it started.
type PaymentStatsReply struct {
	Payments     int64 `json:"payments"`
	ChargedCents int64 `json:"chargedCents"`
	// Duplicates counts deliveries of an event already charged (broker
	// redeliveries or re-publishes), which were acknowledged and ignored.
	Duplicates int64 `json:"duplicates"`
}
