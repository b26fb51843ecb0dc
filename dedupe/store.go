// Package dedupe makes event consumers idempotent: a handler runs once per
// event within a window, however often the event is delivered and however
// many instances of the consumer group receive it.
//
// The key is the event's CloudEvents id (with its consumer group, topic and
// source, so that two groups each handle it and unrelated events that happen
// to share an id are not confused). Before the handler runs, the consumer
// claims the key in a Store with a lease; the handler runs only for the
// claimant. When it succeeds the key is marked done and kept for the store's
// window, so redeliveries and duplicate publishes are acknowledged without
// running it again. When it fails the claim is released, so that the
// redelivery the broker makes next runs it again. If the process dies
// mid-handler the lease expires and a redelivery elsewhere runs it. While a
// handler runs its lease is renewed, so a long handler is not taken over by
// a redelivery in another instance.
//
// Install it for every consumer of a service with one line:
//
//	svc := switchboard.NewService("billing", "1.0.0",
//		switchboard.WithConsumerMiddleware(dedupe.Middleware(store)))
//
// or for one subscription by wrapping its handler:
//
//	TripEnded.Subscribe(svc, "billing", dedupe.Handler(store, chargeRider))
//
// Stores: Memory (this package; in-process, bounded by count and window: it
// de-duplicates redeliveries to one instance only), pgdedupe (PostgreSQL) and
// redisdedupe (Redis), which de-duplicate across instances. The package
// dedupetest holds the conformance suite every store passes.
//
// What it cannot promise: a handler whose lease was lost (its process stalled
// for longer than the lease, or the store lost the claim) may run again
// elsewhere while it still runs; its context is canceled when the loss is
// noticed. A process that dies after its handler's effects but before the
// key was marked done leaves the event to run again elsewhere, and a handler
// that succeeded but whose completion could not be recorded is acknowledged
// all the same, so that a later duplicate may run it again. Side effects
// that must happen exactly once should commit together with the mark
// (pgdedupe.Store.CompleteTx marks the claim done inside the handler's own
// PostgreSQL transaction), or be keyed on the event id where they land (a
// unique constraint, an idempotency key).
//
// The package sits in the cross-cutting layer, above the SDK (bus ← wire ←
// SDK ← dedupe), and imports no broker or database client.
package dedupe

import (
	"context"
	"errors"
	"time"
)

// Status is what a Claim found.
type Status int

const (
	// Claimed means the caller now holds the key's lease and should run the
	// handler, then Complete or Release the claim.
	Claimed Status = iota + 1
	// Done means the key was handled successfully within the window: the
	// event is a duplicate and must not be handled again.
	Done
	// Busy means another holder's lease on the key is live: the event is
	// being handled elsewhere. Try again after Claim.TTL.
	Busy
)

// String returns the status's name: "claimed", "done" or "busy".
func (s Status) String() string {
	switch s {
	case Claimed:
		return "claimed"
	case Done:
		return "done"
	case Busy:
		return "busy"
	}
	return "unknown"
}

// Claim is the outcome of Store.Claim.
type Claim struct {
	// Key is the key that was claimed.
	Key string
	// Status says whether the caller holds the lease (Claimed), the key was
	// handled already (Done) or is being handled by someone else (Busy).
	Status Status
	// Token identifies this holder when Status is Claimed; Extend and
	// Release act only for the holder whose token is current.
	Token string
	// TTL is how long, as the store measured it, the lease (Claimed, Busy)
	// or the memory of a handled key (Done) lasts from now.
	TTL time.Duration
}

// ErrLeaseLost is returned by Extend when the claim is no longer held by
// its token: the lease expired and may have been taken by another holder,
// or the key was completed.
var ErrLeaseLost = errors.New("dedupe: lease lost")

// Store records which keys are being handled and which were handled. A
// Store is safe for concurrent use by many goroutines and, for stores that
// keep their state outside the process, by many processes.
//
// Every method takes the store's own clock (the database's or Redis's for
// shared stores), so instances with skewed clocks agree.
type Store interface {
	// Claim takes key for lease unless it is Done (handled within the
	// window) or Busy (another holder's lease is live). An expired lease
	// counts as no lease: its holder is presumed dead. At most one caller
	// gets Claimed for a key at a time.
	Claim(ctx context.Context, key string, lease time.Duration) (Claim, error)
	// Extend renews c's lease for lease from now. It returns ErrLeaseLost
	// if c's token no longer holds the key.
	Extend(ctx context.Context, c Claim, lease time.Duration) error
	// Complete marks c.Key done for the store's window, whoever holds it
	// now: the handler did succeed. It is idempotent.
	Complete(ctx context.Context, c Claim) error
	// Release gives up c's lease so that the key can be claimed at once. It
	// does nothing if c's token no longer holds the key.
	Release(ctx context.Context, c Claim) error
}
