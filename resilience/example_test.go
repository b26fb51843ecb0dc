package resilience_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/resilience"
)

type FareRequest struct {
	DistanceKM float64 `json:"distance_km"`
}

type Fare struct {
	Cents int64 `json:"cents"`
}

var QuoteFare = switchboard.Endpoint[*FareRequest, *Fare]("pricing", "quote")

// Defaults protects both sides of a call: the service sheds load it cannot
// serve; its callers retry within a budget and stop calling a target whose
// breaker is open.
func Example() {
	ctx := context.Background()
	conn, err := bus.Open(ctx, "embedded:")
	if err != nil {
		panic(err)
	}
	defer conn.Close()

	// The server: adaptive load shedding on every endpoint (and retries
	// and breakers on the calls it makes itself).
	server := resilience.Defaults()
	svc := switchboard.NewService("pricing", "1.0.0",
		append(server.ServiceOptions(), switchboard.WithLogger(slog.New(slog.DiscardHandler)))...)
	QuoteFare.Handle(svc, func(ctx context.Context, req *FareRequest) (*Fare, error) {
		return &Fare{Cents: 250 + int64(req.DistanceKM*120)}, nil
	})
	if err := svc.Start(ctx, conn); err != nil {
		panic(err)
	}
	defer svc.Shutdown(ctx)

	// A client: quotes are safe to repeat, so time-outs and overload
	// rejections may be retried too, not only Unavailable.
	client := resilience.Defaults()
	client.Retry.Idempotent = []string{"pricing.quote"}
	cl := switchboard.NewClient(conn, client.ClientOptions()...)

	fare, err := QuoteFare.Call(ctx, cl, &FareRequest{DistanceKM: 10})
	fmt.Println(fare.Cents, err)
	for _, b := range client.Breaker.States() {
		fmt.Printf("breaker %s.%s: %s\n", b.Service, b.Endpoint, b.State)
	}
	for _, s := range server.Shed.Stats() {
		fmt.Printf("shed %s.%s: %d admitted, %d rejected\n", s.Service, s.Endpoint, s.Admitted, s.Rejected)
	}
	// Output:
	// 1450 <nil>
	// breaker pricing.quote: closed
	// shed pricing.quote: 1 admitted, 0 rejected
}

// A rate limit per caller on the server: each calling service gets its own
// token bucket, and a call over it fails at once with ResourceExhausted and
// a Retry-After hint.
func ExampleRateLimit() {
	ctx := context.Background()
	conn, err := bus.Open(ctx, "embedded:")
	if err != nil {
		panic(err)
	}
	defer conn.Close()

	perCaller := &resilience.RateLimit{
		Key:       resilience.PerCaller,
		Limit:     resilience.Limit{Rate: 1, Burst: 1},
		Overrides: map[string]resilience.Limit{"billing": {Rate: 100}},
	}
	svc := switchboard.NewService("pricing", "1.0.0",
		switchboard.WithMiddleware(perCaller.Server()), switchboard.WithLogger(slog.New(slog.DiscardHandler)))
	QuoteFare.Handle(svc, func(ctx context.Context, req *FareRequest) (*Fare, error) { return &Fare{Cents: 250}, nil })
	if err := svc.Start(ctx, conn); err != nil {
		panic(err)
	}
	defer svc.Shutdown(ctx)

	web := switchboard.NewClient(conn, switchboard.WithCaller("web"))
	_, err = QuoteFare.Call(ctx, web, &FareRequest{})
	fmt.Println(err)
	_, err = QuoteFare.Call(ctx, web, &FareRequest{})
	var e *bus.Error
	if errors.As(err, &e) {
		wait, _ := bus.RetryAfter(err)
		fmt.Println(e.Code, e.Details["rate_limit"], e.Details["limit"], wait > 900*time.Millisecond)
	}
	_, err = QuoteFare.Call(ctx, switchboard.NewClient(conn, switchboard.WithCaller("billing")), &FareRequest{})
	fmt.Println(err)
	// Output:
	// <nil>
	// ResourceExhausted web 1/s burst 1 true
	// <nil>
}
