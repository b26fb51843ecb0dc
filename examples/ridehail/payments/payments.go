// Package payments is the payments service of the ride-hailing example: it
// consumes trip.completed events as consumer group "payments" and charges
// each trip's fare to the customer.
//
// Charging is idempotent per event. A broker delivers at least once — after
// a crash before the acknowledgement, after an ack that got lost, or when
// the same event is published again — so the service remembers the
// CloudEvents ids it has charged (switchboard.EventFrom) and acknowledges a
// repeat without charging again; PaymentStats counts them.
//
// Its contract (JSON) is in package contract: GetPayment, Balance and
// PaymentStats.
package payments

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/examples/ridehail/contract"
	"github.com/switchboard-dev/switchboard/examples/ridehail/internal/check"
	"github.com/switchboard-dev/switchboard/examples/ridehail/internal/recent"
	"github.com/switchboard-dev/switchboard/examples/ridehail/proto/ridehailpb"
)

// Version is the service version.
const Version = "1.0.0"

// MaxPayments bounds the payments, and the event ids of charged events,
// held in memory; the oldest are forgotten first. A duplicate of an event
// older than that would be charged again, which the broker's own
// de-duplication and redelivery limits make moot in this example.
const MaxPayments = 100_000

// Concurrency is how many events one instance charges at once.
const Concurrency = 8

type ledger struct {
	logger *slog.Logger

	mu        sync.Mutex                            // serialises check-and-charge
	charged   *recent.Map[string, struct{}]         // event ids
	payments  *recent.Map[string, contract.Payment] // by trip id
	balances  *recent.Map[string, contract.BalanceReply]
	stats     contract.PaymentStatsReply
	statsLock sync.Mutex
}

// New returns the payments service. A nil logger means slog.Default(); opts
// are applied after the service's own defaults (use them for middleware).
func New(logger *slog.Logger, opts ...switchboard.ServiceOption) *switchboard.Service {
	if logger == nil {
		logger = slog.Default()
	}
	svc := switchboard.NewService(contract.PaymentsService, Version, append([]switchboard.ServiceOption{
		switchboard.WithDescription("Charges fares when trips complete"),
		switchboard.WithLogger(logger),
	}, opts...)...)
	l := &ledger{
		logger:   logger.With("service", contract.PaymentsService),
		charged:  recent.New[string, struct{}](MaxPayments),
		payments: recent.New[string, contract.Payment](MaxPayments),
		balances: recent.New[string, contract.BalanceReply](MaxPayments),
	}
	contract.TripCompleted.Subscribe(svc, contract.PaymentsGroup, l.charge, switchboard.Concurrency(Concurrency))
	contract.GetPayment.Handle(svc, l.getPayment, switchboard.Describe("The charge of a trip, or NotFound until it is charged"))
	contract.Balance.Handle(svc, l.balance, switchboard.Describe("What a customer was charged in total"))
	contract.PaymentStats.Handle(svc, l.getStats, switchboard.Describe("Charges made and duplicate deliveries ignored"))
	return svc
}

// charge handles one trip.completed delivery. An error asks the broker to
// redeliver (and, after the attempts run out, to dead-letter the event with
// the error as reason), so only a broken event is refused.
func (l *ledger) charge(ctx context.Context, ev *ridehailpb.TripCompleted) error {
	info, ok := switchboard.EventFrom(ctx)
	if !ok {
		return switchboard.Errorf(switchboard.Internal, "payments: charge called outside an event delivery")
	}
	if err := check.First(
		check.Required("tripId", ev.GetTripId()),
		check.Required("customerId", ev.GetCustomerId()),
		check.Required("fare.currency", ev.GetFare().GetCurrency()),
	); err != nil {
		return check.Relay("payments: event "+info.ID, err)
	}
	if ev.GetFare().GetAmountCents() < 0 {
		return check.Relay("payments: event "+info.ID, check.Invalid("fare.amountCents", "%d is negative", ev.GetFare().GetAmountCents()))
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, dup := l.charged.Get(info.ID); dup {
		l.statsLock.Lock()
		l.stats.Duplicates++
		l.statsLock.Unlock()
		l.logger.Info("duplicate event ignored: already charged", "event", info.ID, "trip", ev.GetTripId(), "attempt", info.Attempt)
		return nil
	}
	p := contract.Payment{
		TripID:     ev.GetTripId(),
		CustomerID: ev.GetCustomerId(),
		DriverID:   ev.GetDriverId(),
		Amount:     contract.Money{AmountCents: ev.GetFare().GetAmountCents(), Currency: ev.GetFare().GetCurrency()},
		EventID:    info.ID,
		ChargedAt:  time.Now().UTC(),
	}
	l.payments.Put(p.TripID, p)
	l.balances.Update(p.CustomerID, func(b contract.BalanceReply, _ bool) (contract.BalanceReply, bool) {
		b.CustomerID = p.CustomerID
		b.Charged.Currency = p.Amount.Currency
		b.Charged.AmountCents += p.Amount.AmountCents
		b.Payments++
		return b, true
	})
	l.charged.Put(info.ID, struct{}{})
	l.statsLock.Lock()
	l.stats.Payments++
	l.stats.ChargedCents += p.Amount.AmountCents
	l.statsLock.Unlock()
	l.logger.Debug("fare charged", "event", info.ID, "trip", p.TripID, "customer", p.CustomerID, "cents", p.Amount.AmountCents)
	return nil
}

func (l *ledger) getPayment(_ context.Context, req *contract.GetPaymentRequest) (*contract.Payment, error) {
	if err := check.Required("tripId", req.TripID); err != nil {
		return nil, err
	}
	p, ok := l.payments.Get(req.TripID)
	if !ok {
		return nil, switchboard.Errorf(switchboard.NotFound, "payments: trip %q is not charged", req.TripID).WithDetail("tripId", req.TripID)
	}
	return &p, nil
}

func (l *ledger) balance(_ context.Context, req *contract.BalanceRequest) (*contract.BalanceReply, error) {
	if err := check.Required("customerId", req.CustomerID); err != nil {
		return nil, err
	}
	b, ok := l.balances.Get(req.CustomerID)
	if !ok {
		b = contract.BalanceReply{CustomerID: req.CustomerID, Charged: contract.Money{Currency: contract.Currency}}
	}
	return &b, nil
}

func (l *ledger) getStats(context.Context, *contract.PaymentStatsRequest) (*contract.PaymentStatsReply, error) {
	l.statsLock.Lock()
	defer l.statsLock.Unlock()
	s := l.stats
	return &s, nil
}
